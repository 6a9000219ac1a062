import { describe, expect, it } from "vitest";
import { failCountText, haFormError, ruleFromForm } from "../src/pages/Ha";
import { historyOf } from "../src/pages/VmHistory";
import type { TaskInfo } from "../src/types";

describe("haFormError", () => {
  it("accepts empty fields (server defaults) and whole numbers in range", () => {
    expect(haFormError("", "")).toBeNull();
    expect(haFormError("0", "1")).toBeNull();
    expect(haFormError("1000000", "1000")).toBeNull();
  });
  it("names the field that is wrong", () => {
    expect(haFormError("x", "")).toMatch(/Priority is a whole number/);
    expect(haFormError("1000001", "")).toMatch(/at most 1000000/);
    expect(haFormError("", "0")).toMatch(/Restarts/);
    expect(haFormError("", "1001")).toMatch(/Restarts/);
    expect(haFormError("", "2.5")).toMatch(/Restarts/);
  });
});

describe("ruleFromForm", () => {
  it("builds the API body", () => {
    expect(ruleFromForm("web", "apart", "100, 101", "", true)).toEqual({ id: "web", kind: "apart", vms: [100, 101], hard: true });
    expect(ruleFromForm("pin", "node-affinity", "100", "node1:10,node2", false)).toEqual({
      id: "pin", kind: "node-affinity", vms: [100], hard: false,
      nodes: [{ node: "node1", priority: 10 }, { node: "node2", priority: 100 }],
    });
  });
  it("says what is wrong", () => {
    expect(ruleFromForm("bad id", "apart", "1,2", "", false)).toMatch(/rule id/);
    expect(ruleFromForm("a", "apart", "100", "", false)).toMatch(/at least 2 VMs/);
    expect(ruleFromForm("a", "together", "100,x", "", false)).toMatch(/VM ids/);
    expect(ruleFromForm("a", "node-affinity", "100", "", false)).toMatch(/Name the nodes/);
    expect(ruleFromForm("a", "node-affinity", "100", "node1:x", false)).toMatch(/NODE:PRIORITY/);
  });
});

describe("failCountText", () => {
  it("lists non-zero fail counts per node, INFINITY spelled out", () => {
    expect(failCountText({})).toBe("");
    expect(failCountText({ fail_counts: { node1: 0 } })).toBe("");
    expect(failCountText({ fail_counts: { node1: 1, node2: 1000000 } })).toBe("node1:1, node2:INFINITY");
  });
});

describe("historyOf", () => {
  const t = (node: string, kind: string, target: string, start: number) =>
    ({ upid: `${node}-${start}`, node, kind, target, user: "root", start_time: start, end_time: start + 1, state: "ok", message: null, progress: null }) as TaskInfo;
  it("keeps this VM's HA and migration tasks of every node, newest first", () => {
    const h = historyOf(100, [
      [t("node1", "vmmigrate", "100", 10), t("node1", "vmstart", "100", 20), t("node1", "vmmigrate", "101", 30)],
      [t("node2", "vmha", "100", 40)],
    ]);
    expect(h.map((x) => `${x.node}:${x.kind}`)).toEqual(["node2:vmha", "node1:vmmigrate"]);
  });
});
