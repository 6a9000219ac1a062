import { describe, expect, it } from "vitest";
import { networkBlock, networkFormError } from "../src/pages/Networks";
import type { NetworkInfo } from "../src/types";

const net = (over: Partial<NetworkInfo>): NetworkInfo => ({
  name: "lab", kind: "nat", bridge: "keel-lab", active: true, autostart: true, cidr: "10.9.0.1/24", used_by: [], ...over,
});

describe("networks", () => {
  it("blocks stop only for running users, delete for any user, both for host bridges", () => {
    const stopped = { vmid: 101, name: "db", running: false };
    const running = { vmid: 100, name: "web", running: true };
    expect(networkBlock(net({}), "stop")).toBeNull();
    expect(networkBlock(net({ used_by: [stopped] }), "stop")).toBeNull();
    expect(networkBlock(net({ used_by: [stopped] }), "delete")).toMatch(/101 \(db\)/);
    expect(networkBlock(net({ used_by: [running, stopped] }), "stop")).toBe("Running VMs use it: 100 (web)");
    expect(networkBlock(net({ kind: "host_bridge" }), "stop")).toMatch(/host bridge/);
  });
  it("checks the create form as the API does", () => {
    expect(networkFormError("lab", "nat", "10.9.0.1/24", "")).toBeNull();
    expect(networkFormError("lan+1", "bridge", "", "br0")).toBeNull();
    for (const bad of ["", ".x", "a b", "x".repeat(51)]) expect(networkFormError(bad, "nat", "10.9.0.1/24", "")).not.toBeNull();
    expect(networkFormError("lab", "nat", "10.9.0.1", "")).toMatch(/prefix/);
    expect(networkFormError("lab", "bridge", "", "")).toMatch(/host bridge/);
  });
});
