import { describe, expect, it } from "vitest";
import {
  daemonBadge, deviceParams, effectiveNode, expiryText, fenceAgentOf, FENCE_TEST_STALE_S, fenceTestView, parseKeyValues, formatAge, isStandalone, joinAddress, joinAddressFor,
  joinCommand, lastExitText, linkSummary, looksSecret, memberBadge, nodeList, quorumView, storeView, upidNode, votesNeeded,
} from "../src/cluster";
import type { ClusterStatus, MemberStatus, NodeInfo } from "../src/types";

const member = (name: string, nodeid: number, over: Partial<MemberStatus> = {}): MemberStatus => ({
  name, nodeid, online: true, standby: false, unclean: false, votes: 1,
  links: [{ link: 0, address: `10.0.0.${nodeid}`, connected: true }],
  is_dc: false, fence_device: `fence-${name}`, last_fence_test: null, ...over,
});

const three: ClusterStatus = {
  clustered: true, name: "lab", local_node: "n1", quorate: true, expected_votes: 3, total_votes: 3, two_node: false,
  members: [member("n2", 2), member("n1", 1, { is_dc: true }), member("n3", 3)],
  dc: "n1", stonith_enabled: true, failed_actions: [], notes: [],
};

// What hostd answers on a node that is not in a cluster.
const standalone: ClusterStatus = {
  clustered: false, name: "", local_node: "node1", quorate: false, expected_votes: 0, total_votes: 0, two_node: false,
  members: [], dc: null, stonith_enabled: false, failed_actions: [], notes: [],
};

describe("standalone detection", () => {
  it("clustered:false, or no status, is standalone", () => {
    expect(isStandalone(standalone)).toBe(true);
    expect(isStandalone(undefined)).toBe(true);
    expect(isStandalone(null)).toBe(true);
    expect(isStandalone(three)).toBe(false);
  });
});

describe("quorum text", () => {
  it("votes needed: majority, or 1 in two_node mode", () => {
    expect(votesNeeded({ expected_votes: 3, two_node: false })).toBe(2);
    expect(votesNeeded({ expected_votes: 4, two_node: false })).toBe(3);
    expect(votesNeeded({ expected_votes: 5, two_node: false })).toBe(3);
    expect(votesNeeded({ expected_votes: 1, two_node: false })).toBe(1);
    expect(votesNeeded({ expected_votes: 2, two_node: true })).toBe(1);
  });
  it("quorate with spare votes", () => {
    const q = quorumView(three);
    expect(q.badge).toEqual({ label: "Quorate", tone: "ok" });
    expect(q.text).toBe("3 of 3 expected votes");
    expect(q.detail).toBe("can lose 1 more vote and stay quorate");
  });
  it("quorate at the edge", () => {
    const q = quorumView({ ...three, total_votes: 2 });
    expect(q.text).toBe("2 of 3 expected votes");
    expect(q.detail).toMatch(/losing one more vote costs quorum/);
  });
  it("not quorate names the votes it needs", () => {
    const q = quorumView({ ...three, quorate: false, total_votes: 1 });
    expect(q.badge).toEqual({ label: "Not quorate", tone: "bad" });
    expect(q.text).toBe("1 of 3 expected votes (needs 2)");
  });
  it("two_node explains who survives", () => {
    const q = quorumView({ ...three, two_node: true, expected_votes: 2, total_votes: 1, members: three.members.slice(0, 2) });
    expect(q.badge.label).toBe("Quorate");
    expect(q.detail).toMatch(/two-node mode/);
  });
  it("one expected vote is singular", () => {
    expect(quorumView({ ...three, expected_votes: 1, total_votes: 1 }).text).toBe("1 of 1 expected vote");
  });
});

describe("member state", () => {
  it("unclean beats offline beats standby", () => {
    expect(memberBadge({ online: true, standby: false, unclean: false })).toEqual({ label: "Online", tone: "ok" });
    expect(memberBadge({ online: true, standby: true, unclean: false }).label).toBe("Standby");
    expect(memberBadge({ online: false, standby: true, unclean: false }).label).toBe("Offline");
    expect(memberBadge({ online: false, standby: false, unclean: true })).toEqual({ label: "Unclean", tone: "bad" });
    expect(memberBadge({ online: true })).toEqual({ label: "Online", tone: "ok" });
  });
});

