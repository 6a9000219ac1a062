// Pure logic of the cluster page and the node list (no DOM): status → view model.
// Unit-tested in test/cluster.test.ts.

import type { ClusterStatus, DaemonStatus, FenceDeviceInfo, FenceTestResult, LinkStatus, MemberStatus, NodeInfo, StoreState } from "./types";

export type Tone = "ok" | "warn" | "bad" | "off" | "info";
export interface Badge { label: string; tone: Tone }

/** A fence test older than this is shown as stale (the node may have changed since). */
export const FENCE_TEST_STALE_S = 30 * 24 * 3600;

/** `clustered: false` (or no status at all) means a standalone node. */
export function isStandalone(s: ClusterStatus | null | undefined): boolean {
  return !s || !s.clustered;
}

/** Votes corosync needs for quorum: a majority of the expected votes, 1 in two_node mode. */
export function votesNeeded(s: Pick<ClusterStatus, "expected_votes" | "two_node">): number {
  if (s.two_node) return 1;
  return Math.floor(s.expected_votes / 2) + 1;
}

/** "Quorate · 3 of 3 votes" / "Not quorate · 1 of 3 votes (needs 2)". */
export function quorumView(s: ClusterStatus): { badge: Badge; text: string; detail: string } {
  const need = votesNeeded(s);
  const votes = `${s.total_votes} of ${s.expected_votes} expected vote${s.expected_votes === 1 ? "" : "s"}`;
  if (s.quorate) {
    const spare = s.total_votes - need;
    const detail = s.two_node
      ? "two-node mode: the survivor of a split keeps quorum; fencing decides which one"
      : spare > 0
        ? `can lose ${spare} more vote${spare === 1 ? "" : "s"} and stay quorate`
        : "losing one more vote costs quorum";
    return { badge: { label: "Quorate", tone: "ok" }, text: votes, detail };
  }
  return {
    badge: { label: "Not quorate", tone: "bad" },
    text: `${votes} (needs ${need})`,
    detail: "cluster writes and resource changes are blocked until quorum returns",
  };
}

/** State of a member: unclean (needs fencing) beats offline beats standby. */
export function memberBadge(m: Pick<MemberStatus, "online" | "standby" | "unclean">): Badge {
  if (m.unclean) return { label: "Unclean", tone: "bad" };
  if (!m.online) return { label: "Offline", tone: "bad" };
  if (m.standby) return { label: "Standby", tone: "warn" };
  return { label: "Online", tone: "ok" };
}

/** Summary of a member's knet links as seen from the answering node. */
export function linkSummary(links: LinkStatus[], isLocal: boolean): Badge {
  if (isLocal) return { label: "local node", tone: "off" };
  if (!links.length) return { label: "no link data", tone: "warn" };
  const up = links.filter((l) => l.connected).length;
  if (up === links.length) return { label: links.length === 1 ? "link up" : `${up}/${links.length} links up`, tone: "ok" };
  if (up === 0) return { label: links.length === 1 ? "link down" : "all links down", tone: "bad" };
  return { label: `${up}/${links.length} links up`, tone: "warn" };
}

/** "42s", "5 min", "3 h", "12 d". */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** Freshness of a node's last fence test (Keel refuses HA until every node has passed one). */
export function fenceTestView(t: FenceTestResult | null | undefined, now = Date.now() / 1000, generation?: string | null): Badge & { detail: string } {
  if (!t) return { label: "Never tested", tone: "warn", detail: "run `keel fence test NODE` before enabling HA" };
  const age = now - t.at;
  const when = age < -60 ? "in the future (check the clocks)" : `${formatAge(age)} ago`;
  const detail = `${t.action}: ${t.message}`.trim();
  if (generation && t.device_generation !== generation) {
    return { label: `Device changed since the test ${when}`, tone: "warn", detail: `test it again: the device was changed after this test (${detail})` };
  }
  if (!t.ok) return { label: `Failed ${when}`, tone: "bad", detail };
  if (age > FENCE_TEST_STALE_S) return { label: `Passed ${when} (stale)`, tone: "warn", detail };
  return { label: `Passed ${when}`, tone: "ok", detail };
}

/** Parameter names that hold secrets even when a device lists them as plain params. */
const SECRET_NAME = /(^|[_-])(pass|passwd|password|secret|token|community|privkey|private[_-]?key)($|[_-])/i;
export function looksSecret(name: string): boolean {
  return SECRET_NAME.test(name);
}

