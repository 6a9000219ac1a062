// The Storage page's node-local pools: "Create pool…" (a dir pool on an existing directory, or
// an lvm-thin pool in one of the node's volume groups) and "Delete pool" for the selected one
// (POST / DELETE /nodes/{node}/storage[/{pool}], each a task; docs/storage.md, "Node-local pools").
import { useState } from "preact/hooks";
import { ApiError, del, followTask, notifyTask, np, post } from "../api";
import { Modal } from "../components";
import { localPoolProblem } from "../logic";
import type { PoolInfo, TaskRef } from "../types";

type Kind = "dir" | "lvm-thin";

async function runTask(r: TaskRef, setLine: (l: string) => void): Promise<string | null> {
  notifyTask(r.upid);
  const t = await followTask(r.upid, (_t, lines) => { if (lines.length) setLine(lines[lines.length - 1].line); });
  return t.state === "ok" ? null : `Failed: ${t.message}`;
}

export function CreateLocalPool({ onClose, onDone }: { onClose: () => void; onDone: (name: string) => void }) {
  const [name, setName] = useState("");
  const [kind, setKind] = useState<Kind>("lvm-thin");
  const [path, setPath] = useState("");
  const [vg, setVg] = useState("keel");
  const [size, setSize] = useState("90%");
  const [busy, setBusy] = useState(false);
  const [line, setLine] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const problem = localPoolProblem({ name, kind, path, vg, size });
  const submit = async (e: Event) => {
    e.preventDefault();
    if (problem.field) return;
    setBusy(true); setErr(null); setLine("starting…");
    try {
      const body: Record<string, unknown> = { name, type: kind };
      if (kind === "dir") body.path = path.trim();
      else {
        body.vg = vg.trim();
        const s = size.trim();
        if (s.endsWith("%")) body.size_percent = Number(s.slice(0, -1));
        else if (s) body.size_mib = problem.mib;
      }
      const failed = await runTask(await post<TaskRef>(np("/storage"), body), setLine);
      if (!failed) { onDone(name); return; }
      setErr(failed);
    } catch (e) {
      setErr((e as ApiError).message);
    }
    setBusy(false);
  };
  const bad = (f: string) => (problem.field === f && problem.shown ? problem.message : null);
  return (
    <Modal title="Create pool" onClose={onClose}>
      <form onSubmit={submit} aria-label="Create pool">
        <div class={`field${bad("name") ? " has-error" : ""}`}>
          <label for="lp-name">Name</label>
          <input id="lp-name" value={name} disabled={busy} onInput={(e) => setName(e.currentTarget.value)} />
          {bad("name") && <div class="field-error" role="alert">{bad("name")}</div>}
        </div>
        <div class="field"><label for="lp-type">Type</label>
          <select id="lp-type" value={kind} disabled={busy} onChange={(e) => setKind(e.currentTarget.value as Kind)}>
            <option value="lvm-thin">lvm-thin (a thin pool in this node's volume group: raw disks, space taken as guests write)</option>
            <option value="dir">dir (a directory on this node: qcow2 or raw files, snapshots, uploads)</option>
          </select></div>
        {kind === "dir" && <div class={`field${bad("path") ? " has-error" : ""}`}><label for="lp-path">Directory</label>
          <input id="lp-path" class="mono" placeholder="/srv/vmdata" value={path} disabled={busy} onInput={(e) => setPath(e.currentTarget.value)} />
          {bad("path") && <div class="field-error" role="alert">{bad("path")}</div>}
          <div class="hint">It must exist, e.g. the mount point of a data disk; Keel does not create it.</div></div>}
        {kind === "lvm-thin" && <>
          <div class={`field${bad("vg") ? " has-error" : ""}`}><label for="lp-vg">Volume group</label>
            <input id="lp-vg" class="mono" value={vg} disabled={busy} onInput={(e) => setVg(e.currentTarget.value)} />
            {bad("vg") && <div class="field-error" role="alert">{bad("vg")}</div>}
            <div class="hint">An installed node has the one its answer file named (<span class="mono">keel</span> by default).</div></div>
          <div class={`field${bad("size") ? " has-error" : ""}`}><label for="lp-size">Size</label>
            <input id="lp-size" class="mono" value={size} disabled={busy} onInput={(e) => setSize(e.currentTarget.value)} />
            {bad("size") && <div class="field-error" role="alert">{bad("size")}</div>}
            <div class="hint">MiB, a size like 200G, or a share of the free space like 90%.</div></div>
        </>}
        {busy && line && <div class="small muted" role="status" aria-label="Pool task">{line}</div>}
        {err && <div class="alert alert-error" role="alert">{err}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={!!problem.field || busy}>{busy ? "Creating…" : "Create"}</button>
        </div>
      </form>
    </Modal>
  );
}

export function DeleteLocalPool({ pool, onClose, onDone }: { pool: PoolInfo; onClose: () => void; onDone: () => void }) {
  const [busy, setBusy] = useState(false);
  const [line, setLine] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const go = async () => {
    setBusy(true); setErr(null); setLine("starting…");
    try {
      const failed = await runTask(await del<TaskRef>(np(`/storage/${encodeURIComponent(pool.name)}`)), setLine);
      if (!failed) { onDone(); return; }
      setErr(failed);
    } catch (e) {
      setErr((e as ApiError).message);
    }
    setBusy(false);
  };
  return (
    <Modal title={`Delete pool ${pool.name}`} onClose={onClose}>
      <p>Delete the {pool.kind} pool <span class="mono">{pool.name}</span>?{" "}
        {pool.kind === "lvm-thin"
          ? "Its thin pool LV is removed. A pool that still holds volumes is refused."
          : <>Keel forgets it; the directory <span class="mono">{pool.path}</span> and any file in it stay. A pool that still holds volumes is refused.</>}</p>
      {busy && line && <div class="small muted" role="status" aria-label="Pool task">{line}</div>}
      {err && <div class="alert alert-error" role="alert">{err}</div>}
      <div class="modal-actions">
        <button type="button" class="btn" onClick={onClose}>Cancel</button>
        <button type="button" class="btn btn-danger" disabled={busy} onClick={go}>{busy ? "Deleting…" : "Delete pool"}</button>
      </div>
    </Modal>
  );
}
