import { useState } from "preact/hooks";
import { ApiError, del, get, np, post, put } from "../api";
import { Empty, ErrorBox, Loading, Modal } from "../components";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import { runShown } from "./Snapshots";

import type { ClusterStatus, ClusterVm, HaRule, HaVmStatus, SharedPoolInfo, WhatIf } from "../types";

type Msg = { tone: "info" | "error"; text: string } | null;

/** Fail counts as "node:count" pairs, or "" when there are none. */
export function failCountText(h: Pick<HaVmStatus, "fail_counts">): string {
  return Object.entries(h.fail_counts ?? {}).filter(([, c]) => c > 0).map(([n, c]) => `${n}:${c >= 1000000 ? "INFINITY" : c}`).join(", ");
}

/** Client-side checks of the HA form (the server checks again). */
export function haFormError(priority: string, restarts: string): string | null {
  if (priority && !/^\d+$/.test(priority)) return "Priority is a whole number from 0 to 1000000.";
  if (priority && Number(priority) > 1000000) return "Priority is at most 1000000.";
  if (restarts && (!/^\d+$/.test(restarts) || Number(restarts) < 1 || Number(restarts) > 1000)) return "Restarts is a whole number from 1 to 1000.";
  return null;
}

/** The body of a new placement rule from the form's fields, or why not. */
export function ruleFromForm(id: string, kind: string, vms: string, nodes: string, hard: boolean): HaRule | string {
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(id)) return "The rule id holds 1-40 letters, digits, '-' and '_'.";
  const ids = vms.split(",").map((v) => v.trim()).filter(Boolean);
  if (ids.some((v) => !/^\d+$/.test(v))) return "VMs are VM ids separated by commas, e.g. 100,101.";
  const min = kind === "node-affinity" ? 1 : 2;
  if (ids.length < min) return `${kind === "apart" ? "An" : "A"} ${kind} rule needs at least ${min} VM${min > 1 ? "s" : ""}.`;
  const rule: HaRule = { id, kind: kind as HaRule["kind"], vms: ids.map(Number), hard };
  if (kind === "node-affinity") {
    const ns = nodes.split(",").map((n) => n.trim()).filter(Boolean);
    if (!ns.length) return "Name the nodes, e.g. node1:100,node2:50.";
    const parsed = ns.map((n) => { const [node, p] = n.split(":"); return { node, priority: p === undefined ? 100 : Number(p) }; });
    if (parsed.some((n) => !n.node || !Number.isInteger(n.priority) || n.priority < 0)) return "Nodes are NODE or NODE:PRIORITY, separated by commas.";
    rule.nodes = parsed;
  }
  return rule;
}

/** High availability: HA VMs with where Pacemaker runs them, turning HA on and off, the
 * what-if preview of a node failure, and the shared pools HA VMs' disks live on. */
