// The VM page's Backups tab: the VM's backups on every target of this node (time, kind, size,
// parent, verify state), "Back up now", "Verify" and "Restore…" into a new VM, each a task whose
// progress is shown inline; when the node has no target, how to add one (and a small form for a
// directory target). docs/backups.md.
import { useEffect, useState } from "preact/hooks";
import { get, np, post, type ApiError } from "../api";
import { ErrorBox, Loading, Modal } from "../components";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import { formatBytes, formatTime, parseIntField, validName, VMID_MAX, VMID_MIN } from "../logic";
import type { PoolInfo } from "../types";
import { runShown } from "./Snapshots";
import { PruneDialog } from "./BackupJobs";

export interface BackupTarget {
  name: string; kind: string; path: string; ok: boolean; error?: string; total: number; available: number;
  /** sftp targets: the key file hostd authenticates with and the pinned host key. */
  key_file?: string; host_key_fingerprint?: string;
  /** Where the definition lives: the cluster's config store or this node's database. */
  scope?: "cluster" | "node";
}
export interface BackupInfo {
  id: string; vmid: number; target: string; kind: "full" | "incremental"; parent?: string; live: boolean;
  start_time: number; end_time: number; size: number;
  verify_state: string; verify_time?: number; verify_error?: string;
}

/** Mirrors keel_api::backup::valid_target_name. */
export function targetNameError(n: string): string | null {
  return /^[A-Za-z0-9_-]{1,64}$/.test(n) ? null : "Letters, digits, '-' and '_' only; 1 to 64 characters.";
}
/** Mirrors the path check of keel_api::backup::BackupTargetCreate::validate. */
export function targetPathError(p: string): string | null {
  if (!p.startsWith("/") || p.length > 1024 || p.split("/").includes("..") || p.includes("\n")) return "An absolute directory path, without '..'.";
  return null;
}
/** The restore form's own checks (the API checks the rest: vmid and name free, pool active). */
export function restoreFormError(vmid: string, name: string, pool: string): string | null {
  const id = parseIntField(vmid);
  if (Number.isNaN(id) || id < VMID_MIN || id > VMID_MAX) return `The new VM ID must be a number from ${VMID_MIN} to ${VMID_MAX}.`;
  if (name.trim() && !validName(name.trim())) return "The name may hold letters, digits, '-' and '.' (a DNS-style host name).";
  if (!pool) return "Choose the pool the restored disks are created in.";
  return null;
}
/** Newest first; within one time, by target. */
export function sortBackups(list: BackupInfo[]): BackupInfo[] {
  return [...list].sort((a, b) => b.start_time - a.start_time || a.target.localeCompare(b.target) || b.id.localeCompare(a.id));
}

type Msg = { tone: "info" | "error"; text: string } | null;

