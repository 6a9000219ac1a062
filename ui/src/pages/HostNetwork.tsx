import { useState } from "preact/hooks";
import { ApiError, currentNode, del, get, np, post, put } from "../api";
import { Badge, ErrorBox, Loading } from "../components";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import { runShown } from "./Snapshots";

/** keel-api's `hostnet::BondSlaveState` / `BondState`. */
export interface BondSlaveState { name: string; mii_status: string; link_failures: number; permanent_mac: string | null }
export interface BondState { mode: string; active_slave: string | null; primary: string | null; mii_status: string; slaves: BondSlaveState[] }
/** keel-api's `hostnet::HostInterface`. */
export interface HostInterface {
  name: string; kind: string; state: string | null; mtu: number | null; mac: string | null;
  addresses: string[]; master: string | null; vlan_id: number | null; vlan_parent: string | null;
  ports: string[]; bond: BondState | null; managed: boolean; management: boolean; corosync_links: string[];
}
export interface ApplyState { deadline: number; remaining_s: number; upid: string }
export interface HostNetworkInfo { interfaces: HostInterface[]; management_address: string | null; pending: boolean; apply: ApplyState | null }
export interface PendingNetwork { pending: boolean; files: { path: string; change: string; lines: string[] }[]; diff: string }

type Msg = { tone: "info" | "error"; text: string } | null;
type Kind = "bond" | "vlan" | "bridge";

const list = (s: string) => s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);

/** Checks before sending (the API checks again, with the node's own refusals). */
export function stageFormError(kind: Kind, f: Record<string, string>): string | null {
  const ifname = /^[A-Za-z0-9_.-]{1,15}$/;
  if (kind !== "vlan" && !ifname.test(f.name ?? "")) return "The name is 1 to 15 letters, digits, '-', '_' or '.'.";
  if (kind === "vlan" && f.name && !ifname.test(f.name)) return "The name is 1 to 15 letters, digits, '-', '_' or '.'.";
  if (kind === "bond" && list(f.slaves ?? "").length === 0) return "A bond needs at least one slave NIC.";
  if (kind === "vlan") {
    const id = Number(f.id);
    if (!f.parent) return "Choose the parent interface.";
    if (!Number.isInteger(id) || id < 1 || id > 4094) return "The VLAN id is 1 to 4094.";
  }
  for (const a of list(f.addresses ?? "")) if (!/\/\d{1,3}$/.test(a)) return `${a}: give the address with its prefix, e.g. 192.0.2.10/24.`;
  return null;
}

function detail(i: HostInterface) {
  if (i.bond) {
    return (
      <span>{i.bond.mode}, active {i.bond.active_slave ?? "—"}{i.bond.slaves.map((s) => (
        <span data-slave={s.name}>{"; "}{s.name} <Badge tone={s.mii_status === "up" ? "ok" : "bad"}>MII {s.mii_status}</Badge></span>
      ))}</span>
    );
  }
  if (i.vlan_id != null) return <span>VLAN {i.vlan_id} on {i.vlan_parent ?? "?"}</span>;
  if (i.ports.length) return <span>ports {i.ports.join(", ")}</span>;
  return null;
}

