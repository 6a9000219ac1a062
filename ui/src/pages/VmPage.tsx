import { useEffect, useState } from "preact/hooks";
import { NOTICE_MS, setFlash } from "../flash";
import { ApiError, del, followTask, get, notifyTask, np, post } from "../api";
import { ErrorBox, Loading, Modal, TaskStateBadge, Tabs, VmStateBadge } from "../components";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import {
  type PowerOp, POWER_OPS, canDelete, formatBytes, formatDuration, formatMib, formatTime, formatUptime, powerAllowed, taskKindLabel,
} from "../logic";
import { navigate } from "../router";
import { VmHistory } from "./VmHistory";
import type { TaskInfo, TaskRef, VmConfig, VmStatus } from "../types";
import { Console, Serial } from "./Console";
import { ResizeDisk, Snapshots } from "./Snapshots";
import { Backups } from "./Backups";
import { Metrics } from "./Metrics";
import { GuestAgent } from "./GuestAgent";
import { CloudInit } from "./CloudInit";
import { CloneActions, CloneDialog, TemplateBadge } from "./Clone";
import { MigrateAction } from "./Migrate";
import { DeviceActions, type Msg as DeviceMsg, RemoveDevice } from "./Hotplug";

const OP_LABEL: Record<PowerOp, string> = {
  start: "Start", shutdown: "Shut down", stop: "Stop", reboot: "Reboot", reset: "Reset", suspend: "Suspend", resume: "Resume",
};
const OP_HINT: Record<PowerOp, string> = {
  start: "Boot the VM", shutdown: "Ask the guest OS to power off (through its guest agent when it answers, else ACPI)", stop: "Power off at once, like pulling the plug",
  reboot: "Ask the guest OS to reboot (ACPI)", reset: "Hard reset, like the reset button", suspend: "Pause the vCPUs", resume: "Continue paused vCPUs",
};
type Tab = "summary" | "performance" | "hardware" | "cloudinit" | "console" | "serial" | "tasks" | "snapshots" | "backups";

