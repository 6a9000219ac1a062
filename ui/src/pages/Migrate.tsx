// Migration on the VM page: "Migrate…" opens a dialog with the target node (the cluster's other
// members), the options (bandwidth, max downtime, auto-converge) and the task's progress from
// libvirt's job statistics, with a button that cancels a running live migration. The server
// decides every refusal (no other member, missing network or pool…): the dialog shows its
// message. docs/migration.md.
import { useEffect, useState } from "preact/hooks";
import { ApiError, currentNode, get, np, request, runTask } from "../api";
import { Modal } from "../components";
import { usePermissions, whyNot } from "../access";
import { navigate } from "../router";
import type { ClusterStatus, VmState } from "../types";

/** `onOpen` tells the page the dialog is open: the VM leaves this node while it is, and the page
 *  must keep showing the dialog (its progress and outcome) rather than "not found". */
export function MigrateAction({ vmid, name, state, onOpen }: { vmid: number; name: string; state?: VmState; onOpen?: (open: boolean) => void }) {
  const perms = usePermissions();
  const noMigrate = whyNot(perms, "VM.Migrate", `/vms/${vmid}`);
  const [open, setOpenState] = useState(false);
  const setOpen = (o: boolean) => { setOpenState(o); onOpen?.(o); };
  const movable = state === "running" || state === "paused" || state === "stopped";
  return (
    <>
      <button type="button" class="btn" disabled={!movable || !!noMigrate}
        title={noMigrate ?? (movable ? "Move this VM to another cluster member (live when running)" : "Only a running, paused or stopped VM moves")}
        onClick={() => setOpen(true)}>Migrate…</button>
      {open && <MigrateDialog vmid={vmid} name={name} live={state !== "stopped"} onClose={() => setOpen(false)} />}
    </>
  );
}

/** Positive whole number or empty (the option left out); anything else is an error message. */
export function optionalCount(v: string, what: string, max: number): number | null | string {
  const t = v.trim();
  if (!t) return null;
  if (!/^\d+$/.test(t) || Number(t) < 1 || Number(t) > max) return `${what}: use a whole number from 1 to ${max}, or leave it empty`;
  return Number(t);
}

function MigrateDialog({ vmid, name, live, onClose }: { vmid: number; name: string; live: boolean; onClose: () => void }) {
  const here = currentNode();
  const [members, setMembers] = useState<string[] | null>(null);
  const [target, setTarget] = useState("");
  const [bandwidth, setBandwidth] = useState("");
  const [downtime, setDowntime] = useState("");
  const [autoConverge, setAutoConverge] = useState(true);
  const [busy, setBusy] = useState(false);
  const [progress, setProgress] = useState<string | null>(null);
  const [lastLine, setLastLine] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  useEffect(() => {
    get<ClusterStatus>("/cluster/status").then((s) => {
      const others = s.clustered ? s.members.map((m) => m.name).filter((n) => n !== here) : [];
      setMembers(others);
      setTarget((t) => t || others[0] || "");
    }).catch(() => setMembers([]));
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const bw = optionalCount(bandwidth, "Bandwidth", 1_000_000);
    const dt = optionalCount(downtime, "Max downtime", 60_000);
    if (typeof bw === "string") { setError(bw); return; }
    if (typeof dt === "string") { setError(dt); return; }
    const body: Record<string, unknown> = { target: target.trim(), auto_converge: autoConverge };
    if (bw !== null) body.bandwidth_mib_s = bw;
    if (dt !== null) body.max_downtime_ms = dt;
    setBusy(true);
    try {
      await runTask("POST", np(`/vms/${vmid}/migrate`), body, (t, lines) => {
        setProgress(`${Math.round((t.progress ?? 0) * 100)}%`);
        if (lines.length) setLastLine(lines[lines.length - 1].line);
      });
      setDone(`VM ${vmid} is now on ${target.trim()}.`);
    } catch (err) {
      setError((err as ApiError).message);
    }
    setBusy(false);
  };
  const cancel = async () => {
    try {
      await request("POST", np(`/vms/${vmid}/migrate/cancel`));
    } catch (err) {
      setError((err as ApiError).message);
    }
  };
  return (
    <Modal title={`Migrate VM ${vmid} (${name})`} onClose={onClose}>
      <form onSubmit={submit} aria-label="Migrate">
        <p class="muted small">{live
          ? "Live: the VM keeps running; its disks on node-local pools are copied while it runs, over TLS with the cluster CA."
          : "Offline: the stopped VM's definition and disk volumes are copied to the target, then removed here."}</p>
        <div class="field">
          <label for="migrate-target">Target node</label>
          {members && members.length > 0
            ? (
              <select id="migrate-target" value={target} disabled={busy} onChange={(e) => setTarget(e.currentTarget.value)}>
                {members.map((m) => <option value={m}>{m}</option>)}
              </select>
            )
            : <input id="migrate-target" value={target} disabled={busy} placeholder="node name" onInput={(e) => setTarget(e.currentTarget.value)} />}
          {members && members.length === 0 && <p class="muted small" data-testid="migrate-no-members">This node has no other cluster member to migrate to.</p>}
        </div>
        <div class="field">
          <label for="migrate-bandwidth">Bandwidth limit (MiB/s, empty: unlimited)</label>
          <input id="migrate-bandwidth" inputMode="numeric" value={bandwidth} disabled={busy || !live} onInput={(e) => setBandwidth(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="migrate-downtime">Max downtime (ms, empty: QEMU's default)</label>
          <input id="migrate-downtime" inputMode="numeric" value={downtime} disabled={busy || !live} onInput={(e) => setDowntime(e.currentTarget.value)} />
        </div>
        <label class="check">
          <input id="migrate-autoconverge" type="checkbox" checked={autoConverge} disabled={busy || !live} onChange={(e) => setAutoConverge(e.currentTarget.checked)} />
          {" "}Auto-converge (slow the vCPUs down if memory changes faster than it is copied)
        </label>
        {busy && <p class="muted" role="status" data-testid="migrate-progress">Migrating… {progress ?? ""} {lastLine ? `— ${lastLine}` : ""}</p>}
        {error && <div class="alert alert-error" role="alert">{error}</div>}
        {done && <div class="alert alert-info" role="status" data-testid="migrate-done">{done}</div>}
        <div class="modal-actions">
          {busy && live && <button type="button" class="btn btn-danger-outline" onClick={cancel}>Cancel migration</button>}
          {done
            ? <button type="button" class="btn btn-primary" onClick={() => navigate("/vms")}>Back to the VM list</button>
            : (
              <>
                <button type="button" class="btn" disabled={busy} onClick={onClose}>Close</button>
                <button type="submit" class="btn btn-primary" disabled={busy || !target.trim()}>{busy ? "Migrating…" : "Migrate"}</button>
              </>
            )}
        </div>
      </form>
    </Modal>
  );
}
