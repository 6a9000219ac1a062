import { describe, expect, it } from "vitest";
import { CHARTS, chartData, latest, type MetricsSeries } from "../src/metrics";

const s: MetricsSeries = {
  range: "hour", step_s: 30, interval_s: 10,
  points: [
    { t: 1000 * 30, cpu: 0.25, mem_used: 100, mem_total: 400 },
    { t: 1001 * 30, cpu: 0.5, mem_used: 120, mem_total: 400, disk_read: 10 },
    { t: 1005 * 30, cpu: 0.1, mem_total: 400 },
  ],
};

describe("metrics charts", () => {
  it("turns points into uPlot columns, CPU in percent, gaps broken", () => {
    const cpu = CHARTS.find((c) => c.id === "cpu")!;
    expect(chartData(s, cpu)).toEqual([[30000, 30030, 30060, 30150], [25, 50, null, 10]]);
    const mem = CHARTS.find((c) => c.id === "memory")!;
    expect(chartData(s, mem)).toEqual([[30000, 30030, 30060, 30150], [100, 120, null, null], [400, 400, null, 400]]);
  });
  it("latest value of a field", () => {
    expect(latest(s, "mem_used")).toBe(120);
    expect(latest(s, "net_in")).toBeNull();
    expect(chartData({ ...s, points: [] }, CHARTS[0])).toEqual([[], []]);
  });
});
