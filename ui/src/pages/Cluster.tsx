import { useState } from "preact/hooks";
import { ApiError, get, post, runTask } from "../api";
import { Badge, Empty, ErrorBox, Loading, Modal } from "../components";
import { usePoll } from "../hooks";
import {
  daemonBadge, deviceParams, expiryText, failedActionText, fenceTestView, isStandalone, joinAddressFor, joinCommand,
  lastExitText, linkSummary, memberBadge, quorumView, storeView,
} from "../cluster";
import { formatTime } from "../logic";
import { VerifyPanel } from "./ClusterVerify";
import { FenceDeviceDialog } from "./FenceDeviceDialog";
import type {
  ClusterNode, ClusterStatus, DaemonStatus, FenceDeviceInfo, FenceTestResult, JoinToken, MemberStatus, VipStatus,
} from "../types";

/** Refresh period of the cluster page (paused while the tab is hidden). */
export const CLUSTER_POLL_MS = 3000;

function FenceTest({ t, generation }: { t: FenceTestResult | null; generation?: string | null }) {
  const v = fenceTestView(t, undefined, generation);
  return (
    <span class="fence-test">
      <Badge tone={v.tone}>{v.label}</Badge>
      {t && <span class="small muted" title={v.detail}> {formatTime(t.at)}</span>}
      {t && !t.ok && <div class="small warn-text">{v.detail}</div>}
    </span>
  );
}

/** `POST /cluster/fencing/{node}/test`: really fences the node (a task), after typing its name. */
function FenceTestDialog({ node, watchdog, onClose }: { node: string; watchdog: boolean; onClose: () => void }) {
  const [typed, setTyped] = useState("");
  const [action, setAction] = useState<"reboot" | "off">("reboot");
  const [busy, setBusy] = useState(false);
  const [progress, setProgress] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true); setError(null);
    try {
      await runTask("POST", `/cluster/fencing/${encodeURIComponent(node)}/test?action=${action}`, undefined,
        (_t, lines) => { if (lines.length) setProgress(lines[lines.length - 1].line); });
      onClose();
    } catch (err) {
      setError((err as Error).message);
      setBusy(false);
    }
  };
  return (
    <Modal title={`Test fencing of ${node}`} onClose={() => { if (!busy) onClose(); }}>
      <form onSubmit={submit}>
        <div class="alert alert-warn">This really fences <strong>{node}</strong> through its fence device
          ({action === "reboot" ? "power cycle" : "power off"}): everything running on it stops at once. Pacemaker
          recovers its resources elsewhere.</div>
        <div class="field-inline">
          <label class="check"><input type="radio" name="fence-action" checked={action === "reboot"} onChange={() => setAction("reboot")} /> Reboot</label>
          <label class="check" title={watchdog ? "A node fenced by its own watchdog (diskless SBD) can only be reset" : undefined}>
            <input type="radio" name="fence-action" checked={action === "off"} disabled={watchdog} onChange={() => setAction("off")} /> Power off</label>
        </div>
        {watchdog && <p class="small muted">{node} is fenced by its own watchdog (diskless SBD): the test asks its sbd to reset it
          and passes after Pacemaker's stonith-watchdog-timeout.</p>}
        <div class="field">
          <label for="fence-confirm">Type the node name <strong class="mono">{node}</strong> to confirm</label>
          <input id="fence-confirm" value={typed} autoComplete="off" onInput={(e) => setTyped(e.currentTarget.value)} />
        </div>
        {busy && <p class="small muted" role="status">Fencing… {progress ?? ""}</p>}
        {error && <div class="alert alert-error" role="alert">{error}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose} disabled={busy}>Cancel</button>
          <button type="submit" class="btn btn-danger" disabled={typed !== node || busy}>{busy ? "Fencing…" : "Fence node"}</button>
        </div>
      </form>
    </Modal>
  );
}