export interface ParamRow { name: string; value: string; secret: boolean }

/** A device's parameters for display: secrets (declared, or by their name) only as "set". */
export function deviceParams(d: Pick<FenceDeviceInfo, "params" | "secret_keys">): ParamRow[] {
  const rows: ParamRow[] = Object.entries(d.params ?? {}).map(([name, value]) =>
    looksSecret(name) || d.secret_keys.includes(name) ? { name, value: "set", secret: true } : { name, value, secret: false });
  for (const k of d.secret_keys ?? []) if (!rows.some((r) => r.name === k)) rows.push({ name: k, value: "set", secret: true });
  return rows.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * `HOST:PORT` without the default port 8006, as `keel join` takes it: `10.0.0.1:8006` →
 * `10.0.0.1`, `[fd00::1]:8006` → `fd00::1` (a bare IPv6 address means port 8006), other ports kept.
 */
export function joinAddress(host: string): string {
  const v6 = host.match(/^\[([0-9A-Fa-f:.]+)\](?::8006)?$/);
  if (v6) return v6[1];
  // a bare IPv6 address (already normalized) keeps all of its groups, even a last ":8006"
  if ((host.match(/:/g) ?? []).length > 1) return host;
  return host.endsWith(":8006") ? host.slice(0, -":8006".length) : host;
}

/**
 * The address a new node should join through: this node's API address as the cluster records
 * it (on the cluster network, so the joiner's link0 is chosen on that network too), else the
 * address the browser reached.
 */
export function joinAddressFor(nodes: { name: string; api?: string }[] | null | undefined, local: string, browserHost: string): string {
  const api = nodes?.find((n) => n.name === local)?.api;
  return joinAddress(api || browserHost);
}

/** Shell-quote a value when it needs it (tokens and fingerprints normally do not). */
function sq(v: string): string {
  return /^[A-Za-z0-9_.:\-\[\]\/+=@]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

/**
 * `keel join ADDRESS --fingerprint FP --token TOKEN`, run on the new node. ADDRESS may be the
 * join token's `address` as the cluster records it (`[v6]:8006`): shown in the short form.
 */
export function joinCommand(address: string, fingerprint: string | null | undefined, token: string): string {
  return `keel join ${sq(joinAddress(address))} --fingerprint ${fingerprint ? sq(fingerprint) : "<FINGERPRINT>"} --token ${sq(token)}`;
}

/** "expires in 59 min (2026-11-22 01:30:00)" or "expired". */
export function expiryText(expiresAt: number, now = Date.now() / 1000): string {
  const left = expiresAt - now;
  return left <= 0 ? "expired" : `expires in ${formatAge(left)}`;
}

export interface NodeEntry { name: string; online: boolean | null; local: boolean }

/**
 * The node list of the sidebar: the cluster's members when clustered, else the nodes
 * hostd lists (a standalone node: just itself), else the node the session logged in to.
 */
export function nodeList(status: ClusterStatus | null | undefined, nodes: NodeInfo[] | null | undefined, sessionNode: string): NodeEntry[] {
  if (status && status.clustered && status.members.length) {
    return [...status.members]
      .sort((a, b) => a.nodeid - b.nodeid || a.name.localeCompare(b.name))
      .map((m) => ({ name: m.name, online: m.online && !m.unclean, local: m.name === status.local_node }));
  }
  if (nodes && nodes.length) return nodes.map((n) => ({ name: n.node, online: true, local: n.node === sessionNode }));
  return sessionNode ? [{ name: sessionNode, online: null, local: true }] : [];
}

/**
 * The node to use for node-scoped URLs: the chosen one if it is still listed (or while the list
 * is not loaded yet), else the local one.
 */
export function effectiveNode(selected: string | null, list: NodeEntry[] | null, sessionNode: string): string {
  if (!list) return selected || sessionNode;
  if (selected && list.some((n) => n.name === selected)) return selected;
  return list.find((n) => n.local)?.name ?? sessionNode;
}

/** Failed actions grouped for display, newest engine wording kept verbatim. */
export function failedActionText(a: { resource: string; node: string; operation: string; status: string }): string {
  return `${a.resource} ${a.operation} on ${a.node}: ${a.status}`;
}

/** The node a task ran on, from its UPID (`UPID:{node}:…`); null if it is not a UPID. */
export function upidNode(upid: string): string | null {
  const m = /^UPID:([^:]+):/.exec(upid);
  return m ? m[1] : null;
}

/** A cluster daemon of the answering node: running / restarting / dead / stopped on purpose. */
export function daemonBadge(d: Pick<DaemonStatus, "state">): Badge {
  switch (d.state) {
    case "running": return { label: "Running", tone: "ok" };
    case "restarting": return { label: "Restarting", tone: "warn" };
    case "stopped": return { label: "Stopped", tone: "off" };
    default: return { label: "Dead", tone: "bad" };
  }
}

/** "killed by signal 9 (SIGKILL), pid 812" — how a daemon's last process ended. */
export function lastExitText(d: Pick<DaemonStatus, "last_exit">): string {
  const e = d.last_exit;
  if (!e) return "—";
  return e.pid ? `${e.status}, pid ${e.pid}` : e.status;
}

/** The config store as the answering node sees it; `null` when the status has none. */
export function storeView(st: StoreState | null | undefined): { badge: Badge; detail: string } | null {
  if (!st) return null;
  if (!st.reachable) {
    return { badge: { label: "Unreachable", tone: "bad" }, detail: st.error ?? "keel-clusterd does not answer" };
  }
  const where = `version ${st.version ?? "?"} · ${st.members.length} member${st.members.length === 1 ? "" : "s"}`;
  if (st.writable) return { badge: { label: "Writable", tone: "ok" }, detail: where };
  if (st.held) return { badge: { label: "Held", tone: "warn" }, detail: st.held };
  if (st.syncing) return { badge: { label: "Syncing", tone: "warn" }, detail: where };
  return { badge: { label: "Read-only", tone: "bad" }, detail: st.read_only_reason ?? where };
}

/** The agents the "Set fence device" dialog offers, with the parameters each takes. */
export const FENCE_AGENTS: { kind: string; label: string; params: string; password: boolean }[] = [
  { kind: "fence_ipmilan", label: "IPMI BMC (fence_ipmilan)", params: "ip (required), username (required), ipport, lanplus (1/0, default 1), privlvl, action (reboot/off)", password: true },
  { kind: "fence_redfish", label: "Redfish BMC (fence_redfish)", params: "ip (required), username (required), ipport, ssl_insecure (1 for a self-signed certificate), systems_uri, action", password: true },
  { kind: "sbd", label: "SBD on a shared disk (fence_sbd)", params: "devices (required: /dev/disk/by-id/…, comma-separated), watchdog_timeout (seconds)", password: false },
  { kind: "watchdog", label: "Diskless SBD: the node's watchdog (fence_watchdog)", params: "watchdog_timeout (seconds; needs three votes)", password: false },
  { kind: "other", label: "Another fence agent in /usr/sbin…", params: "the agent's own parameters (checked against its metadata), action", password: false },
];

/**
 * `key=value` lines (blank lines and `#` comments skipped) → a map, or the first line that is not
 * one, named for the operator (`what` is "parameter" or "secret").
 */
export function parseKeyValues(text: string, what: string, { trimValues = true } = {}): { values: Record<string, string>; error: string | null } {
  const values: Record<string, string> = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].replace(/\r$/, "");
    const l = raw.trim();
    if (!l || l.startsWith("#")) continue;
    const eq = raw.indexOf("=");
    const k = eq > 0 ? raw.slice(0, eq).trim() : "";
    if (!k || !/^[A-Za-z0-9_-]+$/.test(k)) return { values, error: `line ${i + 1}: "${l}" is not a ${what} (write name=value)` };
    if (k in values) return { values, error: `line ${i + 1}: ${what} ${k} is given twice` };
    // a secret keeps its spaces: they may be part of it
    values[k] = trimValues ? raw.slice(eq + 1).trim() : raw.slice(eq + 1);
  }
  return { values, error: null };
}

/** The agent wire name of the dialog's choice (`other` → the program typed), or an error. */
export function fenceAgentOf(kind: string, program: string): { agent: string | null; error: string | null } {
  if (kind !== "other") return { agent: kind, error: null };
  const p = program.trim();
  if (!/^fence_[a-z0-9_]+$/.test(p)) return { agent: null, error: "the agent's program name starts with fence_ (e.g. fence_virsh), as in /usr/sbin" };
  return { agent: p, error: null };
}
