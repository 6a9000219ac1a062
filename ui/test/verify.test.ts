import { describe, expect, it } from "vitest";
import { verifySummary, type VerifyReport } from "../src/pages/ClusterVerify";

const r = (errors: number, warnings: number): VerifyReport => ({
  cluster: "c", checked_by: "n1", nodes: ["n1", "n2", "n3"], findings: [], errors, warnings,
});

describe("verify summary", () => {
  it("is red on any error, amber on warnings only, green when clean", () => {
    expect(verifySummary(r(1, 2))).toEqual({ tone: "bad", text: "1 error(s), 2 warning(s) on 3 node(s)" });
    expect(verifySummary(r(0, 3)).tone).toBe("warn");
    expect(verifySummary(r(0, 0))).toEqual({ tone: "ok", text: "No findings on 3 node(s)" });
  });
});