export function Backups({ vmid }: { vmid: number }) {
  const targets = usePoll(() => get<BackupTarget[]>(np("/backup-targets")), 10000, []);
  const list = usePoll(() => get<BackupInfo[]>(np(`/vms/${vmid}/backups`)), 5000, [vmid]);
  const perms = usePermissions();
  const noBackup = whyNot(perms, "VM.Backup", `/vms/${vmid}`);
  const noRestore = whyNot(perms, "VM.Allocate", "/vms") ?? noBackup;
  const [msg, setMsg] = useState<Msg>(null);
  const [busy, setBusy] = useState(false);
  const [creating, setCreating] = useState(false);
  const [restoring, setRestoring] = useState<BackupInfo | null>(null);
  const [pruning, setPruning] = useState(false);
  const act = async (what: string, path: string, body?: unknown) => {
    setBusy(true);
    const ok = await runShown(what, "POST", path, body, setMsg);
    setBusy(false);
    list.refresh();
    return ok;
  };
  const none = targets.data && targets.data.length === 0;
  return (
    <div>
      <div class="toolbar" role="toolbar" aria-label="Backup actions">
        <button type="button" class="btn btn-primary" disabled={busy || !!noBackup || !targets.data?.length}
          title={noBackup ?? (targets.data?.length ? "Back up every disk of this VM now" : "Add a backup target first")}
          onClick={() => setCreating(true)}>Back up now…</button>
        <button type="button" class="btn" disabled={busy || !!noBackup || !list.data?.length}
          title={noBackup ?? "Remove backups a retention policy does not keep (preview first)"}
          onClick={() => setPruning(true)}>Prune…</button>
      </div>
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"} aria-label="Backup task">{msg.text}</div>}
      <ErrorBox error={targets.error} title="Cannot list backup targets" />
      {none && <AddTarget onDone={targets.refresh} />}
      <ErrorBox error={list.error} title="Cannot list backups" />
      {!list.data ? (!list.error && <Loading what="backups" />) : list.data.length === 0 ? <p class="muted">No backups of this VM yet.</p> : (
        <table class="table" aria-label="Backups">
          <thead><tr><th>Backup</th><th>Target</th><th>Taken</th><th>Kind</th><th>Size</th><th>Parent</th><th>Verified</th><th /></tr></thead>
          <tbody>{sortBackups(list.data).map((b) => (
            <tr data-backup={b.id} data-target={b.target}>
              <td class="mono">{b.id}</td>
              <td>{b.target}</td>
              <td class="nowrap">{formatTime(b.start_time)}{b.live ? "" : <span class="muted small"> (VM stopped)</span>}</td>
              <td>{b.kind}</td>
              <td class="nowrap">{formatBytes(b.size)}</td>
              <td class="mono">{b.parent ?? ""}</td>
              <td data-verify={b.verify_state}>
                <span class={`badge badge-${b.verify_state === "ok" ? "ok" : b.verify_state === "broken" ? "bad" : "off"}`}
                  title={b.verify_time ? `Last verified ${formatTime(b.verify_time)}` : "Never verified"}>{b.verify_state}</span>
                {b.verify_error && <div class="small field-error">{b.verify_error}</div>}
              </td>
              <td class="nowrap">
                <button type="button" class="btn" disabled={busy || !!noBackup} title={noBackup ?? "Re-read every file of this backup's chain and check its checksums"}
                  onClick={() => act(`Verify ${b.id}`, np(`/vms/${vmid}/backups/${encodeURIComponent(b.id)}/verify?target=${encodeURIComponent(b.target)}`))}>
                  Verify</button>{" "}
                <button type="button" class="btn" disabled={busy || !!noRestore}
                  title={noRestore ?? (b.verify_state === "broken" ? "This backup failed verification: it cannot be restored" : "Restore into a new VM")}
                  onClick={() => setRestoring(b)}>Restore…</button>
              </td>
            </tr>
          ))}</tbody>
        </table>
      )}
      {creating && targets.data && <CreateDialog targets={targets.data} onClose={() => setCreating(false)}
        onSubmit={(body) => { setCreating(false); act(`Backup to ${body.target}`, np(`/vms/${vmid}/backups`), body); }} />}
      {pruning && targets.data && <PruneDialog vmid={vmid} targets={targets.data} onClose={() => setPruning(false)} onDone={list.refresh} />}
      {restoring && <RestoreDialog vmid={vmid} backup={restoring} onClose={() => setRestoring(null)}
        onSubmit={(body) => {
          setRestoring(null);
          const what = body.replace ? `Restore ${restoring.id} over VM ${vmid}` : `Restore ${restoring.id} to VM ${body.new_vmid}`;
          act(what, np(`/vms/${vmid}/backups/${encodeURIComponent(restoring.id)}/restore`), body);
        }} />}
    </div>
  );
}

/** Shown when the node has no backup target: the CLI command, and a form for a directory. */
function AddTarget({ onDone }: { onDone: () => void }) {
  const perms = usePermissions();
  const no = whyNot(perms, "Datastore.Allocate", "/storage");
  const [name, setName] = useState("");
  const [path, setPath] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const nameErr = name ? targetNameError(name) : null;
  const pathErr = path ? targetPathError(path) : null;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!name || !path || nameErr || pathErr) return;
    setBusy(true);
    setError(null);
    try {
      await post(np("/backup-targets"), { name, kind: "dir", path });
      onDone();
    } catch (err) {
      setError((err as ApiError).message);
    }
    setBusy(false);
  };
  return (
    <div class="alert alert-info" role="region" aria-label="No backup target">
      <p>This node has no backup target yet. Add a directory that exists and is writable (with{" "}
        <code>keel backup target add NAME --path /srv/backup</code>, or here):</p>
      <form onSubmit={submit} aria-label="Add backup target">
        <div class={`field${nameErr ? " has-error" : ""}`}>
          <label for="bt-name">Target name</label>
          <input id="bt-name" value={name} autoComplete="off" onInput={(e) => setName(e.currentTarget.value)} />
          {nameErr && <div class="field-error" role="alert">{nameErr}</div>}
        </div>
        <div class={`field${pathErr ? " has-error" : ""}`}>
          <label for="bt-path">Directory</label>
          <input id="bt-path" value={path} placeholder="/srv/backup" autoComplete="off" onInput={(e) => setPath(e.currentTarget.value)} />
          {pathErr && <div class="field-error" role="alert">{pathErr}</div>}
        </div>
        {error && <div class="alert alert-error" role="alert">{error}</div>}
        <button type="submit" class="btn btn-primary" disabled={busy || !!no || !name || !path || !!nameErr || !!pathErr} title={no ?? "Add this directory as a backup target"}>
          Add target</button>
      </form>
    </div>
  );
}

