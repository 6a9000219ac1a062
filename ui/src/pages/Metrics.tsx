import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { get, np } from "../api";
import { ErrorBox, Loading } from "../components";
import { usePoll } from "../hooks";
import { formatBytes } from "../logic";
import { CHARTS, type ChartDef, type Field, type MetricsRange, type MetricsSeries, RANGES, chartData, latest, pollMs, xWindow } from "../metrics";

function fmt(unit: ChartDef["unit"], v: number | null | undefined): string {
  if (v === null || v === undefined) return "—";
  if (unit === "percent") return `${v.toFixed(1)}%`;
  return unit === "rate" ? `${formatBytes(Math.round(v))}/s` : formatBytes(Math.round(v));
}

/** The y axis starts at 0; CPU spans at least 0–100 %, bytes at least 0–1 KiB (whole ticks). */
function yRange(unit: ChartDef["unit"], max: number | null): [number, number] {
  const m = max !== null && Number.isFinite(max) ? max : 0;
  return [0, unit === "percent" ? Math.max(100, m) : Math.max(m * 1.1, 1024)];
}

/** One uPlot chart; its data attributes say how many points it draws (the browser test). */
function Chart({ def, series }: { def: ChartDef; series: MetricsSeries }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latestSeries = useRef(series);
  latestSeries.current = series;
  const data = chartData(series, def);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(el.clientWidth, 240),
      height: 170,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true, range: (u) => xWindow(u.data[0] as number[], latestSeries.current) },
        y: { range: (_u, _min, max) => yRange(def.unit, max) } },
      axes: [{}, { size: 70, values: (_u, ticks) => ticks.map((t) => fmt(def.unit, t)) }],
      series: [{}, ...def.lines.map((l) => ({
        label: l.label, stroke: l.color, width: 2, spanGaps: false,
        value: (_u: uPlot, v: number | null) => fmt(def.unit, v),
        points: { show: true, size: 4 },
      }))],
    };
    const u = new uPlot(opts, data as uPlot.AlignedData, el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(el.clientWidth, 240), height: 170 }));
    ro.observe(el);
    return () => { ro.disconnect(); u.destroy(); plot.current = null; };
  }, [def.id]);
  useEffect(() => { plot.current?.setData(data as uPlot.AlignedData); }, [series]);
  const points = data[0].length;
  const now = (f: Field) => {
    const v = latest(series, f);
    return fmt(def.unit, v === null ? null : def.unit === "percent" ? v * 100 : v);
  };
  return (
    <div class="panel chart-panel">
      <div class="panel-head"><h3>{def.title}</h3>
        <span class="muted small">now: {def.lines.map((l) => `${l.label} ${now(l.field)}`).join(" · ")}</span>
      </div>
      <div ref={box} class="chart" data-testid={`chart-${def.id}`} data-points={points} role="img"
        aria-label={`${def.title} over the last ${series.range}: ${points} points`} />
    </div>
  );
}

/** Performance graphs of the node (`path` = "") or a VM (`/vms/ID`), with a range selector. */
export function Metrics({ path, what }: { path: string; what: string }) {
  const [range, setRange] = useState<MetricsRange>("hour");
  const m = usePoll(() => get<MetricsSeries>(np(`${path}/metrics?range=${range}`)), pollMs(range), [path, range]);
  const s = m.data?.range === range ? m.data : undefined;
  return (
    <section aria-label={`Performance of ${what}`}>
      <div class="toolbar" role="radiogroup" aria-label="Time range">
        {RANGES.map(([r, label]) => (
          <button type="button" role="radio" aria-checked={r === range} class={`btn${r === range ? " btn-primary" : ""}`}
            onClick={() => setRange(r)}>{label}</button>
        ))}
        {s && <span class="muted small">one point per {s.step_s >= 60 ? `${s.step_s / 60} min` : `${s.step_s} s`}, sampled every {s.interval_s} s</span>}
      </div>
      <ErrorBox error={m.error} title="Cannot read the performance graphs" />
      {!s && !m.error && <Loading what="performance graphs" />}
      {s && s.points.length === 0 && <p class="muted" data-testid="metrics-empty">No samples in the last {range} yet{path ? " (a VM is sampled only while it runs)" : ""}.</p>}
      {s && s.points.length > 0 && (
        <div class="grid-2 charts">
          {CHARTS.map((c) => <Chart def={c} series={s} />)}
        </div>
      )}
    </section>
  );
}