function Members({ s, devices, onChanged }: { s: ClusterStatus; devices: FenceDeviceInfo[] | undefined; onChanged: () => void }) {
  const [testing, setTesting] = useState<string | null>(null);
  const watchdog = s.members.find((m) => m.name === testing)?.fence_device === "watchdog";
  return (
    <>
    {testing && <FenceTestDialog node={testing} watchdog={watchdog} onClose={() => { setTesting(null); onChanged(); }} />}
    <table class="table" aria-label="Cluster members">
      <thead><tr>
        <th>Node</th><th class="num">ID</th><th>State</th><th class="num">Votes</th><th>Links</th><th>Fence device</th><th>Last fence test</th><th><span class="sr-only">Actions</span></th>
      </tr></thead>
      <tbody>{s.members.map((m: MemberStatus) => {
        const b = memberBadge(m);
        const local = m.name === s.local_node;
        const ls = linkSummary(m.links, local);
        return (
          <tr data-node={m.name} data-state={b.label.toLowerCase()}>
            <td><strong>{m.name}</strong>
              {local && <span class="tag">this node</span>}
              {m.is_dc && <span class="tag" title="Pacemaker's designated controller">DC</span>}</td>
            <td class="num">{m.nodeid}</td>
            <td><Badge tone={b.tone}><span class="dot" aria-hidden="true" />{b.label}</Badge></td>
            <td class="num">{m.votes}</td>
            <td>
              <Badge tone={ls.tone}>{ls.label}</Badge>
              {!local && m.links.length > 0 && (
                <ul class="links small">{m.links.map((l) => (
                  <li><span class={l.connected ? "ok-text" : "bad-text"}>{l.connected ? "●" : "○"}</span>{" "}
                    link{l.link} <span class="mono">{l.address}</span> {l.connected ? "connected" : "down"}</li>
                ))}</ul>
              )}
            </td>
            <td>{m.fence_device ? <span class="mono small nowrap">{m.fence_device}</span> : <Badge tone="warn">none</Badge>}</td>
            <td><FenceTest t={m.last_fence_test} generation={devices?.find((d) => d.node === m.name)?.generation} /></td>
            <td class="actions">{m.fence_device && (local
              ? <span class="small muted" title="A node cannot test its own fencing: open this page on another member">from another node</span>
              : <button type="button" class="btn btn-sm btn-danger-outline" aria-label={`Test fencing of ${m.name}`}
                  onClick={() => setTesting(m.name)}>Test…</button>)}</td>
          </tr>
        );
      })}</tbody>
    </table>
    </>
  );
}

function FenceDevices({ devices, error, nodes, onChanged }: {
  devices: FenceDeviceInfo[] | undefined; error: ApiError | null; nodes: string[]; onChanged: () => void;
}) {
  // the dialog: a new device (null node: the first without one) or a node's device replaced
  const [editing, setEditing] = useState<{ node: string; fromRow: boolean } | null>(null);
  const firstWithout = nodes.find((n) => !devices?.some((d) => d.node === n)) ?? nodes[0];
  return (
    <>
      {editing && <FenceDeviceDialog nodes={nodes} node={editing.node} devices={devices ?? []} fromRow={editing.fromRow}
        onClose={() => { setEditing(null); onChanged(); }} />}
      <div class="panel-head section-gap"><h2>Fence devices</h2><span class="spacer" />
        <button type="button" class="btn btn-sm" disabled={!devices} onClick={() => setEditing({ node: firstWithout, fromRow: false })}>Add fence device…</button></div>
      <ErrorBox error={error} title="Cannot list fence devices" />
      {!devices && !error && <Loading what="fence devices" />}
      {devices && devices.length === 0 && (
        <Empty title="No fence devices">
          Every node needs one (<code>keel fence add</code>), and Keel refuses HA and cluster storage until every node
          has passed <code>keel fence test NODE</code>.
        </Empty>
      )}
      {devices && devices.length > 0 && (
        <table class="table" aria-label="Fence devices">
          <thead><tr><th>Device</th><th>Fences node</th><th>Agent</th><th>Parameters</th><th>Last test</th><th><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>{devices.map((d) => (
            <tr data-device={d.id}>
              <td class="mono">{d.id}</td>
              <td>{d.node}</td>
              <td class="mono">{d.agent}</td>
              <td>{deviceParams(d).length === 0 ? <span class="muted">—</span> : <dl class="params small">{deviceParams(d).map((p) => (
                <><dt class="mono">{p.name}</dt><dd class={p.secret ? "secret" : "mono"}>{p.secret ? <em>set</em> : p.value}</dd></>
              ))}</dl>}</td>
              <td><FenceTest t={d.last_test} generation={d.generation} /></td>
              <td class="actions"><button type="button" class="btn btn-sm" aria-label={`Change the fence device of ${d.node}`}
                onClick={() => setEditing({ node: d.node, fromRow: true })}>Change…</button></td>
            </tr>
          ))}</tbody>
        </table>
      )}
    </>
  );
}