describe("link summary", () => {
  const l = (link: number, connected: boolean) => ({ link, address: `10.${link}.0.2`, connected });
  it("all, some, none connected", () => {
    expect(linkSummary([l(0, true)], false)).toEqual({ label: "link up", tone: "ok" });
    expect(linkSummary([l(0, true), l(1, true)], false)).toEqual({ label: "2/2 links up", tone: "ok" });
    expect(linkSummary([l(0, true), l(1, false)], false)).toEqual({ label: "1/2 links up", tone: "warn" });
    expect(linkSummary([l(0, false), l(1, false)], false)).toEqual({ label: "all links down", tone: "bad" });
    expect(linkSummary([l(0, false)], false)).toEqual({ label: "link down", tone: "bad" });
  });
  it("the answering node and missing data", () => {
    expect(linkSummary([l(0, false)], true).label).toBe("local node");
    expect(linkSummary([], false)).toEqual({ label: "no link data", tone: "warn" });
  });
});

describe("fence test freshness", () => {
  const now = 1_800_000_000;
  it("never tested", () => {
    expect(fenceTestView(null, now)).toMatchObject({ label: "Never tested", tone: "warn" });
  });
  it("recent pass, stale pass, failure", () => {
    expect(fenceTestView({ at: now - 3 * 3600, ok: true, action: "reboot", message: "done" }, now))
      .toEqual({ label: "Passed 3 h ago", tone: "ok", detail: "reboot: done" });
    expect(fenceTestView({ at: now - FENCE_TEST_STALE_S - 1, ok: true, action: "reboot", message: "" }, now))
      .toMatchObject({ label: "Passed 30 d ago (stale)", tone: "warn" });
    expect(fenceTestView({ at: now - FENCE_TEST_STALE_S + 60, ok: true, action: "reboot", message: "" }, now).tone).toBe("ok");
    expect(fenceTestView({ at: now - 90, ok: false, action: "off", message: "timed out" }, now))
      .toEqual({ label: "Failed 1 min ago", tone: "bad", detail: "off: timed out" });
  });
  it("a test from the future points at the clocks", () => {
    expect(fenceTestView({ at: now + 3600, ok: true, action: "reboot", message: "" }, now).label).toMatch(/check the clocks/);
  });
  it("ages", () => {
    expect(formatAge(0)).toBe("0s");
    expect(formatAge(59)).toBe("59s");
    expect(formatAge(60)).toBe("1 min");
    expect(formatAge(7200)).toBe("2 h");
    expect(formatAge(86400 * 3)).toBe("3 d");
    expect(formatAge(-5)).toBe("0s");
  });
});

describe("secret masking", () => {
  it("declared secrets are shown as set, never their value", () => {
    const rows = deviceParams({ params: { ip: "10.0.0.9", username: "admin" }, secret_keys: ["password"] });
    expect(rows).toEqual([
      { name: "ip", value: "10.0.0.9", secret: false },
      { name: "password", value: "set", secret: true },
      { name: "username", value: "admin", secret: false },
    ]);
  });
  it("secret-looking plain params are masked too", () => {
    const rows = deviceParams({ params: { passwd: "hunter2", snmp_community: "c", api_token: "t", lanplus: "1" }, secret_keys: [] });
    expect(rows.filter((r) => r.secret).map((r) => r.name)).toEqual(["api_token", "passwd", "snmp_community"]);
    expect(JSON.stringify(rows)).not.toMatch(/hunter2/);
    expect(rows.find((r) => r.name === "lanplus")?.value).toBe("1");
  });
  it("a key both in params and secret_keys appears once, masked", () => {
    const rows = deviceParams({ params: { password: "oops" }, secret_keys: ["password"] });
    expect(rows).toEqual([{ name: "password", value: "set", secret: true }]);
  });
  it("name heuristics", () => {
    for (const s of ["password", "passwd", "pass", "PASSWORD", "secret", "client_secret", "api-token", "private_key", "privkey"]) expect(looksSecret(s)).toBe(true);
    for (const s of ["ip", "username", "lanplus", "ssl_insecure", "lab_dir", "port", "passive", "keyfile_dir"]) expect(looksSecret(s)).toBe(false);
  });
});