export function VmPage({ vmid, tab }: { vmid: number; tab: string }) {
  const status = usePoll(() => get<VmStatus>(np(`/vms/${vmid}/status/current`)), 2000, [vmid]);
  const config = usePoll(() => get<VmConfig>(np(`/vms/${vmid}`)), 10000, [vmid]);
  const [busy, setBusy] = useState<string | null>(null);
  const [actionMsg, setActionMsg] = useState<{ tone: string; text: string } | null>(null);
  const [deleting, setDeleting] = useState(false);
  const [migrating, setMigrating] = useState(false);
  const [cloneFrom, setCloneFrom] = useState<string | null>(null);
  const perms = usePermissions();
  const noPower = whyNot(perms, "VM.PowerMgmt", `/vms/${vmid}`);
  const noDelete = whyNot(perms, "VM.Allocate", `/vms/${vmid}`);
  const active = (["summary", "performance", "hardware", "cloudinit", "console", "serial", "tasks", "snapshots", "backups"].includes(tab) ? tab : "summary") as Tab;
  const setTab = (t: Tab) => navigate(`/vms/${vmid}${t === "summary" ? "" : `?tab=${t}`}`, true);
  const s = status.data;
  const name = s?.name ?? config.data?.spec.name ?? "";

  // "Start: done." and the like clear themselves after a few seconds; errors stay.
  useEffect(() => {
    if (actionMsg?.tone !== "info" || !actionMsg.text.endsWith(": done.")) return;
    const t = window.setTimeout(() => setActionMsg(null), NOTICE_MS);
    return () => clearTimeout(t);
  }, [actionMsg]);

  const power = async (op: PowerOp) => {
    setBusy(op);
    setActionMsg({ tone: "info", text: `${OP_LABEL[op]}: task started…` });
    try {
      const r = await post<TaskRef>(np(`/vms/${vmid}/status/${op}`));
      notifyTask(r.upid);
      const t = await followTask(r.upid);
      setActionMsg(t.state === "ok"
        ? { tone: "info", text: `${OP_LABEL[op]}: done.` }
        : { tone: "error", text: `${OP_LABEL[op]} failed: ${t.message}` });
    } catch (e) {
      setActionMsg({ tone: "error", text: `${OP_LABEL[op]} refused: ${(e as ApiError).message}` });
    }
    setBusy(null);
    status.refresh();
  };

  // a VM migrated away answers 404 here before the dialog has seen its task end: keep the page
  // (and the dialog with the outcome) until the dialog is closed
  if (status.error && status.error.status === 404 && !migrating) {
    return (
      <section>
        <h1>VM {vmid} not found</h1>
        <p>{status.error.message}</p>
        <p><a href="/vms">Back to the VM list</a></p>
      </section>
    );
  }
  return (
    <section aria-labelledby="vm-title">
      <nav class="crumbs" aria-label="Breadcrumb"><a href="/vms">Virtual machines</a> / <span>{vmid}</span></nav>
      <div class="page-head">
        <h1 id="vm-title">{vmid} · {name}</h1>
        {s && <VmStateBadge state={s.state} />}
        {config.data?.template && <TemplateBadge />}
        {s?.pending_changes && <span class="badge badge-warn" title="Changes apply at the next cold boot (stop + start)">Pending changes</span>}
      </div>
      <div class="toolbar" role="toolbar" aria-label="VM actions">
        {POWER_OPS.map((op) => (
          <button type="button" class={`btn${op === "start" ? " btn-primary" : op === "stop" || op === "reset" ? " btn-danger-outline" : ""}`}
            disabled={!s || !powerAllowed(op, s.state) || busy !== null || !!noPower || !!config.data?.template}
            title={config.data?.template ? "A template never starts: clone it" : noPower ?? OP_HINT[op]} onClick={() => power(op)}>
            {busy === op ? `${OP_LABEL[op]}…` : OP_LABEL[op]}
          </button>
        ))}
        <span class="spacer" />
        <CloneActions vmid={vmid} name={name} state={s?.state} template={!!config.data?.template}
          onChanged={() => { status.refresh(); config.refresh(); }} />
        {!config.data?.template && <MigrateAction vmid={vmid} name={name} state={s?.state} onOpen={setMigrating} />}
        <button type="button" class="btn btn-danger" disabled={!s || busy !== null || !!noDelete} onClick={() => setDeleting(true)}
          title={noDelete ?? (s && !canDelete(s.state) ? "Stop the VM before deleting it" : "Delete this VM")}>Delete…</button>
      </div>
      {actionMsg && <div class={`alert alert-${actionMsg.tone}`} role={actionMsg.tone === "error" ? "alert" : "status"}>{actionMsg.text}</div>}
      <ErrorBox error={status.error} title="Cannot read the VM's status" />
      <Tabs<Tab> label="VM sections" active={active} onChange={setTab}
        tabs={[["summary", "Summary"], ["performance", "Performance"], ["hardware", "Hardware"], ["cloudinit", "Cloud-init"], ["console", "Console"], ["serial", "Serial"], ["tasks", "Tasks"], ["snapshots", "Snapshots"], ["backups", "Backups"]]} />
      <div role="tabpanel" id={`panel-${active}`} aria-labelledby={`tab-${active}`} class="tabpanel">
        {active === "summary" && (s ? <Summary s={s} vmid={vmid} /> : <Loading what="status" />)}
        {active === "performance" && <Metrics path={`/vms/${vmid}`} what={`VM ${vmid}`} />}
        {active === "hardware" && <Hardware config={config.data} error={config.error} vmid={vmid}
          onChanged={() => { config.refresh(); status.refresh(); }} />}
        {active === "cloudinit" && <CloudInit vmid={vmid} config={config.data}
          onChanged={() => { config.refresh(); status.refresh(); }} />}
        {active === "console" && s && <Console vmid={vmid} state={s.state} />}
        {active === "serial" && <Serial vmid={vmid} />}
        {active === "tasks" && <><VmHistory vmid={vmid} /><VmTasks vmid={vmid} /></>}
        {active === "snapshots" && <Snapshots vmid={vmid} state={s?.state} onClone={setCloneFrom} />}
        {active === "backups" && <Backups vmid={vmid} />}
      </div>
      {cloneFrom && <CloneDialog vmid={vmid} name={name} template={!!config.data?.template} snapshot={cloneFrom} onClose={() => setCloneFrom(null)} />}
      {deleting && s && <DeleteDialog vmid={vmid} name={name} state={s.state} onClose={() => setDeleting(false)} />}
    </section>
  );
}