function JoinTokenPanel({ address }: { address: string }) {
  const [token, setToken] = useState<JoinToken | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [copied, setCopied] = useState(false);
  const create = async () => {
    setBusy(true); setError(null); setCopied(false);
    try {
      setToken(await post<JoinToken>("/cluster/join-token", {}));
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(0, "client", String(e)));
    } finally { setBusy(false); }
  };
  const addr = token?.address ?? address;
  const cmd = token ? joinCommand(addr, token.fingerprint, token.token) : "";
  const copy = async () => {
    try { await navigator.clipboard.writeText(cmd); setCopied(true); } catch { /* no clipboard (plain http): select it by hand */ }
  };
  return (
    <section class="panel" aria-labelledby="jt-title">
      <div class="panel-head">
        <h2 id="jt-title">Add a node</h2>
        <button type="button" class="btn btn-primary" onClick={create} disabled={busy}>{busy ? "Creating…" : "Create join token"}</button>
      </div>
      <p class="small muted">A join token lets one new node join this cluster. It works once and expires; it is shown only here, now.</p>
      <ErrorBox error={error} title="Cannot create a join token" />
      {token && (
        <div class="join-token" role="region" aria-label="Join token">
          <dl class="kv small">
            <dt>Token</dt><dd class="mono wrap" data-testid="join-token">{token.token}</dd>
            <dt>Expires</dt><dd data-testid="join-expiry">{formatTime(token.expires_at)} ({expiryText(token.expires_at)})</dd>
          </dl>
          <p class="small">On the new node, as root, run (<span class="mono">{addr}</span> is this node's API address
            on the cluster network):</p>
          <pre class="code" aria-label="Join command" data-testid="join-command">{cmd}</pre>
          <div class="toolbar">
            <button type="button" class="btn btn-sm" onClick={copy}>{copied ? "Copied" : "Copy command"}</button>
          </div>
          {!token.fingerprint && (
            <p class="small muted">Replace <code>&lt;FINGERPRINT&gt;</code> with this node's certificate fingerprint: keel-hostd
              prints it at start and keeps it in <code>/var/lib/keel/hostd.fingerprint</code>. Compare it out of band; never
              copy it from a page you reached without checking the certificate.</p>
          )}
        </div>
      )}
    </section>
  );
}

function Standalone({ s }: { s: ClusterStatus }) {
  return (
    <>
      <Empty title="This node is not in a cluster">
        <p>{s.local_node ? <><strong>{s.local_node}</strong> runs</> : "It runs"} standalone: its VMs, storage and tasks are
          managed here, without quorum or fencing.</p>
        <p>To start a cluster with this node as its first member, run as root on it:</p>
        <pre class="code cmd" data-testid="init-command">keel cluster init --name CLUSTER-NAME</pre>
        <p>To add it to an existing cluster instead, create a join token on a member's cluster page and run
          the <code>keel join …</code> command shown there on this node.</p>
      </Empty>
      {/* hostd's own notes, minus the one the heading already says */}
      {s.notes.filter((n) => !/not in a cluster/i.test(n)).length > 0 &&
        <Notes notes={s.notes.filter((n) => !/not in a cluster/i.test(n))} />}
    </>
  );
}

