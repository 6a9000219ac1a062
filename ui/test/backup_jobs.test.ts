import { describe, expect, it } from "vitest";
import { lastRuns, scheduleError, type BackupJob } from "../src/pages/BackupJobs";

describe("backup job schedules", () => {
  it("accepts what hostd's schedule grammar accepts", () => {
    for (const ok of ["daily", "Hourly", "minutely", "weekly", "monthly", "sat 02:30", "Saturday 02:30",
      "mon..fri 21:00", "mon,tue 21:00", "*:0/15", "*/5", "12:00", "8..17/3:30", "0,13:45", "sun"]) {
      expect(scheduleError(ok), ok).toBeNull();
    }
  });
  it("refuses what hostd refuses, saying why", () => {
    const cases: [string, string][] = [
      ["", "Give a schedule"],
      ["mon..fry 21:00", "\"fry\" is not a weekday"],
      ["fri..mon 21:00", "runs backwards"],
      ["25:00", "hours"],
      ["12:60", "minutes"],
      ["*:0/0", "step"],
      ["daily 02:00 x", "Not understood"],
      ["every 6h", "not a weekday"],
    ];
    for (const [s, part] of cases) expect(scheduleError(s), s).toContain(part);
  });
});

describe("a job's last runs", () => {
  const config = { id: "j", vms: [101], all_vms: false, target: "t", schedule: "daily", enabled: true };
  it("a node's job: its one last run, no node name", () => {
    const j: BackupJob = { config, last_run: { time: 1, upid: "U1", state: "ok" }, scope: "node" };
    expect(lastRuns(j)).toEqual([{ time: 1, upid: "U1", state: "ok" }]);
    expect(lastRuns({ config, scope: "node" })).toEqual([]);
  });
  it("a cluster job: every node's, by node name", () => {
    const j: BackupJob = {
      config, scope: "cluster", last_run: { time: 5, upid: "U2", state: "ok" },
      node_runs: [
        { node: "node2", time: 5, upid: "U2", state: "ok" },
        { node: "node1", time: 9, upid: "U9", state: "error", message: "VM 101: target full" },
      ],
    };
    expect(lastRuns(j).map((r) => `${r.node} ${r.state}`)).toEqual(["node1 error", "node2 ok"]);
  });
});
