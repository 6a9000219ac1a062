// The Storage page's "Cluster pools" section: every cluster pool (drbd-gfs2, iscsi-gfs2,
// iscsi-lvm) with its health on each node (DRBD connection, roles, disk states and resync
// progress, or the iSCSI session; the GFS2 mount, free space; for iscsi-lvm the VG's lockspace,
// size and free space), a Create dialog and Delete, for a drbd-gfs2 pool in split brain a
// dialog to resolve it by choosing whose changes to discard, and for an iscsi-gfs2 or iscsi-lvm
// pool that does not reach every cluster member a dialog to extend it to those that joined after
// it was made (docs/storage.md). On a node outside a cluster it says so.
import { useRef, useState } from "preact/hooks";
import { ApiError, del, followTask, notifyTask, post, get } from "../api";
import { Empty, ErrorBox, Loading, Modal } from "../components";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import { formatBytes } from "../logic";
import type { ClusterPoolNode, ClusterPoolStatus, TaskRef } from "../types";

export type Health = { tone: "ok" | "warn" | "bad" | "off"; text: string };
type PoolType = ClusterPoolStatus["type"];

/** The pool lives on an iSCSI LUN (iscsi-gfs2, iscsi-lvm). */
export const isIscsi = (type: PoolType) => type === "iscsi-gfs2" || type === "iscsi-lvm";

/** One node's health in a pool, worst first: unreachable, split brain (DRBD's handler ran),
 *  StandAlone / disconnected (iscsi-gfs2, iscsi-lvm: no iSCSI session), not mounted (not for
 *  iscsi-lvm, which has no file system), resyncing, degraded disks; else healthy. An iscsi-lvm
 *  node that has not joined the VG's lockspace yet is healthy: it joins when it first starts a
 *  VM or changes a disk there. Without a type, a node reporting `lockspace` is taken for an
 *  iscsi-lvm one, one reporting `logged_in` for an iscsi-gfs2 one. */
export function nodeHealth(n: ClusterPoolNode, type?: PoolType): Health {
  if (n.error) return { tone: "bad", text: `not answering: ${n.error}` };
  if (n.split_brain)
    return { tone: "bad", text: "split brain: both nodes changed the pool while apart; resolve it by choosing whose changes to discard" };
  const kind = type ?? (n.lockspace != null ? "iscsi-lvm" : n.logged_in != null ? "iscsi-gfs2" : undefined);
  if (kind === "iscsi-gfs2" || kind === "iscsi-lvm") {
    if (n.logged_in === false)
      return { tone: "bad", text: "no iSCSI session: the node is not logged in to the LUN (check the storage network; keel storage status)" };
    if (kind === "iscsi-gfs2" && !n.mounted) return { tone: "warn", text: "GFS2 not mounted" };
    return { tone: "ok", text: "healthy" };
  }
  if (!n.connection) return { tone: "bad", text: "DRBD resource down" };
  if (n.connection === "StandAlone")
    return { tone: "bad", text: "StandAlone: not replicating (split brain, or disconnected by hand); see keel cluster verify" };
  if (n.sync_percent != null || /^Sync|^PausedSync/.test(n.connection))
    return { tone: "warn", text: `resyncing${n.sync_percent != null ? ` ${n.sync_percent.toFixed(1)}%` : ""}` };
  if (n.connection !== "Connected") return { tone: "bad", text: `${n.connection}: the peer is not connected` };
  if (n.disk !== "UpToDate" || n.peer_disk !== "UpToDate")
    return { tone: "warn", text: `disks ${n.disk ?? "?"}/${n.peer_disk ?? "?"}` };
  if (!n.mounted) return { tone: "warn", text: "GFS2 not mounted" };
  return { tone: "ok", text: "healthy" };
}

/** The pool's health: its state while creating or failed, else its worst node. */
export function poolHealth(p: ClusterPoolStatus): Health {
  if (p.state === "creating") return { tone: "warn", text: "creating" };
  if (p.state !== "ready") return { tone: "bad", text: p.state };
  if (p.nodes.length === 0) return { tone: "off", text: "no node answered" };
  const order = { bad: 0, warn: 1, off: 2, ok: 3 };
  return p.nodes.map((n) => nodeHealth(n, p.type)).sort((a, b) => order[a.tone] - order[b.tone])[0];
}

/** A drbd-gfs2 pool that may need its split brain resolved: a node saw it, or is StandAlone. */
export const splitBrainSuspected = (p: ClusterPoolStatus) =>
  p.type === "drbd-gfs2" && p.nodes.some((n) => n.split_brain === true || n.connection === "StandAlone");