/** corosync, Pacemaker and keel-clusterd on the node that answered. */
function Daemons({ daemons, node }: { daemons: DaemonStatus[]; node: string }) {
  if (daemons.length === 0) return null;
  return (
    <>
      <div class="panel-head section-gap"><h2>Daemons on {node}</h2></div>
      <table class="table" aria-label="Cluster daemons">
        <thead><tr><th>Daemon</th><th>State</th><th>PID</th><th>Since</th><th>Restarts</th><th>Last exit</th><th /></tr></thead>
        <tbody>{daemons.map((d) => {
          const b = daemonBadge(d);
          return (
            <tr data-testid={`daemon-${d.name}`}>
              <td class="mono">{d.name}</td>
              <td><Badge tone={b.tone}>{b.label}</Badge></td>
              <td class="mono">{d.pid ?? "—"}</td>
              <td class="small">{d.since ? formatTime(d.since) : "—"}</td>
              <td>{d.restarts}</td>
              <td class="small">{lastExitText(d)}</td>
              <td class="small muted">{d.message ?? ""}{d.next_attempt ? ` (next attempt ${formatTime(d.next_attempt)})` : ""}</td>
            </tr>
          );
        })}</tbody>
      </table>
    </>
  );
}

function Notes({ notes }: { notes: string[] }) {
  return (
    <section class="panel" aria-labelledby="notes-title">
      <h2 id="notes-title">Notes</h2>
      <ul class="notes">{notes.map((n) => <li>{n}</li>)}</ul>
    </section>
  );
}

