// Add and remove disks and NICs from the VM page's Hardware tab, running or not. Each action
// PUTs the VM's spec with the change (hostd attaches or detaches live what it can: docs/hotplug.md)
// and reports the task's outcome: applied live, or saved and pending until the next cold boot.
import { useEffect, useState } from "preact/hooks";
import { ApiError, followTask, get, getTaskLog, notifyTask, np, request } from "../api";
import { Modal } from "../components";
import { usePermissions, whyNot } from "../access";
import { rawOnlyPool, rawOnlyPoolText } from "../logic";
import type { NetworkInfo, PoolInfo, TaskRef, VmSpec } from "../types";

export type Msg = { tone: "info" | "error"; text: string } | null;

/** The outcome of an update task from its log: what went live, what stays pending. */
export function hotplugOutcome(lines: string[]): string {
  const live = lines.filter((l) => /^(attached .* live|.* detached \(the guest released it)/.test(l) || / set to .* live$/.test(l));
  const pending = lines.filter((l) => l.startsWith("pending until the next cold boot: ")).map((l) => l.slice(34));
  const parts: string[] = [];
  if (live.length) parts.push(`applied live: ${live.join("; ")}`);
  if (pending.length) parts.push(`pending until the next cold boot (stop, then start): ${pending.join("; ")}`);
  return parts.length ? parts.join(". ") : "saved";
}

/** PUT the VM's spec as a task; `say` gets the outcome (what went live, what is pending). */
export async function updateSpec(vmid: number, what: string, spec: VmSpec, say: (m: Msg) => void): Promise<boolean> {
  say({ tone: "info", text: `${what}: task started…` });
  try {
    const r = await request("PUT", np(`/vms/${vmid}`), spec) as TaskRef;
    notifyTask(r.upid);
    const t = await followTask(r.upid);
    const lines = (await getTaskLog(r.upid, 0).catch(() => [])).map((l) => l.line);
    if (t.state === "ok") {
      say({ tone: "info", text: `${what}: done, ${hotplugOutcome(lines)}.` });
      return true;
    }
    say({ tone: "error", text: `${what} failed: ${t.message}` });
  } catch (e) {
    say({ tone: "error", text: `${what} refused: ${(e as ApiError).message}` });
  }
  return false;
}

/** "Add disk…", "Add NIC…" and the outcome line, above the Hardware tab's device tables. */
export function DeviceActions({ vmid, spec, onChanged, msg, say: setMsg }: {
  vmid: number; spec: VmSpec; onChanged: () => void; msg: Msg; say: (m: Msg) => void;
}) {
  const perms = usePermissions();
  const no = whyNot(perms, "VM.Config", `/vms/${vmid}`);
  const [open, setOpen] = useState<"disk" | "nic" | null>(null);
  const [busy, setBusy] = useState(false);
  const [pools, setPools] = useState<PoolInfo[]>([]);
  const [nets, setNets] = useState<NetworkInfo[]>([]);
  const [pool, setPool] = useState("");
  const [size, setSize] = useState("");
  const [bus, setBus] = useState<"virtio" | "sata" | "scsi">("virtio");
  const [kind, setKind] = useState<"network" | "bridge">("network");
  const [target, setTarget] = useState("");
  useEffect(() => {
    if (open === "disk") get<PoolInfo[]>(np("/storage")).then((p) => {
      const ok = p.filter((x) => x.active);
      setPools(ok);
      if (!pool && ok.length) setPool(ok[0].name);
    }).catch(() => {});
    if (open === "nic") get<NetworkInfo[]>(np("/networks")).then((n) => {
      setNets(n);
      if (!n.length) setKind("bridge");
    }).catch(() => {});
  }, [open]);
  const poolKind = pools.find((p) => p.name === pool)?.kind;
  const badSize = size && !/^[1-9]\d*$/.test(size.trim()) ? "A whole number of MiB, at least 1." : null;
  const run = async (what: string, s: VmSpec) => {
    setBusy(true);
    const ok = await updateSpec(vmid, what, s, setMsg);
    setBusy(false);
    if (ok) setOpen(null);
    onChanged();
  };
  const addDisk = (e: Event) => {
    e.preventDefault();
    if (!pool || !size || badSize) return;
    // an lvm-thin or iscsi-lvm pool takes raw disks only; elsewhere the API's default (qcow2)
    const raw = rawOnlyPool(poolKind);
    run("Add disk", { ...spec, disks: [...(spec.disks ?? []), { pool, size_mib: Number(size), bus, ...(raw ? { format: "raw" as const } : {}) }] });
  };
  const addNic = (e: Event) => {
    e.preventDefault();
    if (!target.trim()) return;
    run("Add NIC", { ...spec, nics: [...(spec.nics ?? []), kind === "network" ? { network: target.trim() } : { bridge: target.trim() }] });
  };
  return (
    <div class="toolbar" role="toolbar" aria-label="Device actions">
      <button type="button" class="btn" disabled={!!no || busy} title={no ?? "Add a new disk (attached live when the VM runs and the bus allows)"}
        onClick={() => { setMsg(null); setOpen("disk"); }}>Add disk…</button>
      <button type="button" class="btn" disabled={!!no || busy} title={no ?? "Add a network interface (attached live when the VM runs)"}
        onClick={() => { setMsg(null); setOpen("nic"); }}>Add NIC…</button>
      {msg && <span class={`small ${msg.tone === "error" ? "field-error" : "muted"}`} role="status" aria-label="Device task">{msg.text}</span>}
      {open === "disk" && (
        <Modal title="Add disk" onClose={() => setOpen(null)}>
          <form onSubmit={addDisk}>
            <div class="field">
              <label for="hp-pool">Storage pool</label>
              <select id="hp-pool" value={pool} onChange={(e) => setPool(e.currentTarget.value)}>
                {pools.map((p) => <option value={p.name}>{p.name}</option>)}
              </select>
              {poolKind && rawOnlyPool(poolKind) && <div class="hint">{rawOnlyPoolText(poolKind)} The new disk is raw.</div>}
            </div>
            <div class={`field${badSize ? " has-error" : ""}`}>
              <label for="hp-size">Size (MiB)</label>
              <input id="hp-size" inputMode="numeric" value={size} onInput={(e) => setSize(e.currentTarget.value)} />
              {badSize && <div class="field-error" role="alert">{badSize}</div>}
            </div>
            <div class="field">
              <label for="hp-bus">Bus</label>
              <select id="hp-bus" value={bus} onChange={(e) => setBus(e.currentTarget.value as typeof bus)}>
                <option value="virtio">virtio (hot-plug)</option><option value="scsi">scsi</option><option value="sata">sata</option>
              </select>
              <div class="hint">On a running VM only virtio disks are attached live; others wait for the next cold boot.</div>
            </div>
            {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"}>{msg.text}</div>}
            <div class="modal-actions">
              <button type="button" class="btn" onClick={() => setOpen(null)}>Cancel</button>
              <button type="submit" class="btn btn-primary" disabled={!pool || !size || !!badSize || busy}>{busy ? "Adding…" : "Add"}</button>
            </div>
          </form>
        </Modal>
      )}
      {open === "nic" && (
        <Modal title="Add NIC" onClose={() => setOpen(null)}>
          <form onSubmit={addNic}>
            <div class="field">
              <label for="hp-kind">Attach to</label>
              <select id="hp-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value as typeof kind)}>
                <option value="network">libvirt network</option><option value="bridge">host bridge</option>
              </select>
            </div>
            <div class="field">
              <label for="hp-target">{kind === "network" ? "Network" : "Bridge"}</label>
              <input id="hp-target" list="hp-nets" value={target} onInput={(e) => setTarget(e.currentTarget.value)} />
              <datalist id="hp-nets">{kind === "network" && nets.map((n) => <option value={n.name} />)}</datalist>
            </div>
            {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"}>{msg.text}</div>}
            <div class="modal-actions">
              <button type="button" class="btn" onClick={() => setOpen(null)}>Cancel</button>
              <button type="submit" class="btn btn-primary" disabled={!target.trim() || busy}>{busy ? "Adding…" : "Add"}</button>
            </div>
          </form>
        </Modal>
      )}
    </div>
  );
}

/** "Remove" of one disk (`kind` disks) or NIC (`nics`) row; the volume itself is kept. */
export function RemoveDevice({ vmid, spec, kind, index, onChanged, say }: {
  vmid: number; spec: VmSpec; kind: "disks" | "nics"; index: number; onChanged: () => void; say: (m: Msg) => void;
}) {
  const perms = usePermissions();
  const no = whyNot(perms, "VM.Config", `/vms/${vmid}`);
  const [busy, setBusy] = useState(false);
  const label = kind === "disks" ? `disk${index}` : `net${index}`;
  const go = async () => {
    if (!window.confirm(`Remove ${label}? A running guest is asked to release it; a disk's volume is kept in its pool.`)) return;
    setBusy(true);
    const list = [...(spec[kind] ?? [])] as unknown[];
    list.splice(index, 1);
    await updateSpec(vmid, `Remove ${label}`, { ...spec, [kind]: list } as VmSpec, say);
    setBusy(false);
    onChanged();
  };
  return (
    <button type="button" class="btn btn-danger-outline" disabled={!!no || busy} title={no ?? `Remove ${label}`} onClick={go}
      aria-label={`Remove ${label}`}>
      {busy ? "Removing…" : "Remove"}
    </button>
  );
}