function CreateDialog({ targets, onClose, onSubmit }: {
  targets: BackupTarget[]; onClose: () => void; onSubmit: (b: { target: string; full: boolean }) => void;
}) {
  const usable = targets.filter((t) => t.ok);
  const [target, setTarget] = useState(usable[0]?.name ?? "");
  const [full, setFull] = useState(false);
  const t = targets.find((x) => x.name === target);
  return (
    <Modal title="Back up now" onClose={onClose}>
      <form onSubmit={(e) => { e.preventDefault(); if (target) onSubmit({ target, full }); }}>
        <div class="field">
          <label for="backup-target">Target</label>
          <select id="backup-target" value={target} onChange={(e) => setTarget(e.currentTarget.value)}>
            {targets.map((x) => <option value={x.name} disabled={!x.ok}>{x.name} ({x.path}){x.ok ? `, ${formatBytes(x.available)} free` : `: ${x.error ?? "unusable"}`}</option>)}
          </select>
          {t && <div class="hint">{t.path}</div>}
        </div>
        <label class="check"><input type="checkbox" id="backup-full" checked={full} onChange={(e) => setFull(e.currentTarget.checked)} />
          {" "}Full backup (otherwise incremental since this VM's newest backup on the target, when possible)</label>
        {usable.length === 0 && <div class="alert alert-warn" role="alert">No target is usable now: see each one's reason above.</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={!target}>Back up</button>
        </div>
      </form>
    </Modal>
  );
}

function RestoreDialog({ vmid, backup, onClose, onSubmit }: {
  vmid: number; backup: BackupInfo; onClose: () => void;
  onSubmit: (b: { target: string; new_vmid?: number; pool: string; name?: string; start: boolean; replace?: boolean }) => void;
}) {
  const [newId, setNewId] = useState("");
  const [replace, setReplace] = useState(false);
  const [name, setName] = useState("");
  const [pool, setPool] = useState("");
  const [pools, setPools] = useState<PoolInfo[]>([]);
  const [start, setStart] = useState(false);
  useEffect(() => {
    get<{ vmid: number }>(np("/vms/nextid")).then((n) => setNewId((v) => v || String(n.vmid))).catch(() => {});
    get<PoolInfo[]>(np("/storage")).then((p) => {
      const act = p.filter((x) => x.active);
      setPools(act);
      setPool((v) => v || (act.find((x) => x.kind === "dir") ?? act[0])?.name || "");
    }).catch(() => {});
  }, []);
  const err = replace ? (pool ? null : "Choose a pool for the disks") : newId ? restoreFormError(newId, name, pool) : null;
  return (
    <Modal title={`Restore backup ${backup.id} of VM ${vmid}`} onClose={onClose}>
      <form aria-label="Restore" onSubmit={(e) => {
        e.preventDefault();
        if (err) return;
        if (replace) onSubmit({ target: backup.target, pool, start, replace: true });
        else if (newId) onSubmit({ target: backup.target, new_vmid: Number(newId), pool, name: name.trim() || undefined, start });
      }}>
        <p class="muted small">{replace ? `Over VM ${vmid} itself` : "Into a new VM"}, from {backup.kind} backup {backup.id} on target {backup.target}{backup.parent ? ` (its chain back to the full one is read)` : ""}.</p>
        <label class="check"><input type="checkbox" id="restore-replace" checked={replace} onChange={(e) => setReplace(e.currentTarget.checked)} />
          {" "}Restore over VM {vmid} (replaces its disks and configuration)</label>
        {replace ? (
          <p class="alert alert-warn small" role="note">VM {vmid} must be stopped and have no snapshots. The backup's disks are written
            to new volumes first; VM {vmid}'s current disks are deleted only once it runs on them, so the pool needs room for
            both. What VM {vmid} wrote since this backup is lost.</p>
        ) : (<>
          <div class="field">
            <label for="restore-vmid">New VM ID</label>
            <input id="restore-vmid" inputMode="numeric" value={newId} onInput={(e) => setNewId(e.currentTarget.value)} />
          </div>
          <div class="field">
            <label for="restore-name">New name</label>
            <input id="restore-name" value={name} placeholder={`(the original's name)-restore-${newId || "N"}`} onInput={(e) => setName(e.currentTarget.value)} />
          </div>
        </>)}
        <div class="field">
          <label for="restore-pool">Pool for the disks</label>
          <select id="restore-pool" value={pool} onChange={(e) => setPool(e.currentTarget.value)}>
            {pools.map((p) => <option value={p.name}>{p.name} ({p.kind})</option>)}
          </select>
        </div>
        <label class="check"><input type="checkbox" id="restore-start" checked={start} onChange={(e) => setStart(e.currentTarget.checked)} />
          {" "}Start the VM once restored</label>
        {err && <div class="field-error" role="alert">{err}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class={replace ? "btn btn-danger" : "btn btn-primary"} disabled={(!replace && !newId) || !!err}>{replace ? `Replace VM ${vmid}` : "Restore"}</button>
        </div>
      </form>
    </Modal>
  );
}