function Summary({ s, vmid }: { s: VmStatus; vmid: number }) {
  return (
    <div class="grid-2">
      <div class="panel">
        <h2>Status</h2>
        <dl class="kv">
          <dt>State</dt><dd><VmStateBadge state={s.state} /></dd>
          <dt>Uptime</dt><dd>{s.state === "running" ? formatUptime(s.uptime_s) : "—"}</dd>
          <dt>CPU time</dt><dd>{(s.cpu_time_ns / 1e9).toFixed(1)} s</dd>
          <dt>vCPUs</dt><dd>{s.vcpus}</dd>
          <dt>Memory</dt><dd>{formatMib(s.memory_mib)}{s.max_memory_mib !== s.memory_mib ? ` (max ${formatMib(s.max_memory_mib)})` : ""}</dd>
          <dt>Domain type</dt><dd>{s.domain_type === "kvm" ? "KVM" : s.domain_type === "qemu" ? "QEMU (TCG, software emulation)" : s.domain_type}</dd>
          <dt>UUID</dt><dd class="mono small">{s.uuid}</dd>
        </dl>
      </div>
      <div class="panel">
        <h2>I/O</h2>
        {s.disks.length === 0 && s.nics.length === 0 && <p class="muted">No disk or NIC statistics (the VM is stopped or has none).</p>}
        {s.disks.length > 0 && (
          <table class="table compact" aria-label="Disk I/O">
            <thead><tr><th>Disk</th><th class="num">Read</th><th class="num">Written</th></tr></thead>
            <tbody>{s.disks.map((d) => <tr><td class="mono">{d.dev}</td><td class="num">{formatBytes(d.rd_bytes)}</td><td class="num">{formatBytes(d.wr_bytes)}</td></tr>)}</tbody>
          </table>
        )}
        {s.nics.length > 0 && (
          <table class="table compact" aria-label="Network I/O">
            <thead><tr><th>NIC</th><th>MAC</th><th class="num">RX</th><th class="num">TX</th></tr></thead>
            <tbody>{s.nics.map((n) => <tr><td class="mono">{n.dev}</td><td class="mono">{n.mac}</td><td class="num">{formatBytes(n.rx_bytes)}</td><td class="num">{formatBytes(n.tx_bytes)}</td></tr>)}</tbody>
          </table>
        )}
      </div>
      <GuestAgent vmid={vmid} />
    </div>
  );
}