describe("join command", () => {
  const fp = Array(32).fill("AB").join(":");
  it("address from the browser, default port dropped", () => {
    expect(joinAddress("10.0.0.1:8006")).toBe("10.0.0.1");
    expect(joinAddress("[fd00::1]:8006")).toBe("fd00::1");
    expect(joinAddress("[fd00::1]:9443")).toBe("[fd00::1]:9443");
    expect(joinAddress("node1.example:9443")).toBe("node1.example:9443");
    expect(joinAddress("node1")).toBe("node1");
    // already normalized IPv6 stays whole (its last group may read like the port)
    expect(joinAddress("fd00::1")).toBe("fd00::1");
    expect(joinAddress("fd00::8006")).toBe("fd00::8006");
    expect(joinAddress("[fd00::8006]:8006")).toBe("fd00::8006");
  });
  it("this node's API address as the cluster records it, else the browser's", () => {
    const nodes = [{ name: "n1", api: "[fd00::1]:8006" }, { name: "n2", api: "10.0.0.2:9443" }, { name: "n3", api: "" }];
    expect(joinAddressFor(nodes, "n1", "mgmt.example:8006")).toBe("fd00::1");
    expect(joinAddressFor(nodes, "n2", "mgmt.example:8006")).toBe("10.0.0.2:9443");
    expect(joinAddressFor(nodes, "n3", "mgmt.example:8006")).toBe("mgmt.example");
    expect(joinAddressFor(undefined, "n1", "192.0.2.1:8006")).toBe("192.0.2.1");
  });
  it("the exact command", () => {
    expect(joinCommand("10.0.0.1", fp, "abc-DEF_123")).toBe(`keel join 10.0.0.1 --fingerprint ${fp} --token abc-DEF_123`);
    expect(joinCommand("10.0.0.1", undefined, "t")).toBe("keel join 10.0.0.1 --fingerprint <FINGERPRINT> --token t");
    // the join token's address as the cluster records it (hostd's JoinToken.address)
    expect(joinCommand("[fd00::1]:8006", fp, "t")).toBe(`keel join fd00::1 --fingerprint ${fp} --token t`);
    expect(joinCommand("10.0.0.2:9443", fp, "t")).toBe(`keel join 10.0.0.2:9443 --fingerprint ${fp} --token t`);
    expect(joinCommand("10.0.0.1", fp, "a b'c")).toBe(`keel join 10.0.0.1 --fingerprint ${fp} --token 'a b'\\''c'`);
  });
  it("expiry", () => {
    expect(expiryText(1000 + 3600, 1000)).toBe("expires in 1 h");
    expect(expiryText(1000, 1000)).toBe("expired");
  });
});

describe("node list", () => {
  const info = (node: string) => ({ node } as NodeInfo);
  it("cluster members by node id, online unless unclean", () => {
    const s = { ...three, members: [...three.members, member("n4", 4, { online: true, unclean: true })] };
    expect(nodeList(s, null, "n1")).toEqual([
      { name: "n1", online: true, local: true },
      { name: "n2", online: true, local: false },
      { name: "n3", online: true, local: false },
      { name: "n4", online: false, local: false },
    ]);
  });
  it("standalone: hostd's node list, then the session's node", () => {
    expect(nodeList(standalone, [info("node1")], "node1")).toEqual([{ name: "node1", online: true, local: true }]);
    expect(nodeList(undefined, undefined, "node1")).toEqual([{ name: "node1", online: null, local: true }]);
    expect(nodeList(undefined, undefined, "")).toEqual([]);
  });
  it("selected node: kept while listed, else the local one", () => {
    const l = nodeList(three, null, "n1");
    expect(effectiveNode("n3", l, "n1")).toBe("n3");
    expect(effectiveNode("gone", l, "n1")).toBe("n1");
    expect(effectiveNode(null, l, "n1")).toBe("n1");
    expect(effectiveNode("n3", null, "n1")).toBe("n3");
    expect(effectiveNode(null, null, "n1")).toBe("n1");
  });
  it("a task's node from its UPID", () => {
    expect(upidNode("UPID:node2:00001234:00000007:67500000:vmstart:100:root:")).toBe("node2");
    expect(upidNode("nonsense")).toBeNull();
  });
});

