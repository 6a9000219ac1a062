import { describe, expect, it } from "vitest";
import { restoreFormError, sortBackups, targetNameError, targetPathError, type BackupInfo } from "../src/pages/Backups";

const b = (id: string, target: string, start_time: number): BackupInfo => ({
  id, vmid: 100, target, kind: "full", live: false, start_time, end_time: start_time, size: 0, verify_state: "unverified",
});

describe("backups", () => {
  it("checks target names and paths as the API does", () => {
    for (const ok of ["main", "a", "nas_1", "x".repeat(64)]) expect(targetNameError(ok)).toBeNull();
    for (const bad of ["", "a b", "a.b", "x".repeat(65)]) expect(targetNameError(bad)).not.toBeNull();
    expect(targetPathError("/srv/backup")).toBeNull();
    for (const bad of ["srv", "/srv/../etc", "/a\nb"]) expect(targetPathError(bad)).not.toBeNull();
  });
  it("checks the restore form", () => {
    expect(restoreFormError("200", "", "local")).toBeNull();
    expect(restoreFormError("200", "web-copy", "local")).toBeNull();
    expect(restoreFormError("99", "", "local")).toMatch(/from 100/);
    expect(restoreFormError("abc", "", "local")).toMatch(/VM ID/);
    expect(restoreFormError("200", "bad name", "local")).toMatch(/name/);
    expect(restoreFormError("200", "", "")).toMatch(/pool/);
  });
  it("lists the newest first", () => {
    expect(sortBackups([b("1", "a", 10), b("3", "a", 30), b("2", "b", 20)]).map((x) => x.id)).toEqual(["3", "2", "1"]);
  });
});