export function Ha() {
  const ha = usePoll(() => get<HaVmStatus[]>("/cluster/ha"), 3000);
  const vms = usePoll(() => get<ClusterVm[]>("/cluster/resources"), 10000);
  const pools = usePoll(() => get<SharedPoolInfo[]>("/cluster/shared-pools"), 10000);
  const nodes = usePoll(() => get<{ name: string }[]>("/cluster/nodes"), 0);
  const perms = usePermissions();
  const noModify = whyNot(perms, "Cluster.Modify", "/cluster");
  const [msg, setMsg] = useState<Msg>(null);
  const [busy, setBusy] = useState(false);
  const [adding, setAdding] = useState(false);
  const [off, setOff] = useState<HaVmStatus | null>(null);
  const act = async (what: string, method: string, path: string, body?: unknown) => {
    setBusy(true);
    await runShown(what, method, path, body, setMsg);
    setBusy(false);
    ha.refresh();
    vms.refresh();
  };
  const cleanup = async (vmid: number) => {
    setBusy(true);
    try {
      const r = await post<{ message: string }>(`/cluster/ha/${vmid}/cleanup`);
      setMsg({ tone: "info", text: r.message });
    } catch (e) {
      setMsg({ tone: "error", text: `Clean-up of VM ${vmid} refused: ${(e as ApiError).message}` });
    }
    setBusy(false);
    ha.refresh();
  };
  const nodeOf = (vmid: number) => vms.data?.find((v) => v.vmid === vmid)?.node;
  const candidates = (vms.data ?? []).filter((v) => !(ha.data ?? []).some((h) => h.vmid === v.vmid));
  return (
    <section aria-labelledby="ha-title">
      <div class="page-head"><h1 id="ha-title">High availability</h1></div>
      <p class="muted">Pacemaker restarts an HA VM on a surviving node after its node is fenced. Its disks must be on a shared pool, and every node must have passed a fence test.</p>
      <div class="toolbar" role="toolbar" aria-label="HA actions">
        <button type="button" class="btn btn-primary" disabled={busy || !!noModify || candidates.length === 0}
          title={noModify ?? (candidates.length ? "Make a VM highly available" : "Every VM is HA already")}
          onClick={() => setAdding(true)}>Make a VM highly available…</button>
      </div>
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"} aria-label="HA task">{msg.text}</div>}
      <ErrorBox error={ha.error} title="Cannot list HA VMs" />
      {!ha.data && !ha.error && <Loading what="HA VMs" />}
      {ha.data && ha.data.length === 0 && <Empty title="No HA VMs">Make a VM whose disks are on a shared pool highly available.</Empty>}
      {ha.data && ha.data.length > 0 && (
        <table class="table" aria-label="HA VMs">
          <thead><tr><th>VM</th><th>Name</th><th>Target</th><th>Running on</th><th>Priority</th><th>Max restarts</th><th>Rules</th><th>Fail counts</th><th>Failures</th><th><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>{ha.data.map((h) => (
            <tr data-vmid={h.vmid}>
              <td class="mono">{h.vmid}</td>
              <td>{h.name}</td>
              <td>{h.target}</td>
              <td data-node={h.node ?? ""}>{h.node ?? <span class="muted">{h.target === "started" ? "recovering" : "—"}</span>}
                {h.failed && <span class="badge badge-err"> failed</span>}</td>
              <td>{h.priority}</td>
              <td>{h.max_restarts}</td>
              <td class="small">{h.rules?.length ? h.rules.join(", ") : <span class="muted">—</span>}</td>
              <td class="small" data-fail-counts={failCountText(h)}>{failCountText(h) || <span class="muted">—</span>}</td>
              <td class="small">{h.failures.length ? h.failures.join("; ") : <span class="muted">—</span>}</td>
              <td class="actions nowrap">
                {(h.failures.length > 0 || failCountText(h) !== "") && (
                  <button type="button" class="btn btn-sm" disabled={busy || !!noModify}
                    title={noModify ?? "Forget the failures and fail counts once their cause is fixed (crm_resource --cleanup)"}
                    onClick={() => cleanup(h.vmid)}>Clean up</button>)}{" "}
                <button type="button" class="btn btn-sm" disabled={busy || !!noModify} title={noModify ?? "Pacemaker lets go of the VM; it keeps running where it is"}
                  onClick={() => setOff(h)}>Turn HA off…</button>
              </td>
            </tr>
          ))}</tbody>
        </table>
      )}
      <WhatIfPanel nodes={(nodes.data ?? []).map((n) => n.name)} />
      <Maintenance noModify={noModify} say={setMsg} onChanged={() => { ha.refresh(); vms.refresh(); }} />
      <Rules noModify={noModify} say={setMsg} />
      <SharedPools pools={pools.data} error={pools.error} noModify={noModify} busy={busy}
        onChanged={() => pools.refresh()} say={setMsg} />
      {adding && <AddHa vms={candidates} onClose={() => setAdding(false)} onSubmit={(vmid, node, body) => {
        setAdding(false);
        act(`HA on for VM ${vmid}`, "PUT", np(`/vms/${vmid}/ha`, node), body);
      }} />}
      {off && (
        <Modal title={`Turn HA off for VM ${off.vmid}`} onClose={() => setOff(null)}>
          <p>Pacemaker stops managing <strong>{off.name}</strong>; it keeps running{off.node ? ` on ${off.node}` : ""} as an ordinary VM of that node, and is no longer restarted when its node fails.</p>
          <div class="modal-actions">
            <button type="button" class="btn" onClick={() => setOff(null)}>Cancel</button>
            <button type="button" class="btn btn-primary" onClick={() => {
              const h = off;
              setOff(null);
              const node = h.node ?? nodeOf(h.vmid);
              if (!node) { setMsg({ tone: "error", text: `VM ${h.vmid}: its node is not known` }); return; }
              act(`HA off for VM ${h.vmid}`, "PUT", np(`/vms/${h.vmid}/ha`, node), { enabled: false });
            }}>Turn HA off</button>
          </div>
        </Modal>
      )}
    </section>
  );
}

