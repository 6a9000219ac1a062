import { describe, expect, it } from "vitest";
import { aclPathProblem, can, expireFromDays, passwordProblem, pathChain, privsAt, whyNot, type Permissions } from "../src/access";

const p: Permissions = {
  userid: "bob",
  paths: { "/": ["VM.Audit"], "/vms": ["VM.Audit"], "/vms/100": ["VM.Audit", "VM.Console", "VM.PowerMgmt"], "/access": [] },
};

describe("permissions", () => {
  it("walks up to the nearest listed path", () => {
    expect(pathChain("/vms/100")).toEqual(["/vms/100", "/vms", "/"]);
    expect(privsAt(p, "/vms/100")).toContain("VM.PowerMgmt");
    expect(privsAt(p, "/vms/101")).toEqual(["VM.Audit"]);
    expect(privsAt(p, "/storage/local")).toEqual(["VM.Audit"]);
    // an explicit empty list is an answer, not a gap
    expect(privsAt(p, "/access")).toEqual([]);
  });
  it("says why a control is disabled", () => {
    expect(can(p, "VM.PowerMgmt", "/vms/100")).toBe(true);
    expect(can(p, "VM.PowerMgmt", "/vms/101")).toBe(false);
    expect(whyNot(p, "VM.PowerMgmt", "/vms/101")).toBe("Not permitted: this needs VM.PowerMgmt on /vms/101");
    expect(whyNot(p, "VM.Console", "/vms/100")).toBeNull();
    // unknown yet: allowed (the server decides)
    expect(can(undefined, "Sys.Modify", "/")).toBe(true);
  });
  it("expiry in days", () => {
    expect(expireFromDays("", 0)).toBeUndefined();
    expect(expireFromDays("2", 1000_000)).toBe(1000 + 2 * 86400);
    expect(expireFromDays("0")).toBeNull();
    expect(expireFromDays("x")).toBeNull();
  });
  it("ACL paths like the API", () => {
    for (const ok of ["/", "/vms", "/vms/100", "/nodes/n1", "/storage/local", "/cluster", "/access"]) expect(aclPathProblem(ok)).toBeNull();
    for (const bad of ["", "vms", "/vms/x", "/vms/0", "/foo", "/nodes/a/b", "/vms/"]) expect(aclPathProblem(bad)).not.toBeNull();
  });
});


describe("passwordProblem (mirrors keel-api's validate_password)", () => {
  it("refuses short, control characters and a mismatch; accepts a good pair", () => {
    expect(passwordProblem("short", "short")).toMatch("at least 8 characters (this one has 5)");
    expect(passwordProblem("long enough\u0007", "long enough\u0007")).toMatch("control characters");
    expect(passwordProblem("long enough", "long enougH")).toMatch("differ");
    expect(passwordProblem("long enough", "long enough")).toBeNull();
  });
});
