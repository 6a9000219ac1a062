// The VM page's Snapshots tab (tree, take with or without memory, roll back, delete) and the
// disk resize action of its Hardware tab. Every action is a task whose progress is shown inline.
import { useState } from "preact/hooks";
import { ApiError, followTask, get, notifyTask, np, request } from "../api";
import { ErrorBox, Loading, Modal } from "../components";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import { formatTime } from "../logic";
import type { TaskRef, VmState } from "../types";

export interface SnapshotInfo {
  name: string;
  description?: string;
  parent?: string;
  children: string[];
  created: number;
  vm_state: string;
  has_memory: boolean;
  current: boolean;
}

/** Mirrors keel_api::snapshot::validate_snapshot_name. */
export function snapshotNameError(n: string): string | null {
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,39}$/.test(n)) return "Start with a letter; letters, digits, '-' and '_' only; at most 40 characters.";
  return null;
}

/** Depth of each snapshot in the tree (the list comes parents first). */
export function depths(list: SnapshotInfo[]): Record<string, number> {
  const d: Record<string, number> = {};
  for (const s of list) d[s.name] = s.parent && s.parent in d ? d[s.parent] + 1 : 0;
  return d;
}

type Msg = { tone: "info" | "error"; text: string } | null;

/** Run one task, reporting its latest log line and progress through `say`. */
export async function runShown(what: string, method: string, path: string, body: unknown, say: (m: Msg) => void): Promise<boolean> {
  say({ tone: "info", text: `${what}: task started…` });
  try {
    const r = await request(method, path, body) as TaskRef;
    notifyTask(r.upid);
    const t = await followTask(r.upid, (ti, lines) => {
      const last = lines.length ? lines[lines.length - 1].line : null;
      const pct = ti.progress != null ? ` (${Math.round(ti.progress * 100)}%)` : "";
      if (last) say({ tone: "info", text: `${what}${pct}: ${last}` });
    });
    say(t.state === "ok" ? { tone: "info", text: `${what}: done.` } : { tone: "error", text: `${what} failed: ${t.message}` });
    return t.state === "ok";
  } catch (e) {
    say({ tone: "error", text: `${what} refused: ${(e as ApiError).message}` });
    return false;
  }
}

/** `onClone(name)`: open the clone dialog for a clone from that snapshot (the VM page owns it). */
export function Snapshots({ vmid, state, onClone }: { vmid: number; state: VmState | undefined; onClone?: (snapshot: string) => void }) {
  const list = usePoll(() => get<SnapshotInfo[]>(np(`/vms/${vmid}/snapshots`)), 5000, [vmid]);
  const perms = usePermissions();
  const noSnap = whyNot(perms, "VM.Snapshot", `/vms/${vmid}`);
  const noClone = whyNot(perms, "VM.Clone", `/vms/${vmid}`);
  const [msg, setMsg] = useState<Msg>(null);
  const [busy, setBusy] = useState(false);
  const [creating, setCreating] = useState(false);
  const running = state === "running" || state === "paused";
  const act = async (what: string, method: string, path: string, body?: unknown) => {
    setBusy(true);
    await runShown(what, method, path, body, setMsg);
    setBusy(false);
    list.refresh();
  };
  const d = depths(list.data ?? []);
  return (
    <div>
      <div class="toolbar" role="toolbar" aria-label="Snapshot actions">
        <button type="button" class="btn btn-primary" disabled={busy || !!noSnap} title={noSnap ?? "Take a snapshot of every disk"}
          onClick={() => setCreating(true)}>Take snapshot…</button>
      </div>
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"} aria-label="Snapshot task">{msg.text}</div>}
      <ErrorBox error={list.error} title="Cannot list snapshots" />
      {!list.data ? (!list.error && <Loading what="snapshots" />) : list.data.length === 0 ? <p class="muted">No snapshots yet.</p> : (
        <table class="table" aria-label="Snapshots">
          <thead><tr><th>Name</th><th>Taken</th><th>VM state</th><th>Memory</th><th>Description</th><th /></tr></thead>
          <tbody>{list.data.map((s) => {
            const noRollback = noSnap ?? (running && !s.has_memory ? "The VM is running and this snapshot holds no memory: stop the VM first" : null);
            return (
              <tr data-snapshot={s.name}>
                <td class="mono" style={{ paddingLeft: `${8 + 20 * (d[s.name] ?? 0)}px` }}>
                  {(d[s.name] ?? 0) > 0 ? "└ " : ""}{s.name}{s.current && <span class="badge badge-ok" title="The VM's current snapshot: the parent of the next one"> current</span>}
                </td>
                <td class="nowrap">{formatTime(s.created)}</td><td>{s.vm_state}</td><td>{s.has_memory ? "yes" : "no"}</td>
                <td class="small">{s.description ?? ""}</td>
                <td class="nowrap">
                  <button type="button" class="btn" disabled={busy || !!noRollback} title={noRollback ?? `Roll back to ${s.name}`}
                    onClick={() => { if (window.confirm(`Roll VM ${vmid} back to snapshot ${s.name}? Changes since then are lost.`)) act(`Rollback to ${s.name}`, "POST", np(`/vms/${vmid}/snapshots/${encodeURIComponent(s.name)}/rollback`)); }}>
                    Rollback</button>{" "}
                  {onClone && <><button type="button" class="btn" disabled={!!noClone} title={noClone ?? `A new VM as this one was at ${s.name} (full copy; this VM may keep running)`}
                    onClick={() => onClone(s.name)}>Clone…</button>{" "}</>}
                  <button type="button" class="btn btn-danger-outline" disabled={busy || !!noSnap} title={noSnap ?? `Delete ${s.name}${s.children.length ? ` (its children move to ${s.parent ?? "the top"})` : ""}`}
                    onClick={() => { if (window.confirm(`Delete snapshot ${s.name}?`)) act(`Delete ${s.name}`, "DELETE", np(`/vms/${vmid}/snapshots/${encodeURIComponent(s.name)}`)); }}>
                    Delete</button>
                </td>
              </tr>
            );
          })}</tbody>
        </table>
      )}
      {creating && <CreateDialog running={running} onClose={() => setCreating(false)}
        onSubmit={(body) => { setCreating(false); act(`Snapshot ${body.name}`, "POST", np(`/vms/${vmid}/snapshots`), body); }} />}
    </div>
  );
}