function Hardware({ config, error, vmid, onChanged }: { config?: VmConfig; error: ApiError | null; vmid: number; onChanged: () => void }) {
  const [dmsg, say] = useState<DeviceMsg>(null);
  if (error) return <ErrorBox error={error} title="Cannot read the configuration" />;
  if (!config) return <Loading what="configuration" />;
  const sp = config.spec;
  const pend = (f: string) => config.pending.some((p) => p === f || p.startsWith(f + ".") || p.startsWith(f + "["));
  const P = ({ f }: { f: string }) => pend(f) ? <span class="badge badge-warn" title="Applies at the next cold boot (stop, then start)">pending</span> : null;
  return (
    <div>
      {!config.managed && <div class="alert alert-warn">This domain was defined outside Keel: adopt it before changing it.</div>}
      {config.pending.length > 0 && (
        <div class="alert alert-warn" role="status">
          Pending until the next cold boot (stop, then start): {config.pending.join(", ")}
        </div>
      )}
      <div class="panel">
        <h2>Configuration</h2>
        <dl class="kv">
          <dt>vCPUs</dt><dd>{sp.vcpus ?? 1}{sp.max_vcpus ? ` (hot-plug up to ${sp.max_vcpus})` : ""} <P f="vcpus" /></dd>
          <dt>CPU model</dt><dd>{sp.cpu_model ?? "default"} <P f="cpu_model" /></dd>
          <dt>Memory</dt><dd>{formatMib(sp.memory_mib ?? 512)}{sp.balloon_mib ? ` (balloon ${sp.balloon_mib} MiB)` : ""} <P f="memory_mib" /></dd>
          <dt>Machine</dt><dd>{sp.machine ?? "q35"} <P f="machine" /></dd>
          <dt>Firmware</dt><dd>{(sp.firmware ?? "bios").toUpperCase()} <P f="firmware" /></dd>
          <dt>Boot order</dt><dd>{(sp.boot ?? []).join(" → ") || "disks, CD-ROM, NICs"} <P f="boot" /></dd>
          <dt>CD-ROM</dt><dd>{sp.cdrom ? (sp.cdrom.volume ? `${sp.cdrom.pool}:${sp.cdrom.volume}` : sp.cdrom.path ?? "empty drive") : "none"} <P f="cdrom" /></dd>
          {sp.kernel && <><dt>Kernel boot</dt><dd data-testid="kernel-boot">{`${sp.kernel.pool}:${sp.kernel.kernel}`}{sp.kernel.initrd ? ` + ${sp.kernel.initrd}` : ""}{sp.kernel.cmdline ? <> — <code>{sp.kernel.cmdline}</code></> : ""} <P f="kernel" /></dd></>}
          <dt>Consoles</dt><dd>{[sp.vnc !== false && "VNC", sp.serial !== false && "serial"].filter(Boolean).join(", ") || "none"}</dd>
          <dt>Guest agent</dt><dd>{sp.guest_agent !== false ? "channel present" : "off"}</dd>
          <dt>On crash</dt><dd>{sp.on_crash ?? "destroy"}</dd>
        </dl>
      </div>
      <DeviceActions vmid={vmid} spec={sp} onChanged={onChanged} msg={dmsg} say={say} />
      <div class="panel">
        <h2>Disks <P f="disks" /></h2>
        {(sp.disks ?? []).length === 0 ? <p class="muted">No disks.</p> : (
          <table class="table" aria-label="Disks">
            <thead><tr><th>#</th><th>Source</th><th>Format</th><th>Bus</th><th>Cache / IO</th><th>Limits</th><th /></tr></thead>
            <tbody>{(sp.disks ?? []).map((d, i) => (
              <tr><td class="mono">disk{i} <P f={`disks[${i}]`} /></td>
                <td class="mono">{d.path ?? `${d.pool}:${d.volume ?? `(new, ${d.size_mib} MiB)`}`}</td>
                <td>{d.format ?? "qcow2"}</td><td>{d.bus ?? "virtio"}</td><td>{d.cache ?? "none"} / {d.io ?? "native"}</td>
                <td class="small">{d.throttle && Object.keys(d.throttle).length ? Object.entries(d.throttle).map(([k, v]) => `${k}=${v}`).join(", ") : "—"}</td>
                <td><ResizeDisk vmid={vmid} disk={i} /> <RemoveDevice vmid={vmid} spec={sp} kind="disks" index={i} onChanged={onChanged} say={say} /></td></tr>
            ))}</tbody>
          </table>
        )}
      </div>
      <div class="panel">
        <h2>Network interfaces <P f="nics" /></h2>
        {(sp.nics ?? []).length === 0 ? <p class="muted">No network interfaces.</p> : (
          <table class="table" aria-label="Network interfaces">
            <thead><tr><th>#</th><th>Attached to</th><th>Model</th><th>MAC</th><th /></tr></thead>
            <tbody>{(sp.nics ?? []).map((n, i) => (
              <tr><td class="mono">net{i} <P f={`nics[${i}]`} /></td><td>{n.network ? `network ${n.network}` : `bridge ${n.bridge}`}</td>
                <td>{n.model ?? "virtio"}</td><td class="mono">{n.mac ?? "—"}</td>
                <td><RemoveDevice vmid={vmid} spec={sp} kind="nics" index={i} onChanged={onChanged} say={say} /></td></tr>
            ))}</tbody>
          </table>
        )}
      </div>
    </div>
  );
}

