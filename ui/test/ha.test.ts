import { describe, expect, it } from "vitest";
import { haFormError, ruleFromForm } from "../src/pages/Ha";

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