describe("daemons and the config store", () => {
  it("a dead or restarting daemon is not shown as fine", () => {
    expect(daemonBadge({ state: "running" })).toEqual({ label: "Running", tone: "ok" });
    expect(daemonBadge({ state: "restarting" }).tone).toBe("warn");
    expect(daemonBadge({ state: "dead" })).toEqual({ label: "Dead", tone: "bad" });
    expect(daemonBadge({ state: "stopped" }).tone).toBe("off");
    expect(lastExitText({ last_exit: { at: 5, status: "killed by signal 9 (SIGKILL)", pid: 812 } }))
      .toBe("killed by signal 9 (SIGKILL), pid 812");
    expect(lastExitText({ last_exit: null })).toBe("—");
  });
  it("the store says unreachable, held or read-only with the reason", () => {
    const base = { reachable: true, error: null, writable: true, read_only_reason: null, held: null, version: 42,
      syncing: false, members: [1, 2, 3], entries: 7 };
    expect(storeView(undefined)).toBeNull();
    expect(storeView(base)).toEqual({ badge: { label: "Writable", tone: "ok" }, detail: "version 42 · 3 members" });
    const down = storeView({ ...base, reachable: false, writable: false, error: "connecting: refused" });
    expect(down?.badge).toEqual({ label: "Unreachable", tone: "bad" });
    expect(down?.detail).toBe("connecting: refused");
    expect(storeView({ ...base, writable: false, held: "writes held: peer node 2 left" })?.badge.label).toBe("Held");
    const ro = storeView({ ...base, writable: false, read_only_reason: "not quorate" });
    expect(ro).toEqual({ badge: { label: "Read-only", tone: "bad" }, detail: "not quorate" });
  });
});

describe("fence device dialog helpers", () => {
  it("reads key=value lines, skipping blanks and comments", () => {
    expect(parseKeyValues("ip=10.0.0.2\n\n# BMC\n username = admin \nssl=a=b", "parameter"))
      .toEqual({ values: { ip: "10.0.0.2", username: "admin", ssl: "a=b" }, error: null });
  });
  it("names the line that is not a pair, and a name given twice", () => {
    expect(parseKeyValues("ip=1\nlanplus", "parameter").error).toBe('line 2: "lanplus" is not a parameter (write name=value)');
    expect(parseKeyValues("=x", "secret").error).toBe('line 1: "=x" is not a secret (write name=value)');
    expect(parseKeyValues("a=1\na=2", "parameter").error).toBe("line 2: parameter a is given twice");
  });
  it("keeps a secret's spaces", () => {
    expect(parseKeyValues("password= two words \r\n", "secret", { trimValues: false }).values).toEqual({ password: " two words " });
  });
  it("says a test went through an earlier configuration of the device", () => {
    const t = { at: 1000, ok: true, action: "reboot", message: "fenced", device_generation: "g1" };
    expect(fenceTestView(t, 1060, "g1").label).toBe("Passed 1 min ago");
    expect(fenceTestView(t, 1060, "g2")).toMatchObject({ label: "Device changed since the test 1 min ago", tone: "warn" });
  });
  it("takes the agent from the choice or the program typed", () => {
    expect(fenceAgentOf("watchdog", "")).toEqual({ agent: "watchdog", error: null });
    expect(fenceAgentOf("other", " fence_virsh ")).toEqual({ agent: "fence_virsh", error: null });
    expect(fenceAgentOf("other", "virsh").agent).toBeNull();
    expect(fenceAgentOf("other", "fence_x; rm").agent).toBeNull();
  });
});
