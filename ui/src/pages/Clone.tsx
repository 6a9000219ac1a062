// Clones and templates on the VM page: "Clone…" (full, or linked for a template) and
// "Convert to template"; the template badge used here and in the VM list; the clone dialog,
// also opened by a snapshot's "Clone…" on the Snapshots tab (a full clone as the VM was at
// that snapshot). docs/clones.md.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, get, np, runTask } from "../api";
import { Modal } from "../components";
import { usePermissions, whyNot } from "../access";
import { navigate } from "../router";
import type { PoolInfo, VmState } from "../types";

export function TemplateBadge() {
  return <span class="badge badge-info" data-testid="template-badge" title="A template never starts; clone it">Template</span>;
}

export function CloneActions({ vmid, name, state, template, onChanged }: {
  vmid: number; name: string; state?: VmState; template: boolean; onChanged: () => void;
}) {
  const perms = usePermissions();
  const noClone = whyNot(perms, "VM.Clone", `/vms/${vmid}`);
  const noTemplate = whyNot(perms, "VM.Allocate", `/vms/${vmid}`);
  const [cloning, setCloning] = useState(false);
  const [msg, setMsg] = useState<{ tone: string; text: string } | null>(null);
  const stopped = state === "stopped" || state === "crashed";
  const convert = async () => {
    if (!window.confirm(`Convert VM ${vmid} (${name}) to a template? It will never start again; you clone it instead.`)) return;
    setMsg({ tone: "info", text: "Converting to a template…" });
    try {
      await runTask("POST", np(`/vms/${vmid}/template`));
      setMsg({ tone: "info", text: `VM ${vmid} is now a template.` });
    } catch (e) {
      setMsg({ tone: "error", text: `Convert to template refused: ${(e as ApiError).message}` });
    }
    onChanged();
  };
  return (
    <>
      <button type="button" class={`btn${template ? " btn-primary" : ""}`} disabled={!stopped || !!noClone}
        title={noClone ?? (stopped ? "Copy this VM into a new one" : "Stop the VM to clone it")} onClick={() => setCloning(true)}>Clone…</button>
      {!template && (
        <button type="button" class="btn" disabled={!stopped || !!noTemplate}
          title={noTemplate ?? (stopped ? "Make this VM a template: never started, cloned instead" : "Stop the VM first")}
          onClick={convert}>Convert to template</button>
      )}
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"} data-testid="clone-msg">{msg.text}</div>}
      {cloning && <CloneDialog vmid={vmid} name={name} template={template} onClose={() => setCloning(false)} />}
    </>
  );
}

export function CloneDialog({ vmid, name, template, snapshot, onClose }: {
  vmid: number; name: string; template: boolean; snapshot?: string; onClose: () => void;
}) {
  const [newId, setNewId] = useState("");
  const [newName, setNewName] = useState("");
  // a snapshot lives in disks the VM keeps writing: never a linked clone's base
  const [linked, setLinked] = useState(template && !snapshot);
  // The VM's configuration may arrive after the dialog opened (right after "Convert to
  // template"): follow it until the operator chooses.
  const linkedChosen = useRef(false);
  useEffect(() => {
    if (!linkedChosen.current) setLinked(template && !snapshot);
  }, [template, snapshot]);
  const [pool, setPool] = useState("");
  const [pools, setPools] = useState<PoolInfo[]>([]);
  const [busy, setBusy] = useState(false);
  const [progress, setProgress] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    get<{ vmid: number }>(np("/vms/nextid")).then((n) => setNewId((v) => v || String(n.vmid))).catch(() => {});
    get<PoolInfo[]>(np("/storage")).then((p) => setPools(p.filter((x) => x.kind === "dir" && x.active))).catch(() => {});
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const body: Record<string, unknown> = { linked };
    if (snapshot) body.snapshot = snapshot;
    if (newId.trim()) body.vmid = Number(newId);
    if (newName.trim()) body.name = newName.trim();
    if (pool && !linked) body.pool = pool;
    try {
      await runTask("POST", np(`/vms/${vmid}/clone`), body, (t) => setProgress(`${Math.round((t.progress ?? 0) * 100)}%`));
      // closed first: the VM page stays mounted for the new vmid and must not reopen it
      onClose();
      navigate(newId.trim() ? `/vms/${newId.trim()}` : "/vms");
      return;
    } catch (err) {
      setError((err as ApiError).message);
    }
    setBusy(false);
  };
  return (
    <Modal title={snapshot ? `Clone VM ${vmid} (${name}) from snapshot ${snapshot}` : `Clone VM ${vmid} (${name})`} onClose={onClose}>
      <form onSubmit={submit} aria-label="Clone">
        {snapshot && <p class="muted small" data-testid="clone-snapshot">A full copy of the disks and the configuration as they were at snapshot <b>{snapshot}</b>; the clone boots fresh (no memory state) and has no snapshots.</p>}
        <div class="field">
          <label for="clone-vmid">New VM ID</label>
          <input id="clone-vmid" inputMode="numeric" value={newId} onInput={(e) => setNewId(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="clone-name">Name</label>
          <input id="clone-name" value={newName} placeholder={`${name}-clone-${newId || "N"}`} onInput={(e) => setNewName(e.currentTarget.value)} />
        </div>
        <label class="check">
          <input id="clone-linked" type="checkbox" checked={linked} disabled={!template || !!snapshot} onChange={(e) => { linkedChosen.current = true; setLinked(e.currentTarget.checked); }} />
          {" "}Linked clone (qcow2 overlays on the template's disks; fast, small, in the template's pool)
        </label>
        {snapshot ? <p class="muted small">A clone from a snapshot is always a full copy.</p>
          : !template && <p class="muted small">Linked clones are made from templates only: convert this VM first.</p>}
        <div class="field">
          <label for="clone-pool">Target pool (full clone)</label>
          <select id="clone-pool" value={pool} disabled={linked} onChange={(e) => setPool(e.currentTarget.value)}>
            <option value="">Same pool as each disk</option>
            {pools.map((p) => <option value={p.name}>{p.name}</option>)}
          </select>
        </div>
        {progress && busy && <p class="muted" role="status">Cloning… {progress}</p>}
        {error && <div class="alert alert-error" role="alert">{error}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={busy}>{busy ? "Cloning…" : "Clone"}</button>
        </div>
      </form>
    </Modal>
  );
}