function AddHa({ vms, onClose, onSubmit }: {
  vms: ClusterVm[]; onClose: () => void;
  onSubmit: (vmid: number, node: string, body: { enabled: true; priority?: number; max_restarts?: number }) => void;
}) {
  const [vmid, setVmid] = useState(String(vms[0]?.vmid ?? ""));
  const [priority, setPriority] = useState("");
  const [restarts, setRestarts] = useState("");
  const err = haFormError(priority, restarts);
  const vm = vms.find((v) => String(v.vmid) === vmid);
  return (
    <Modal title="Make a VM highly available" onClose={onClose}>
      <form aria-label="Make a VM highly available" onSubmit={(e) => {
        e.preventDefault();
        if (err || !vm) return;
        onSubmit(vm.vmid, vm.node, {
          enabled: true,
          ...(priority ? { priority: Number(priority) } : {}),
          ...(restarts ? { max_restarts: Number(restarts) } : {}),
        });
      }}>
        <div class="field"><label for="ha-vm">VM</label>
          <select id="ha-vm" value={vmid} onChange={(e) => setVmid(e.currentTarget.value)}>
            {vms.map((v) => <option value={String(v.vmid)}>{v.vmid} {v.name} (on {v.node})</option>)}
          </select></div>
        <div class="field"><label for="ha-priority">Priority</label>
          <input id="ha-priority" inputMode="numeric" value={priority} placeholder="0" onInput={(e) => setPriority(e.currentTarget.value)} />
          <p class="muted small">When not every HA VM fits on the survivors, higher priorities run first.</p></div>
        <div class="field"><label for="ha-restarts">Max restarts on one node</label>
          <input id="ha-restarts" inputMode="numeric" value={restarts} placeholder="3" onInput={(e) => setRestarts(e.currentTarget.value)} /></div>
        {err && <div class="field-error" role="alert">{err}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={!vm || !!err}>Turn HA on</button>
        </div>
      </form>
    </Modal>
  );
}

function WhatIfPanel({ nodes }: { nodes: string[] }) {
  const [node, setNode] = useState("");
  const [res, setRes] = useState<WhatIf | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const pick = node || nodes[0] || "";
  const run = async () => {
    setBusy(true);
    setErr(null);
    try {
      setRes(await get<WhatIf>(`/cluster/what-if?node_fail=${encodeURIComponent(pick)}`));
    } catch (e) {
      setRes(null);
      setErr((e as ApiError).message);
    }
    setBusy(false);
  };
  return (
    <section class="card" aria-labelledby="whatif-title">
      <h2 id="whatif-title">What if a node fails?</h2>
      <p class="muted small">Pacemaker's own scheduler runs on the live configuration with the node marked failed. Nothing changes.</p>
      <div class="toolbar">
        <label for="whatif-node">Node</label>{" "}
        <select id="whatif-node" value={pick} onChange={(e) => setNode(e.currentTarget.value)}>
          {nodes.map((n) => <option value={n}>{n}</option>)}
        </select>{" "}
        <button type="button" class="btn" disabled={busy || !pick} onClick={run}>Simulate</button>
      </div>
      {err && <div class="alert alert-error" role="alert">{err}</div>}
      {res && (res.vms.length === 0 ? <p>No HA VMs would be affected.</p> : (
        <table class="table" aria-label="What-if result">
          <thead><tr><th>VM</th><th>Name</th><th>Now on</th><th>Then on</th><th>What happens</th></tr></thead>
          <tbody>{res.vms.map((v) => (
            <tr data-vmid={v.vmid} data-outcome={v.outcome}>
              <td class="mono">{v.vmid}</td><td>{v.name}</td><td>{v.now ?? "—"}</td>
              <td data-after={v.after ?? ""}>{v.after ?? "—"}</td><td>{v.detail}</td>
            </tr>
          ))}</tbody>
        </table>
      ))}
    </section>
  );
}

function SharedPools({ pools, error, noModify, busy, onChanged, say }: {
  pools: SharedPoolInfo[] | undefined; error: ApiError | null | undefined; noModify: string | null; busy: boolean;
  onChanged: () => void; say: (m: Msg) => void;
}) {
  const [name, setName] = useState("");
  const [path, setPath] = useState("");
  const add = async () => {
    try {
      await post("/cluster/shared-pools", { name, path });
      say({ tone: "info", text: `Shared pool ${name} added: every node checks its marker.` });
      setName(""); setPath("");
    } catch (e) {
      say({ tone: "error", text: `Shared pool ${name} refused: ${(e as ApiError).message}` });
    }
    onChanged();
  };
  const remove = async (p: string) => {
    try {
      await del(`/cluster/shared-pools/${encodeURIComponent(p)}`);
      say({ tone: "info", text: `Shared pool ${p} removed (its files stay).` });
    } catch (e) {
      say({ tone: "error", text: `Removing ${p} refused: ${(e as ApiError).message}` });
    }
    onChanged();
  };
  return (
    <section class="card" aria-labelledby="shared-title">
      <h2 id="shared-title">Shared pools</h2>
      <p class="muted small">A directory every node mounts from the same storage (an NFS export, a cluster file system). Keel writes a marker into it and each node checks it sees the same one.</p>
      <ErrorBox error={error} title="Cannot list shared pools" />
      {pools && pools.length > 0 && (
        <table class="table" aria-label="Shared pools">
          <thead><tr><th>Name</th><th>Path</th><th>Nodes</th><th><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>{pools.map((p) => (
            <tr data-pool={p.name}>
              <td class="mono">{p.name}</td><td class="mono small">{p.path}</td>
              <td class="small">{Object.entries(p.nodes).map(([n, s]) => (
                <div data-node={n} data-ok={String(s === "ok")}>{n}: {s === "ok" ? <span class="badge badge-ok">ok</span> : <span class="badge badge-err">{s}</span>}</div>
              ))}</td>
              <td class="actions"><button type="button" class="btn btn-sm btn-danger-outline" disabled={busy || !!noModify}
                title={noModify ?? "Remove from the cluster (refused while a VM's disk is on it)"} onClick={() => remove(p.name)}>Remove</button></td>
            </tr>
          ))}</tbody>
        </table>
      )}
      <form class="inline-form" aria-label="Add a shared pool" onSubmit={(e) => { e.preventDefault(); if (name && path) add(); }}>
        <label for="sp-name">Name</label> <input id="sp-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />{" "}
        <label for="sp-path">Path</label> <input id="sp-path" value={path} placeholder="/mnt/shared" onInput={(e) => setPath(e.currentTarget.value)} />{" "}
        <button type="submit" class="btn" disabled={busy || !!noModify || !name || !path} title={noModify ?? "Declare the shared pool"}>Add shared pool</button>
      </form>
    </section>
  );
}

function Rules({ noModify, say }: { noModify: string | null; say: (m: Msg) => void }) {
  const rules = usePoll(() => get<HaRule[]>("/cluster/ha/rules"), 10000);
  const [id, setId] = useState("");
  const [kind, setKind] = useState("apart");
  const [vms, setVms] = useState("");
  const [nodes, setNodes] = useState("");
  const [hard, setHard] = useState(false);
  const body = id || vms ? ruleFromForm(id, kind, vms, nodes, hard) : null;
  const err = typeof body === "string" ? body : null;
  const add = async () => {
    if (!body || typeof body === "string") return;
    try {
      await post("/cluster/ha/rules", body);
      say({ tone: "info", text: `Rule ${body.id} added.` });
      setId(""); setVms(""); setNodes("");
    } catch (e) {
      say({ tone: "error", text: `Rule ${body.id} refused: ${(e as ApiError).message}` });
    }
    rules.refresh();
  };
  const remove = async (r: string) => {
    try {
      await del(`/cluster/ha/rules/${encodeURIComponent(r)}`);
      say({ tone: "info", text: `Rule ${r} removed.` });
    } catch (e) {
      say({ tone: "error", text: `Removing rule ${r} refused: ${(e as ApiError).message}` });
    }
    rules.refresh();
  };
  return (
    <section class="card" aria-labelledby="rules-title">
      <h2 id="rules-title">Placement rules</h2>
      <p class="muted small">Where HA VMs may run: on chosen nodes, together, or apart. Hard rules are never broken (a VM stays down rather); rules that conflict, or that could not hold after a node fails, are refused when added.</p>
      <ErrorBox error={rules.error} title="Cannot list placement rules" />
      {rules.data && rules.data.length > 0 && (
        <table class="table" aria-label="Placement rules">
          <thead><tr><th>Rule</th><th>Kind</th><th>VMs</th><th>Nodes</th><th>Hard</th><th><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>{rules.data.map((r) => (
            <tr data-rule={r.id}>
              <td class="mono">{r.id}</td><td>{r.kind}</td><td>{r.vms.join(", ")}</td>
              <td class="small">{r.nodes?.length ? r.nodes.map((n) => `${n.node}:${n.priority}`).join(", ") : "—"}</td>
              <td>{r.hard ? "hard" : "soft"}</td>
              <td class="actions"><button type="button" class="btn btn-sm btn-danger-outline" disabled={!!noModify}
                title={noModify ?? "Remove the rule"} onClick={() => remove(r.id)}>Remove</button></td>
            </tr>
          ))}</tbody>
        </table>
      )}
      <form class="inline-form" aria-label="Add a placement rule" onSubmit={(e) => { e.preventDefault(); add(); }}>
        <label for="rule-id">Rule id</label> <input id="rule-id" value={id} onInput={(e) => setId(e.currentTarget.value)} />{" "}
        <label for="rule-kind">Kind</label>{" "}
        <select id="rule-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
          <option value="apart">apart</option><option value="together">together</option><option value="node-affinity">node affinity</option>
        </select>{" "}
        <label for="rule-vms">VMs</label> <input id="rule-vms" value={vms} placeholder="100,101" onInput={(e) => setVms(e.currentTarget.value)} />{" "}
        {kind === "node-affinity" && <><label for="rule-nodes">Nodes</label> <input id="rule-nodes" value={nodes} placeholder="node1:100,node2:50" onInput={(e) => setNodes(e.currentTarget.value)} />{" "}</>}
        <label class="check"><input type="checkbox" id="rule-hard" checked={hard} onChange={(e) => setHard(e.currentTarget.checked)} /> Hard</label>{" "}
        <button type="submit" class="btn" disabled={!!noModify || !body || !!err} title={noModify ?? "Add the rule"}>Add rule</button>
        {err && <div class="field-error" role="alert">{err}</div>}
      </form>
    </section>
  );
}

/** Node maintenance: every running VM leaves the node (live), optionally every stopped one
 * (offline), then it is in standby. */
function Maintenance({ noModify, say, onChanged }: { noModify: string | null; say: (m: Msg) => void; onChanged: () => void }) {
  const status = usePoll(() => get<ClusterStatus>("/cluster/status"), 5000);
  const [busy, setBusy] = useState(false);
  const [confirm, setConfirm] = useState<string | null>(null);
  const [ending, setEnding] = useState<string | null>(null);
  const [bringBack, setBringBack] = useState(true);
  const [withStopped, setWithStopped] = useState(false);
  const start = async (node: string, includeStopped: boolean) => {
    setBusy(true);
    await runShown(`Maintenance of ${node}`, "PUT", np("/maintenance", node), { enabled: true, include_stopped: includeStopped }, say);
    setBusy(false);
    status.refresh();
    onChanged();
  };
  const end = async (node: string, back: boolean) => {
    setBusy(true);
    if (back) {
      await runShown(`End of maintenance of ${node}`, "PUT", np("/maintenance", node), { enabled: false, return_vms: true }, say);
      onChanged();
    } else {
      try {
        await put(np("/maintenance", node), { enabled: false });
        say({ tone: "info", text: `${node} left maintenance: it takes VMs again (moved VMs stay where they are).` });
      } catch (e) {
        say({ tone: "error", text: `Ending maintenance of ${node} refused: ${(e as ApiError).message}` });
      }
    }
    setBusy(false);
    status.refresh();
  };
  const members = status.data?.members ?? [];
  return (
    <section class="card" aria-labelledby="maint-title">
      <h2 id="maint-title">Node maintenance</h2>
      <p class="muted small">Every running VM leaves the node live (HA VMs through Pacemaker, respecting their placement rules), stopped VMs too when asked (offline), then the node is in standby, also across reboots. A VM that cannot leave stops the request before anything moves.</p>
      <ErrorBox error={status.error} title="Cannot read the cluster status" />
      {members.length > 0 && (
        <table class="table" aria-label="Nodes">
          <thead><tr><th>Node</th><th>State</th><th><span class="sr-only">Actions</span></th></tr></thead>
          <tbody>{members.map((m) => (
            <tr data-node={m.name} data-standby={String(!!m.standby)}>
              <td class="mono">{m.name}</td>
              <td>{!m.online ? <span class="badge badge-err">offline</span> : m.standby ? <span class="badge badge-warn">in maintenance</span> : <span class="badge badge-ok">online</span>}</td>
              <td class="actions">{m.standby
                ? <button type="button" class="btn btn-sm" disabled={busy || !!noModify} title={noModify ?? "The node takes VMs again"} onClick={() => { setBringBack(true); setEnding(m.name); }}>End maintenance</button>
                : <button type="button" class="btn btn-sm" disabled={busy || !!noModify || !m.online} title={noModify ?? "Move every VM away and put the node in standby"} onClick={() => { setWithStopped(false); setConfirm(m.name); }}>Maintenance</button>}</td>
            </tr>
          ))}</tbody>
        </table>
      )}
      {ending && (
        <Modal title={`End maintenance of ${ending}`} onClose={() => setEnding(null)}>
          <p><strong>{ending}</strong> leaves standby and takes VMs again.</p>
          <label class="check"><input type="checkbox" id="maint-return" checked={bringBack} onChange={(e) => setBringBack(e.currentTarget.checked)} />
            {" "}Bring back the VMs its maintenance moved away (live; HA VMs through Pacemaker)</label>
          <div class="modal-actions">
            <button type="button" class="btn" onClick={() => setEnding(null)}>Cancel</button>
            <button type="button" class="btn btn-primary" onClick={() => { const n = ending; setEnding(null); end(n, bringBack); }}>End maintenance</button>
          </div>
        </Modal>
      )}
      {confirm && (
        <Modal title={`Maintenance of ${confirm}`} onClose={() => setConfirm(null)}>
          <p>Every running VM of <strong>{confirm}</strong> is live-migrated to another node, then {confirm} is put in standby and runs no VM until maintenance ends.</p>
          <label class="check"><input type="checkbox" id="maint-stopped" checked={withStopped} onChange={(e) => setWithStopped(e.currentTarget.checked)} />
            {" "}Also move the stopped VMs (offline, so they can be started elsewhere; node-local disks are copied, HA VMs and templates stay)</label>
          <div class="modal-actions">
            <button type="button" class="btn" onClick={() => setConfirm(null)}>Cancel</button>
            <button type="button" class="btn btn-primary" onClick={() => { const n = confirm; setConfirm(null); start(n, withStopped); }}>Start maintenance</button>
          </div>
        </Modal>
      )}
    </section>
  );
}