/** The cluster members the pool does not reach yet (none from a server without `not_on`). */
export const missingNodes = (p: ClusterPoolStatus): string[] => p.not_on ?? [];

/** A ready iscsi-gfs2 or iscsi-lvm pool that some cluster members do not reach yet: it can be
 *  extended to them. A drbd-gfs2 pool never extends (its DRBD resource has two nodes). */
export const canExtend = (p: ClusterPoolStatus) => isIscsi(p.type) && p.state === "ready" && missingNodes(p).length > 0;

/** The extend button's text: "Extend to node3…", "Extend to node3, node4…". */
export const extendLabel = (p: ClusterPoolStatus) => `Extend to ${missingNodes(p).join(", ")}…`;

const badge = (h: Health) => <span class={`badge badge-${h.tone}`}>{h.text}</span>;

/** An iscsi-lvm node's lockspace column: joined, or not yet (a node joins lazily: not a fault). */
export function lockspaceText(n: ClusterPoolNode): string {
  if (n.error) return "—";
  return n.lockspace ? "joined" : "not yet (joins when a VM starts)";
}

const session = (n: ClusterPoolNode) => <td>{n.logged_in == null ? "—" : n.logged_in ? "logged in" : "none"}</td>;
const bytes = (b: number | null | undefined) => <td class="num">{b != null ? formatBytes(b) : "—"}</td>;

const free = (n: ClusterPoolNode) => (
  <td class="num">{n.free_bytes != null ? formatBytes(n.free_bytes) : "—"}{n.size_bytes != null ? <span class="muted small"> of {formatBytes(n.size_bytes)}</span> : null}</td>
);

function PoolNodes({ p }: { p: ClusterPoolStatus }) {
  // no file system: the VG's lockspace and its size and free space instead of a mount
  if (p.type === "iscsi-lvm")
    return (
      <table class="table compact" aria-label={`Nodes of ${p.name}`}>
        <thead><tr><th>Node</th><th>Device</th><th>iSCSI session</th><th>Lockspace</th><th class="num">Size</th><th class="num">Free</th><th>Health</th></tr></thead>
        <tbody>{p.nodes.map((n) => (
          <tr><td>{n.node}</td><td class="mono small">{n.device}</td>{session(n)}
            <td>{lockspaceText(n)}</td>{bytes(n.size_bytes)}{bytes(n.free_bytes)}<td>{badge(nodeHealth(n, p.type))}</td></tr>
        ))}</tbody>
      </table>
    );
  if (p.type === "iscsi-gfs2")
    return (
      <table class="table compact" aria-label={`Nodes of ${p.name}`}>
        <thead><tr><th>Node</th><th>Device</th><th>iSCSI session</th><th>Mounted</th><th class="num">Free</th><th>Health</th></tr></thead>
        <tbody>{p.nodes.map((n) => (
          <tr><td>{n.node}</td><td class="mono small">{n.device}</td>{session(n)}
            <td>{n.mounted ? "yes" : "no"}</td>{free(n)}<td>{badge(nodeHealth(n, p.type))}</td></tr>
        ))}</tbody>
      </table>
    );
  return (
    <table class="table compact" aria-label={`Nodes of ${p.name}`}>
      <thead><tr><th>Node</th><th>Device</th><th>Connection</th><th>Role / peer</th><th>Disk / peer</th><th>Mounted</th><th class="num">Free</th><th>Health</th></tr></thead>
      <tbody>{p.nodes.map((n) => (
        <tr><td>{n.node}</td><td class="mono small">{n.device}</td><td>{n.connection ?? "—"}</td>
          <td>{n.role ?? "—"} / {n.peer_role ?? "—"}</td><td>{n.disk ?? "—"} / {n.peer_disk ?? "—"}</td>
          <td>{n.mounted ? "yes" : "no"}</td>{free(n)}<td>{badge(nodeHealth(n, p.type))}</td></tr>
      ))}</tbody>
    </table>
  );
}