export function VmTasks({ vmid }: { vmid: number }) {
  const { data, error } = usePoll(() => get<TaskInfo[]>(np(`/tasks?target=${vmid}&limit=50`)), 3000, [vmid]);
  if (error) return <ErrorBox error={error} title="Cannot list tasks" />;
  if (!data) return <Loading what="tasks" />;
  if (!data.length) return <p class="muted">No tasks for this VM yet.</p>;
  return (
    <table class="table" aria-label={`Tasks of VM ${vmid}`}>
      <thead><tr><th>Start</th><th>Task</th><th>User</th><th>Duration</th><th>State</th><th>Message</th></tr></thead>
      <tbody>{data.map((t) => (
        <tr><td class="nowrap">{formatTime(t.start_time)}</td><td><a href={`/tasks?upid=${encodeURIComponent(t.upid)}`}>{taskKindLabel(t.kind)}</a></td>
          <td>{t.user}</td><td>{formatDuration(t.start_time, t.end_time)}</td><td><TaskStateBadge state={t.state} /></td>
          <td class="small">{t.state === "error" ? t.message : ""}</td></tr>
      ))}</tbody>
    </table>
  );
}

function DeleteDialog({ vmid, name, state, onClose }: { vmid: number; name: string; state: VmStatus["state"]; onClose: () => void }) {
  const [typed, setTyped] = useState("");
  const [purge, setPurge] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const stopped = canDelete(state);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (typed !== name || !stopped) return;
    setBusy(true);
    setError(null);
    try {
      const r = await del<TaskRef>(np(`/vms/${vmid}${purge ? "?purge_volumes=true" : ""}`));
      notifyTask(r.upid);
      const t = await followTask(r.upid);
      if (t.state === "ok") { setFlash(`VM ${vmid} (${name}) deleted.`); navigate("/vms"); return; }
      setError(`Deleting failed: ${t.message}`);
    } catch (err) {
      setError((err as ApiError).message);
    }
    setBusy(false);
  };
  return (
    <Modal title={`Delete VM ${vmid}`} onClose={onClose}>
      <form onSubmit={submit}>
        {!stopped && <div class="alert alert-warn" role="alert">The VM is {state}. Stop or shut it down before deleting it.</div>}
        <p>This removes the VM's definition{purge ? " and its disk volumes (ISOs used as CD-ROM are kept)" : ""}. It cannot be undone.</p>
        <label class="check"><input type="checkbox" checked={purge} onChange={(e) => setPurge(e.currentTarget.checked)} /> Also delete its disk volumes</label>
        <div class="field">
          <label for="delete-confirm">Type the VM name <strong class="mono">{name}</strong> to confirm</label>
          <input id="delete-confirm" value={typed} autoComplete="off" onInput={(e) => setTyped(e.currentTarget.value)} />
        </div>
        {error && <div class="alert alert-error" role="alert">{error}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-danger" disabled={typed !== name || busy || !stopped}>{busy ? "Deleting…" : "Delete VM"}</button>
        </div>
      </form>
    </Modal>
  );
}
