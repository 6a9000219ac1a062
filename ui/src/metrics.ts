// Performance graphs: the API's metrics series (GET …/metrics?range=) turned into the columns
// uPlot draws. Pure functions, unit-tested in test/metrics.test.ts.

export type MetricsRange = "hour" | "day" | "week" | "month";
export const RANGES: [MetricsRange, string][] = [["hour", "Hour"], ["day", "Day"], ["week", "Week"], ["month", "Month"]];

export interface MetricsPoint {
  t: number;
  cpu?: number;
  mem_used?: number;
  mem_total?: number;
  disk_read?: number;
  disk_write?: number;
  net_in?: number;
  net_out?: number;
}

export interface MetricsSeries {
  range: MetricsRange;
  step_s: number;
  interval_s: number;
  points: MetricsPoint[];
}

export type Field = Exclude<keyof MetricsPoint, "t">;

/** One chart: its title, unit and the fields it draws (each a line). */
export interface ChartDef {
  id: string;
  title: string;
  unit: "percent" | "bytes" | "rate";
  lines: { field: Field; label: string; color: string }[];
}

export const CHARTS: ChartDef[] = [
  { id: "cpu", title: "CPU", unit: "percent", lines: [{ field: "cpu", label: "CPU", color: "#1f6fb2" }] },
  {
    id: "memory", title: "Memory", unit: "bytes", lines: [
      { field: "mem_used", label: "Used", color: "#1f6fb2" },
      { field: "mem_total", label: "Total", color: "#8a8f98" },
    ],
  },
  {
    id: "disk", title: "Disk I/O", unit: "rate", lines: [
      { field: "disk_read", label: "Read", color: "#1f6fb2" },
      { field: "disk_write", label: "Write", color: "#c2571a" },
    ],
  },
  {
    id: "net", title: "Network", unit: "rate", lines: [
      { field: "net_in", label: "In", color: "#1f6fb2" },
      { field: "net_out", label: "Out", color: "#c2571a" },
    ],
  },
];

/**
 * uPlot's columns: the times, then one column per line of the chart. CPU becomes percent.
 * A gap of more than one step between points (hostd or the VM was down) gets a null point,
 * so the line breaks instead of bridging the gap.
 */
export function chartData(s: MetricsSeries, chart: ChartDef): (number | null)[][] {
  const xs: number[] = [];
  const cols: (number | null)[][] = chart.lines.map(() => []);
  let prev: number | null = null;
  for (const p of s.points) {
    if (prev !== null && p.t - prev > s.step_s) {
      xs.push(prev + s.step_s);
      cols.forEach((c) => c.push(null));
    }
    xs.push(p.t);
    chart.lines.forEach((l, i) => {
      const v = p[l.field];
      cols[i].push(v === undefined || v === null ? null : chart.unit === "percent" ? v * 100 : v);
    });
    prev = p.t;
  }
  return [xs, ...cols];
}

/** Seconds each range spans (its ring: step × points). */
export const SPAN_S: Record<MetricsRange, number> = { hour: 3600, day: 86400, week: 7 * 86400, month: 31 * 86400 };

/** The x axis shows the whole range, ending one step after the newest point. */
export function xWindow(xs: number[], s: MetricsSeries): [number, number] {
  const end = (xs.length ? xs[xs.length - 1] : Math.floor(Date.now() / 1000)) + s.step_s;
  return [end - SPAN_S[s.range], end];
}

/** The newest value of a field, or null. */
export function latest(s: MetricsSeries, field: Field): number | null {
  for (let i = s.points.length - 1; i >= 0; i--) {
    const v = s.points[i][field];
    if (v !== undefined && v !== null) return v;
  }
  return null;
}

/** How often a range's graph is re-read (ms): about once per point, at least every 10 s. */
export function pollMs(range: MetricsRange): number {
  return range === "hour" ? 10_000 : 60_000;
}
