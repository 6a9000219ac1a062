import { get, np } from "../api";
import { ErrorBox, Loading, UsageBar, VmStateBadge } from "../components";
import { usePoll } from "../hooks";
import { Metrics } from "./Metrics";
import { formatBytes, formatUptime, tcgReason } from "../logic";
import type { NodeInfo, PoolInfo, VmState, VmSummary } from "../types";

export function Overview() {
  const node = usePoll(() => get<NodeInfo>(np("")), 5000);
  const vms = usePoll(() => get<VmSummary[]>(np("/vms")), 5000);
  const pools = usePoll(() => get<PoolInfo[]>(np("/storage")), 10000);
  const n = node.data;
  const counts = new Map<VmState, number>();
  (vms.data ?? []).forEach((v) => counts.set(v.state, (counts.get(v.state) ?? 0) + 1));
  return (
    <section aria-labelledby="ov-title">
      <div class="page-head">
        <h1 id="ov-title">Node {n?.node ?? ""}</h1>
        {n && <span class="muted">Keel {n.keel_version} · {n.libvirt_version}</span>}
      </div>
      <ErrorBox error={node.error} title="Cannot load node facts" />
      {!n && !node.error && <Loading what="node facts" />}
      {n && (
        <>
          {n.accel === "tcg" ? (
            <div class="alert alert-warn" role="status">
              <strong>Software emulation (TCG).</strong> Guests run without hardware acceleration: correct but 10–50× slower.
              <div class="small" data-testid="tcg-reason">Reason: {tcgReason(n.accel_reason).text}</div>
              {tcgReason(n.accel_reason).detail && <details class="small"><summary>QEMU's words</summary><pre class="code">{tcgReason(n.accel_reason).detail}</pre></details>}
            </div>
          ) : null}
          <div class="cards">
            <div class="card"><h2>CPU</h2><p class="big">{n.cpus}</p><p class="muted">logical CPUs</p>
              <p class="small">Load {n.loadavg.map((l) => l.toFixed(2)).join(" / ")} <span class="muted">(1/5/15 min)</span></p></div>
            <div class="card"><h2>Memory</h2>
              <p class="big">{formatBytes(n.memory_total - n.memory_free)} <span class="muted small">of {formatBytes(n.memory_total)}</span></p>
              <UsageBar used={n.memory_total - n.memory_free} total={n.memory_total} label="Memory used" />
            </div>
            <div class="card"><h2>Uptime</h2><p class="big">{formatUptime(n.uptime_s)}</p><p class="muted">since host boot</p></div>
            <div class="card"><h2>Hypervisor</h2>
              <p class="big">{n.accel === "kvm" ? "KVM" : "TCG"}</p>
              <p class={n.accel === "kvm" ? "muted" : "warn-text"}>{n.accel === "kvm" ? "hardware virtualization" : "software emulation (slow)"}</p>
              {n.accel === "kvm" && <p class="small muted">{n.accel_reason}</p>}
            </div>
          </div>
        </>
      )}
      <div class="grid-2">
        <div class="panel">
          <div class="panel-head"><h2>Virtual machines</h2><a href="/vms">All VMs</a></div>
          <ErrorBox error={vms.error} />
          {vms.data && (
            vms.data.length === 0 ? <p class="muted">No VMs on this node yet. <a href="/vms/new">Create one</a>.</p> : (
              <ul class="state-counts" aria-label="VMs by state">
                <li><strong>{vms.data.length}</strong> total</li>
                {[...counts.entries()].map(([s, c]) => <li><VmStateBadge state={s} /> <strong>{c}</strong></li>)}
              </ul>
            )
          )}
        </div>
        <div class="panel">
          <div class="panel-head"><h2>Storage pools</h2><a href="/storage">Storage</a></div>
          <ErrorBox error={pools.error} />
          {pools.data && pools.data.length === 0 && <p class="muted">No storage pools. hostd creates <code>local</code> on start.</p>}
          {pools.data?.map((p) => (
            <div class="pool-row">
              <div class="pool-row-head"><strong>{p.name}</strong> <span class="muted">{p.kind}{p.active ? "" : " · inactive"}</span>
                <span class="spacer" /><span class="small">{formatBytes(p.allocation)} of {formatBytes(p.capacity)}</span></div>
              <UsageBar used={p.allocation} total={p.capacity} label={`Pool ${p.name} used`} />
            </div>
          ))}
        </div>
      </div>
      <h2>Performance</h2>
      <Metrics path="" what={`node ${n?.node ?? ""}`} />
    </section>
  );
}