/** Host network: the node's NICs, bonds, VLANs and bridges; staged changes as a diff; apply with a confirm countdown. */
export function HostNetwork() {
  const net = usePoll(() => get<HostNetworkInfo>(np("/network")), 3000);
  const pending = usePoll(() => get<PendingNetwork>(np("/network/pending")), 3000);
  const perms = usePermissions();
  const noModify = whyNot(perms, "Sys.Modify", `/nodes/${currentNode()}`);
  const [msg, setMsg] = useState<Msg>(null);
  const [busy, setBusy] = useState(false);
  const [kind, setKind] = useState<Kind>("vlan");
  const [form, setForm] = useState<Record<string, string>>({ mode: "active-backup" });
  const [timeout, setTimeoutS] = useState("60");
  const set = (k: string) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  const refresh = () => { net.refresh(); pending.refresh(); };
  const call = async (what: string, f: () => Promise<unknown>) => {
    setBusy(true);
    try {
      await f();
      setMsg({ tone: "info", text: `${what}: done.` });
    } catch (e) {
      setMsg({ tone: "error", text: `${what} refused: ${(e as ApiError).message}` });
    }
    setBusy(false);
    refresh();
  };
  const formError = stageFormError(kind, form);
  const stage = () => {
    const l3 = { addresses: list(form.addresses ?? ""), ...(form.mtu ? { mtu: Number(form.mtu) } : {}) };
    if (kind === "bond") return call(`Stage bond ${form.name}`, () => put(np("/network/bonds"), { name: form.name, mode: form.mode, slaves: list(form.slaves ?? ""), ...l3 }));
    if (kind === "vlan") return call(`Stage VLAN ${form.id} on ${form.parent}`, () => put(np("/network/vlans"), { parent: form.parent, id: Number(form.id), ...(form.name ? { name: form.name } : {}), ...l3 }));
    return call(`Stage bridge ${form.name}`, () => put(np("/network/bridges"), { name: form.name, ports: list(form.ports ?? ""), ...l3 }));
  };
  const apply = async () => {
    setBusy(true);
    await runShown("Apply network change", "POST", np("/network/apply"), { confirm_timeout_s: Number(timeout) }, setMsg);
    setBusy(false);
    refresh();
  };
  const ifaces = net.data?.interfaces ?? [];
  const parents = ifaces.filter((i) => !i.master || i.kind === "bond").map((i) => i.name);
  const waiting = net.data?.apply ?? null;
  return (
    <section aria-labelledby="hostnet-title">
      <div class="page-head"><h1 id="hostnet-title">Host network</h1></div>
      <p class="small muted">The node's NICs, bonds, VLANs and bridges (systemd-networkd). Changes are staged, shown as a diff of
        the networkd files, and rolled back automatically unless confirmed after applying.</p>
      {msg && <div class={`alert ${msg.tone === "error" ? "alert-error" : "alert-info"}`} role="status" aria-label="Host network status">{msg.text}</div>}
      <ErrorBox error={net.error} title="Cannot list the host network" />
      {!net.data && !net.error && <Loading what="interfaces" />}
      {waiting && (
        <div class="alert alert-info" role="alert" data-testid="confirm-countdown">
          An applied change waits for confirmation: rolled back in {waiting.remaining_s}s unless confirmed.{" "}
          <button type="button" class="btn btn-primary btn-sm" disabled={busy || !!noModify}
            onClick={() => call("Confirm network change", () => post(np("/network/confirm")))}>Confirm</button>
        </div>
      )}
      {net.data && (
        <table class="table" aria-label="Host interfaces">
          <thead><tr><th>Name</th><th>Kind</th><th>State</th><th>MTU</th><th>Addresses</th><th>Master</th><th>Detail</th><th>Role</th><th /></tr></thead>
          <tbody>{ifaces.map((i) => (
            <tr data-iface={i.name} data-managed={String(i.managed)}>
              <td class="mono">{i.name}</td>
              <td>{i.kind}</td>
              <td>{i.state ? <Badge tone={i.state === "UP" ? "ok" : i.state === "DOWN" ? "bad" : "muted"}>{i.state}</Badge> : <span class="muted">absent</span>}</td>
              <td>{i.mtu ?? ""}</td>
              <td class="mono small">{i.addresses.join(" ")}</td>
              <td>{i.master ?? ""}</td>
              <td class="small">{detail(i)}</td>
              <td class="small">{[i.management ? "management" : null, ...i.corosync_links.map((l) => `corosync ${l}`)].filter(Boolean).join(", ")}</td>
              <td>{i.managed && i.kind !== "ethernet" && (
                <button type="button" class="btn btn-sm" disabled={busy || !!noModify || !!waiting} title={noModify ?? "Stage the deletion"}
                  onClick={() => call(`Stage deletion of ${i.name}`, () => del(np(`/network/interfaces/${encodeURIComponent(i.name)}`)))}>Delete</button>
              )}</td>
            </tr>
          ))}</tbody>
        </table>
      )}
      <section class="panel" aria-labelledby="stage-title">
        <div class="panel-head"><h2 id="stage-title">Stage a change</h2></div>
        <div class="form-row">
          <label for="hn-kind">Kind</label>
          <select id="hn-kind" value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value as Kind)}>
            <option value="vlan">VLAN</option><option value="bridge">Bridge</option><option value="bond">Bond</option>
          </select>
          {kind === "vlan" && (<>
            <label for="hn-parent">Parent</label>
            <select id="hn-parent" value={form.parent ?? ""} onChange={set("parent")}>
              <option value="">—</option>{parents.map((p) => <option value={p}>{p}</option>)}
            </select>
            <label for="hn-id">VLAN id</label><input id="hn-id" value={form.id ?? ""} onInput={set("id")} size={5} />
          </>)}
          <label for="hn-name">Name</label><input id="hn-name" value={form.name ?? ""} onInput={set("name")} size={12}
            placeholder={kind === "vlan" ? "PARENT.ID" : ""} />
          {kind === "bond" && (<>
            <label for="hn-slaves">Slaves</label><input id="hn-slaves" value={form.slaves ?? ""} onInput={set("slaves")} placeholder="ens5 ens6" />
            <label for="hn-mode">Mode</label>
            <select id="hn-mode" value={form.mode} onChange={set("mode")}>
              {["active-backup", "802.3ad", "balance-rr", "balance-xor", "broadcast", "balance-tlb", "balance-alb"].map((m) => <option value={m}>{m}</option>)}
            </select>
          </>)}
          {kind === "bridge" && (<>
            <label for="hn-ports">Ports</label><input id="hn-ports" value={form.ports ?? ""} onInput={set("ports")} placeholder="bond0.200" />
          </>)}
          <label for="hn-addr">Addresses</label><input id="hn-addr" value={form.addresses ?? ""} onInput={set("addresses")} placeholder="192.0.2.10/24" />
          <button type="button" class="btn btn-primary" disabled={busy || !!noModify || !!formError || !!waiting}
            title={noModify ?? formError ?? "Stage this change"} onClick={stage}>Stage</button>
        </div>
        {formError && <p class="small muted" data-testid="stage-hint">{formError}</p>}
      </section>
      <section class="panel" aria-labelledby="pending-title">
        <div class="panel-head">
          <h2 id="pending-title">Pending changes</h2>
          <span class="spacer" />
          {pending.data?.pending && (<>
            <label for="hn-timeout" class="small">Confirm within (s)</label>
            <input id="hn-timeout" value={timeout} onInput={(e) => setTimeoutS((e.target as HTMLInputElement).value)} size={4} />
            <button type="button" class="btn btn-sm" disabled={busy || !!noModify || !!waiting} onClick={apply}>Apply…</button>
            <button type="button" class="btn btn-sm" disabled={busy || !!noModify}
              onClick={() => call("Discard network changes", () => del(np("/network/pending")))}>Discard</button>
          </>)}
        </div>
        {pending.data && !pending.data.pending && <p class="muted" data-testid="no-pending">No changes are staged.</p>}
        {pending.data?.pending && (
          <pre class="mono small" aria-label="Pending diff" data-testid="pending-diff">{pending.data.diff.split("\n").map((l) => (
            <div class={l.startsWith("+") && !l.startsWith("+++") ? "diff-add" : l.startsWith("-") && !l.startsWith("---") ? "diff-del" : ""}>{l}</div>
          ))}</pre>
        )}
      </section>
    </section>
  );
}