export function Cluster() {
  const status = usePoll(() => get<ClusterStatus>("/cluster/status"), CLUSTER_POLL_MS);
  const s = status.data;
  const clustered = !!s && !isStandalone(s);
  const fencing = usePoll(
    () => clustered ? get<FenceDeviceInfo[]>("/cluster/fencing") : Promise.resolve(undefined),
    clustered ? CLUSTER_POLL_MS : 0, [clustered]);
  // Members' API addresses (for the join command), once per page visit.
  const members = usePoll(
    () => clustered ? get<ClusterNode[]>("/cluster/nodes") : Promise.resolve(undefined), 0, [clustered]);
  const vip = usePoll(
    () => clustered ? get<VipStatus>("/cluster/vip") : Promise.resolve(undefined),
    clustered ? CLUSTER_POLL_MS : 0, [clustered]);
  const q = clustered && s ? quorumView(s) : null;
  const store = s ? storeView(s.store) : null;
  const online = s ? s.members.filter((m) => m.online && !m.unclean).length : 0;
  return (
    <section aria-labelledby="cl-title">
      <div class="page-head">
        <h1 id="cl-title">{clustered && s ? `Cluster ${s.name}` : "Cluster"}</h1>
        {q && <Badge tone={q.badge.tone}>{q.badge.label}</Badge>}
        <span class="spacer" />
        {status.loadedAt && <span class="small muted" role="status" aria-label="Last refresh">
          updated {new Date(status.loadedAt).toLocaleTimeString()} · every {CLUSTER_POLL_MS / 1000} s</span>}
      </div>
      <ErrorBox error={status.error} title={s ? "Cannot refresh the cluster status (showing the last one)" : "Cannot load the cluster status"} />
      {!s && !status.error && <Loading what="cluster status" />}
      {s && !clustered && <Standalone s={s} />}
      {s && clustered && q && (
        <>
          <div class="cards">
            <div class="card" aria-label="Quorum"><h2>Quorum</h2>
              <p class="big" data-testid="quorum">{q.badge.label}</p>
              <p data-testid="votes">{q.text}</p>
              <p class="small muted">{q.detail}</p></div>
            <div class="card"><h2>Members</h2>
              <p class="big">{online} <span class="muted small">of {s.members.length} online</span></p>
              <p class="small">{s.two_node ? <Badge tone="info">two_node</Badge> : <span class="muted">majority quorum</span>}</p></div>
            <div class="card"><h2>Designated controller</h2>
              <p class="big">{s.dc ?? "—"}</p>
              <p class="small muted">answered by {s.local_node}</p></div>
            <div class="card"><h2>Fencing</h2>
              <p class="big">{s.stonith_enabled ? "Enabled" : <span class="bad-text">Disabled</span>}</p>
              <p class="small">{s.members.filter((m) => m.fence_device).length} of {s.members.length} nodes have a device,{" "}
                {s.members.filter((m) => m.last_fence_test?.ok).length} passed a test</p></div>
            <div class="card" aria-label="Floating address"><h2>Floating address</h2>
              {vip.data?.address ? (
                <>
                  <p class="big mono" data-testid="vip">{vip.data.address}</p>
                  <p class="small">{vip.data.running_on
                    ? <>on <strong data-testid="vip-node">{vip.data.running_on}</strong>{vip.data.url && <> · <a href={vip.data.url}>{vip.data.url}</a></>}</>
                    : <span class="bad-text">not running{vip.data.failed ? " (failed: see failed actions)" : ""}</span>}</p>
                </>
              ) : (
                <p class="small muted">None. One address for the UI and API of the whole cluster:{" "}
                  <code>keel cluster vip set ADDRESS/PREFIX</code></p>
              )}
            </div>
            <div class="card" aria-label="QDevice"><h2>QDevice</h2>
              {s.qdevice?.configured ? (
                <>
                  <p class="big mono" data-testid="qdevice-host">{s.qdevice.host}</p>
                  <p class="small" data-testid="qdevice-vote">{s.qdevice.votes
                    ? <>vote {s.qdevice.votes} · {s.qdevice.algorithm}</>
                    : <span class="bad-text">no vote ({s.qdevice.daemon_running
                      ? "corosync-qnetd unreachable?" : "corosync-qdevice not running here"})</span>}</p>
                </>
              ) : (
                <p class="small muted">None.{s.members.length === 2 && <> A third vote so either node stays quorate alone:{" "}
                  <code>keel cluster qdevice add HOST</code></>}</p>
              )}
            </div>
            {store && <div class="card" aria-label="Config store"><h2>Config store</h2>
              <p class="big" data-testid="store"><Badge tone={store.badge.tone}>{store.badge.label}</Badge></p>
              <p class="small muted">{store.detail}</p></div>}
          </div>
          {!s.stonith_enabled && <div class="alert alert-error" role="alert"><strong>Fencing is off.</strong> A node that
            stops responding cannot be fenced, so its resources cannot be recovered safely.</div>}
          <Members s={s} devices={fencing.data} onChanged={status.refresh} />
          <Daemons daemons={s.daemons ?? []} node={s.local_node} />
          <FenceDevices devices={fencing.data} error={fencing.error} nodes={s.members.map((m) => m.name)}
            onChanged={() => { fencing.refresh(); status.refresh(); }} />
          <div class="panel-head section-gap"><h2>Failed actions</h2></div>
          {s.failed_actions.length === 0
            ? <p class="muted small">None.</p>
            : <table class="table" aria-label="Failed actions">
                <thead><tr><th>Resource</th><th>Operation</th><th>Node</th><th>Status</th></tr></thead>
                <tbody>{s.failed_actions.map((a) => (
                  <tr title={failedActionText(a)}><td class="mono">{a.resource}</td><td>{a.operation}</td><td>{a.node}</td>
                    <td class="bad-text">{a.status}</td></tr>
                ))}</tbody>
              </table>}
          {s.notes.length > 0 && <Notes notes={s.notes} />}
          <VerifyPanel />
          <JoinTokenPanel address={joinAddressFor(members.data, s.local_node, location.host)} />
        </>
      )}
    </section>
  );
}