export function ClusterPools() {
  const pools = usePoll(() => get<ClusterPoolStatus[]>("/cluster/storage-pools"), 10000);
  const perms = usePermissions();
  const noModify = whyNot(perms, "Cluster.Modify", "/cluster");
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<string | null>(null);
  const [resolving, setResolving] = useState<ClusterPoolStatus | null>(null);
  const [extending, setExtending] = useState<ClusterPoolStatus | null>(null);
  const [msg, setMsg] = useState<{ tone: "info" | "error"; text: string } | null>(null);
  const standalone = pools.error?.status === 409;
  const remove = async ({ name, type }: ClusterPoolStatus) => {
    const what = type === "iscsi-lvm"
      ? "It is removed from every node; its volume group stays on the LUN; every node leaves its lockspace and logs out."
      : type === "iscsi-gfs2"
      ? "It is removed from every node; its GFS2 file system and volume group stay on the LUN; every node logs out."
      : "Its GFS2 file system, volume group and DRBD resource are removed on both nodes.";
    if (!window.confirm(`Delete cluster pool ${name}? ${what}`)) return;
    setDeleting(name);
    setMsg({ tone: "info", text: `Deleting ${name}…` });
    try {
      const r = await del<TaskRef>(`/cluster/storage-pools/${encodeURIComponent(name)}`);
      notifyTask(r.upid);
      const t = await followTask(r.upid);
      setMsg(t.state === "ok" ? { tone: "info", text: `Deleted ${name}.` } : { tone: "error", text: `Delete of ${name} failed: ${t.message}` });
    } catch (e) {
      setMsg({ tone: "error", text: `Delete of ${name} refused: ${(e as ApiError).message}` });
    }
    setDeleting(null);
    pools.refresh();
  };
  return (
    <div class="section-gap" aria-label="Cluster pools" role="region">
      <div class="panel-head"><h2>Cluster pools</h2>
        <button type="button" class="btn" disabled={!!noModify} title={noModify ?? "Build a pool shared by the cluster's nodes (one task)"}
          onClick={() => { setMsg(null); setCreating(true); }}>Create cluster pool…</button>
      </div>
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"}>{msg.text}</div>}
      {standalone && <p class="muted" data-testid="cluster-pools-standalone">This node is not in a cluster: cluster pools are built across cluster nodes (<code>keel cluster init</code>, then <code>keel join</code> on the second node).</p>}
      {!standalone && <ErrorBox error={pools.error} title="Cannot list cluster pools" />}
      {!pools.data && !pools.error && <Loading what="cluster pools" />}
      {pools.data && pools.data.length === 0 && <Empty title="No cluster pools">Create a drbd-gfs2 pool from one spare disk on each of two nodes, or, from one iSCSI LUN every node logs in to, an iscsi-gfs2 pool (a shared GFS2 file system) or an iscsi-lvm pool (one raw LV per VM disk).</Empty>}
      {pools.data && pools.data.map((p) => (
        <div class="panel">
          <div class="panel-head">
            <h3><span class="mono">{p.name}</span> <span class="muted small">{p.type} at <span class="mono">{p.path}</span></span> {badge(poolHealth(p))}</h3>
            {splitBrainSuspected(p) && <button type="button" class="btn btn-sm btn-danger-outline" disabled={!!noModify}
              title={noModify ?? "Choose the node whose changes since the split are discarded; the other node's data is copied over (one task)"}
              aria-label={`Resolve split brain of ${p.name}`} onClick={() => { setMsg(null); setResolving(p); }}>Resolve split brain…</button>}
            {canExtend(p) && <button type="button" class="btn btn-sm" disabled={!!noModify}
              title={noModify ?? "Log the new members in to the pool's LUN and make them use it too (one task)"}
              aria-label={`Extend cluster pool ${p.name}`} onClick={() => { setMsg(null); setExtending(p); }}>{extendLabel(p)}</button>}
            <button type="button" class="btn btn-sm btn-danger-outline" disabled={!!noModify || deleting !== null} title={noModify ?? "Delete (refused while VM disks live on it)"}
              aria-label={`Delete cluster pool ${p.name}`} onClick={() => remove(p)}>{deleting === p.name ? "Deleting…" : "Delete"}</button>
          </div>
          {isIscsi(p.type) && p.iscsi && <p class="muted small">LUN {p.iscsi.lun} of <span class="mono">{p.iscsi.target}</span> at <span class="mono">{p.iscsi.portal}</span>, CHAP user <span class="mono">{p.iscsi.chap_user}</span></p>}
          {(p.notes ?? []).map((n) => <p class="small alert alert-info" role="note">{n}</p>)}
          <PoolNodes p={p} />
        </div>
      ))}
      {creating && <CreateDialog onClose={() => { setCreating(false); pools.refresh(); }} />}
      {resolving && <ResolveDialog pool={resolving} onClose={() => { setResolving(null); pools.refresh(); }}
        onDone={(m) => { setResolving(null); setMsg(m); pools.refresh(); }} />}
      {extending && <ExtendDialog pool={extending} onClose={() => { setExtending(null); pools.refresh(); }}
        onDone={(m) => { setExtending(null); setMsg(m); pools.refresh(); }} />}
    </div>
  );
}