function CreateDialog({ running, onClose, onSubmit }: {
  running: boolean; onClose: () => void; onSubmit: (b: { name: string; description?: string; memory: boolean }) => void;
}) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [memory, setMemory] = useState(running);
  const err = name ? snapshotNameError(name) : null;
  const memErr = running && !memory ? "A running VM's snapshot must include its memory (QEMU cannot snapshot only the disks of a running guest): tick it, or stop the VM first." : null;
  return (
    <Modal title="Take snapshot" onClose={onClose}>
      <form onSubmit={(e) => { e.preventDefault(); if (!err && !memErr && name) onSubmit({ name, description: description || undefined, memory }); }}>
        <div class={`field${err ? " has-error" : ""}`}>
          <label for="snap-name">Name</label>
          <input id="snap-name" value={name} autoComplete="off" onInput={(e) => setName(e.currentTarget.value)} />
          {err && <div class="field-error" role="alert">{err}</div>}
        </div>
        <div class="field">
          <label for="snap-desc">Description</label>
          <input id="snap-desc" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </div>
        <label class="check"><input type="checkbox" id="snap-memory" checked={memory} disabled={!running}
          onChange={(e) => setMemory(e.currentTarget.checked)} /> Include the guest's memory {running ? "(a rollback resumes it where it was)" : "(only for a running VM)"}</label>
        {memErr && <div class="alert alert-warn" role="alert">{memErr}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={!name || !!err || !!memErr}>Take snapshot</button>
        </div>
      </form>
    </Modal>
  );
}

/** The Resize… button of one disk row (Hardware tab). */
export function ResizeDisk({ vmid, disk }: { vmid: number; disk: number }) {
  const perms = usePermissions();
  const no = whyNot(perms, "VM.Config", `/vms/${vmid}`);
  const [open, setOpen] = useState(false);
  const [size, setSize] = useState("");
  const [msg, setMsg] = useState<Msg>(null);
  const [busy, setBusy] = useState(false);
  const bad = size && !/^\d+$/.test(size.trim()) ? "A whole number of MiB (the new total size, larger than now)." : null;
  const go = async (e: Event) => {
    e.preventDefault();
    if (bad || !size) return;
    setBusy(true);
    const ok = await runShown(`Resize disk${disk}`, "POST", np(`/vms/${vmid}/disks/disk${disk}/resize`), { size_mib: Number(size) }, setMsg);
    setBusy(false);
    if (ok) setOpen(false);
  };
  return (
    <span>
      <button type="button" class="btn" disabled={!!no || busy} title={no ?? `Grow disk${disk}`} onClick={() => { setMsg(null); setOpen(true); }}>Resize…</button>
      {!open && msg && <span class={`small ${msg.tone === "error" ? "field-error" : "muted"}`} role="status"> {msg.text}</span>}
      {open && (
        <Modal title={`Grow disk${disk}`} onClose={() => setOpen(false)}>
          <form onSubmit={go}>
            <div class={`field${bad ? " has-error" : ""}`}>
              <label for={`resize-${disk}`}>New size (MiB)</label>
              <input id={`resize-${disk}`} inputMode="numeric" value={size} onInput={(e) => setSize(e.currentTarget.value)} />
              {bad ? <div class="field-error" role="alert">{bad}</div> : <div class="hint">Disks only grow; a running guest sees the new size at once.</div>}
            </div>
            {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"}>{msg.text}</div>}
            <div class="modal-actions">
              <button type="button" class="btn" onClick={() => setOpen(false)}>Cancel</button>
              <button type="submit" class="btn btn-primary" disabled={!size || !!bad || busy}>{busy ? "Resizing…" : "Resize"}</button>
            </div>
          </form>
        </Modal>
      )}
    </span>
  );
}
