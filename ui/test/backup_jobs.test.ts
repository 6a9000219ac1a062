import { describe, expect, it } from "vitest";
import { scheduleError } from "../src/pages/BackupJobs";

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