function CreateDialog({ onClose }: { onClose: () => void }) {
  const [name, setName] = useState("");
  const [type, setType] = useState<PoolType>("drbd-gfs2");
  const [device, setDevice] = useState("");
  const [portal, setPortal] = useState("");
  const [target, setTarget] = useState("");
  const [lun, setLun] = useState("0");
  const [chapUser, setChapUser] = useState("");
  const [secret, setSecret] = useState("");
  const [wipe, setWipe] = useState(false);
  const [busy, setBusy] = useState(false);
  const [line, setLine] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const iscsi = isIscsi(type);
  const badName = name && !/^[a-z][a-z0-9-]{0,29}$/.test(name) ? "1-30 of a-z, 0-9 and '-', starting with a letter." : null;
  const lunNum = lun.trim() === "" ? 0 : Number(lun);
  const badLun = !Number.isInteger(lunNum) || lunNum < 0 || lunNum > 16383 ? "A LUN number, 0 to 16383." : null;
  const badSecret = secret && (secret.length < 12 || secret.length > 255) ? "12 to 255 characters" : null;
  const ready = !!name && !badName && (iscsi
    ? !!portal.trim() && !!target.trim() && !badLun && !!chapUser.trim() && !!secret && !badSecret
    : !!device.trim());
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!ready) return;
    setBusy(true); setErr(null); setLine(iscsi ? "logging every node in to the LUN…" : "starting…");
    const body = iscsi
      ? { name, type, wipe, iscsi: { portal: portal.trim(), target: target.trim(), lun: lunNum, chap_user: chapUser.trim(), chap_secret: secret } }
      : { name, type, device: device.trim(), wipe };
    try {
      const r = await post<TaskRef>("/cluster/storage-pools", body);
      notifyTask(r.upid);
      const t = await followTask(r.upid, (_t, lines) => { if (lines.length) setLine(lines[lines.length - 1].line); });
      if (t.state === "ok") { onClose(); return; }
      setErr(`Failed: ${t.message}`);
    } catch (e) {
      setErr((e as ApiError).message);
    }
    setBusy(false);
  };
  return (
    <Modal title="Create cluster pool" onClose={onClose}>
      <form onSubmit={submit}>
        <div class={`field${badName ? " has-error" : ""}`}>
          <label for="cp-name">Name</label>
          <input id="cp-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
          {badName && <div class="field-error" role="alert">{badName}</div>}
        </div>
        <div class="field"><label for="cp-type">Type</label>
          <select id="cp-type" value={type} disabled={busy} onChange={(e) => setType(e.currentTarget.value as PoolType)}>
            <option value="drbd-gfs2">drbd-gfs2 (two nodes: DRBD, DLM, lvmlockd, GFS2)</option>
            <option value="iscsi-gfs2">iscsi-gfs2 (two nodes or more: an iSCSI LUN, DLM, lvmlockd, GFS2)</option>
            <option value="iscsi-lvm">iscsi-lvm (two nodes or more: an iSCSI LUN, DLM, lvmlockd; one raw LV per VM disk, active on one node at a time)</option>
          </select>
          {type === "iscsi-lvm" && <div class="hint">No file system: VM disks on it are raw, and ISOs and images cannot be uploaded to it (keep them on a dir pool). A VM with a disk on it migrates offline only (shut it down first) and cannot be made HA yet.</div>}</div>
        {!iscsi && <div class="field"><label for="cp-device">Device (the same on both nodes)</label>
          <input id="cp-device" class="mono" placeholder="/dev/disk/by-id/…" value={device} onInput={(e) => setDevice(e.currentTarget.value)} />
          <div class="hint">A spare disk on each node. One holding a partition table, a file system or LVM is refused unless you wipe it.</div></div>}
        {iscsi && <>
          <div class="field"><label for="cp-portal">Portal</label>
            <input id="cp-portal" class="mono" placeholder="192.0.2.10:3260" value={portal} onInput={(e) => setPortal(e.currentTarget.value)} />
            <div class="hint">The target's IPv4 address, with :PORT if not 3260.</div></div>
          <div class="field"><label for="cp-target">Target IQN</label>
            <input id="cp-target" class="mono" placeholder="iqn.2024-01.com.example:storage" value={target} onInput={(e) => setTarget(e.currentTarget.value)} /></div>
          <div class={`field${badLun ? " has-error" : ""}`}><label for="cp-lun">LUN</label>
            <input id="cp-lun" type="number" min={0} max={16383} step={1} value={lun} onInput={(e) => setLun(e.currentTarget.value)} />
            {badLun && <div class="field-error" role="alert">{badLun}</div>}
            <div class="hint">Every node logs in to it before the task starts. A LUN holding a partition table, a file system or LVM is refused unless you wipe it.</div></div>
          <div class="field"><label for="cp-chap-user">CHAP user</label>
            <input id="cp-chap-user" class="mono" autocomplete="off" value={chapUser} onInput={(e) => setChapUser(e.currentTarget.value)} /></div>
          <div class={`field${badSecret ? " has-error" : ""}`}><label for="cp-chap-secret">CHAP secret</label>
            <input id="cp-chap-secret" type="password" autocomplete="new-password" maxLength={255} value={secret} onInput={(e) => setSecret(e.currentTarget.value)} />
            {badSecret && <div class="field-error" role="alert">{badSecret}</div>}
            <div class="hint">12-255 characters; stored only in each node's open-iscsi record, never shown again.</div></div>
        </>}
        <div class="field"><label><input type="checkbox" checked={wipe} onChange={(e) => setWipe(e.currentTarget.checked)} /> {iscsi ? "Wipe the LUN's signatures first (its data is lost)" : "Wipe the devices' signatures first (their data is lost)"}</label></div>
        {busy && line && <div class="small muted" role="status" aria-label="Pool task">{line}</div>}
        {err && <div class="alert alert-error" role="alert">{err}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={!ready || busy}>{busy ? "Creating…" : "Create"}</button>
        </div>
      </form>
    </Modal>
  );
}

