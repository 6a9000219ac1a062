import { describe, expect, it } from "vitest";
import { depths, snapshotNameError, type SnapshotInfo } from "../src/pages/Snapshots";

const s = (name: string, parent?: string): SnapshotInfo => ({
  name, parent, children: [], created: 0, vm_state: "stopped", has_memory: false, current: false,
});

describe("snapshots", () => {
  it("checks names as the API does", () => {
    for (const ok of ["a", "before-upgrade", "A_1", "x".repeat(40)]) expect(snapshotNameError(ok)).toBeNull();
    for (const bad of ["", "1abc", "-a", "a b", "a.b", "x".repeat(41)]) expect(snapshotNameError(bad)).not.toBeNull();
  });
  it("indents children under their parents", () => {
    expect(depths([s("A"), s("B", "A"), s("C", "A"), s("D", "C"), s("E")])).toEqual({ A: 0, B: 1, C: 1, D: 2, E: 0 });
    // a parent not listed (deleted meanwhile) makes a root
    expect(depths([s("X", "gone")])).toEqual({ X: 0 });
  });
});