/** Resolve a drbd-gfs2 pool's split brain: the node chosen loses its changes since the split, the
 *  other's data is copied over it (POST …/resolve-split-brain, one task). Closed while the task
 *  runs, its outcome goes to the section's message. */
function ResolveDialog({ pool, onClose, onDone }: {
  pool: ClusterPoolStatus; onClose: () => void; onDone: (m: { tone: "info" | "error"; text: string }) => void;
}) {
  const { name } = pool;
  const [discard, setDiscard] = useState<string | null>(null);
  const [sure, setSure] = useState(false);
  const [busy, setBusy] = useState(false);
  const [line, setLine] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const closed = useRef(false);
  const close = () => { closed.current = true; onClose(); };
  const kept = pool.nodes.find((n) => n.node !== discard)?.node;
  const ready = !!discard && sure;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!ready || !discard) return;
    const node = discard;
    setBusy(true); setErr(null); setLine("starting…");
    let failure: string;
    try {
      const r = await post<TaskRef>(`/cluster/storage-pools/${encodeURIComponent(name)}/resolve-split-brain`, { discard: node });
      notifyTask(r.upid);
      const t = await followTask(r.upid, (_t, lines) => { if (lines.length) setLine(lines[lines.length - 1].line); });
      if (t.state === "ok") { onDone({ tone: "info", text: `Split brain of ${name} resolved: ${node}'s changes discarded.` }); return; }
      failure = `Failed: ${t.message}`;
    } catch (e) {
      failure = (e as ApiError).message;
    }
    if (closed.current) onDone({ tone: "error", text: `Resolving the split brain of ${name}: ${failure}` });
    else { setErr(failure); setBusy(false); }
  };
  return (
    <Modal title={`Resolve split brain of ${name}`} onClose={close}>
      <form onSubmit={submit}>
        <p>Both nodes changed <span class="mono">{name}</span> while they were apart, and DRBD will not choose
          between them. Choose the node whose changes since the split are <strong>discarded</strong>: the other
          node's data is copied over it. Pacemaker first demotes DRBD and stops the file system on that node,
          then promotes and mounts it again once the resync is done.</p>
        <div class="alert alert-warn">Stop or move the VMs that run on the discarded node from this pool first.</div>
        <fieldset disabled={busy}>
          <legend>Discard the changes made on</legend>
          {pool.nodes.map((n) => (
            <div style={{ marginBottom: "10px" }}>
              <label class="check" style={{ margin: 0 }}><input type="radio" name="sb-discard" value={n.node} checked={discard === n.node}
                aria-describedby={`sb-state-${n.node}`}
                onChange={() => { setDiscard(n.node); setSure(false); }} /> <span class="mono">{n.node}</span></label>
              <div id={`sb-state-${n.node}`} class="muted small" style={{ paddingLeft: "21px" }}>
                {n.error ? `not answering: ${n.error}` : `${n.connection ?? "DRBD down"}, ${n.role ?? "?"}, disk ${n.disk ?? "?"}`}
                {n.split_brain && <> <span class="badge badge-bad">split brain seen here</span></>}
              </div>
            </div>
          ))}
        </fieldset>
        {discard && kept && <p class="small">{kept}'s data is kept and copied to {discard}.</p>}
        <div class="field"><label class="check"><input type="checkbox" checked={sure} disabled={!discard || busy}
          onChange={(e) => setSure(e.currentTarget.checked)} /> I understand that the changes made on this node since the split are lost</label></div>
        {busy && line && <div class="small muted" role="status" aria-label="Split-brain task">{line}</div>}
        {err && <div class="alert alert-error" role="alert">{err}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={close}>Cancel</button>
          <button type="submit" class="btn btn-danger" disabled={!ready || busy}>{busy ? "Resolving…" : "Resolve"}</button>
        </div>
      </form>
    </Modal>
  );
}

/** Extend an iscsi-gfs2 or iscsi-lvm pool to cluster members that joined after it was made
 *  (POST …/extend with the nodes ticked, one task). Closed while the task runs, its outcome goes
 *  to the section's message. */
function ExtendDialog({ pool, onClose, onDone }: {
  pool: ClusterPoolStatus; onClose: () => void; onDone: (m: { tone: "info" | "error"; text: string }) => void;
}) {
  const { name, type } = pool;
  const missing = missingNodes(pool);
  const [chosen, setChosen] = useState<string[]>(missing);
  const [busy, setBusy] = useState(false);
  const [line, setLine] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const closed = useRef(false);
  const close = () => { closed.current = true; onClose(); };
  const toggle = (node: string, on: boolean) =>
    setChosen((c) => missing.filter((n) => n === node ? on : c.includes(n)));
  const ready = chosen.length > 0;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!ready) return;
    const nodes = chosen;
    const who = nodes.join(", ");
    setBusy(true); setErr(null); setLine("starting…");
    let failure: string;
    try {
      const r = await post<TaskRef>(`/cluster/storage-pools/${encodeURIComponent(name)}/extend`, { nodes });
      notifyTask(r.upid);
      const t = await followTask(r.upid, (_t, lines) => { if (lines.length) setLine(lines[lines.length - 1].line); });
      if (t.state === "ok") { onDone({ tone: "info", text: `Extended ${name} to ${who}.` }); return; }
      failure = `Failed: ${t.message}`;
    } catch (e) {
      failure = (e as ApiError).message;
    }
    if (closed.current) onDone({ tone: "error", text: `Extending ${name} to ${who}: ${failure}` });
    else { setErr(failure); setBusy(false); }
  };
  return (
    <Modal title={`Extend ${name}`} onClose={close}>
      <form onSubmit={submit}>
        <p>{missing.length === 1 ? "This member" : "These members"} joined the cluster after <span class="mono">{name}</span> was
          made, and the pool does not reach {missing.length === 1 ? "it" : "them"} yet. Each node ticked below logs in
          to the pool's LUN{pool.iscsi && <> (LUN {pool.iscsi.lun} of <span class="mono">{pool.iscsi.target}</span>)</>} with
          the CHAP secret the pool's nodes already hold, gets the pool's LVM filter and boot order, and joins
          its lock space.{type === "iscsi-gfs2" && <> A GFS2 journal is added when no spare one is left; Pacemaker
          then mounts the pool there too and the libvirt pool appears.</>}</p>
        <div class="alert alert-warn">Each node must have passed a fence test first (Cluster page; the task is refused
          otherwise), and the target's ACL must allow its initiator name.</div>
        <fieldset disabled={busy}>
          <legend>Extend the pool to</legend>
          {missing.map((n) => (
            <label class="check"><input type="checkbox" name="extend-node" value={n} checked={chosen.includes(n)}
              onChange={(e) => toggle(n, e.currentTarget.checked)} /> <span class="mono">{n}</span></label>
          ))}
        </fieldset>
        {busy && line && <div class="small muted" role="status" aria-label="Extend task">{line}</div>}
        {err && <div class="alert alert-error" role="alert">{err}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={close}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={!ready || busy}>{busy ? "Extending…" : "Extend"}</button>
        </div>
      </form>
    </Modal>
  );
}
