// Run durations over the metrics window (uPlot, canvas): one bar per run, oldest left,
// cached runs and non-cached runs in two colours, and each group's p50 and p95 as lines.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartRun {
  dagId: string;
  durationMs: number | null;
  cacheEnabled: boolean;
  status: string;
}

export interface GroupLines {
  p50Ms: number | null;
  p95Ms: number | null;
}

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/** The chart's data: x = run number (oldest first), durations in seconds, null gaps. */
export function chartData(runs: ChartRun[], cached: GroupLines, nonCached: GroupLines): uPlot.AlignedData {
  const ordered = [...runs].reverse();
  const secs = (ms: number | null | undefined): number | null => (ms === null || ms === undefined ? null : ms / 1000);
  const ok = (r: ChartRun): boolean => r.status === "SUCCEEDED" && r.durationMs !== null;
  const line = (v: number | null): (number | null)[] => ordered.map(() => secs(v));
  return [
    ordered.map((_, i) => i + 1),
    ordered.map((r) => (r.cacheEnabled && ok(r) ? secs(r.durationMs) : null)),
    ordered.map((r) => (!r.cacheEnabled && ok(r) ? secs(r.durationMs) : null)),
    line(cached.p50Ms), line(cached.p95Ms), line(nonCached.p50Ms), line(nonCached.p95Ms),
  ];
}

/** Whole run numbers, at most ~12 of them. */
export function runTicks(n: number): number[] {
  const step = Math.max(1, Math.ceil(n / 12));
  const out: number[] = [];
  for (let i = 1; i <= n; i += step) out.push(i);
  return out;
}

export class DurationChart {
  private plot: uPlot | null = null;
  private readonly resize: ResizeObserver;

  constructor(private readonly host: HTMLElement) {
    this.resize = new ResizeObserver(() => {
      this.plot?.setSize({ width: this.width(), height: 260 });
    });
    this.resize.observe(host);
  }

  private width(): number {
    return Math.max(320, this.host.clientWidth - 16);
  }

  update(runs: ChartRun[], cached: GroupLines, nonCached: GroupLines): void {
    const data = chartData(runs, cached, nonCached);
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    const cachedColour = cssVar("--cached", "#0f766e");
    const uncachedColour = cssVar("--uncached", "#9a3412");
    const fg = cssVar("--fg", "#1a1d21");
    const grid = cssVar("--border", "#c9ced6");
    const bars = uPlot.paths.bars!({ size: [0.6, 48] });
    const fmt = (_: uPlot, v: number | null): string => (v === null || v === undefined ? "—" : `${v.toFixed(2)} s`);
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    this.plot = new uPlot({
      width: this.width(),
      height: 260,
      // Half a run of room either side, so the first and last bars are drawn whole.
      scales: { x: { time: false, range: (u) => [0.5, Math.max(1, u.data[0].length) + 0.5] }, y: { range: (_u, _min, max) => [0, Math.max(0.1, (max ?? 0) * 1.15)] } },
      axes: [
        { ...axis, label: "run (oldest → newest)", splits: (u) => runTicks(u.data[0].length),
          values: (_u, ticks) => ticks.map((t) => `#${t}`) },
        { ...axis, label: "duration", values: (_u, ticks) => ticks.map((t) => `${t} s`), size: 60 },
      ],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      series: [
        { label: "run", value: (_u, v) => (v === null ? "—" : `#${v}`) },
        { label: "cached", fill: cachedColour, stroke: cachedColour, paths: bars, points: { show: false }, value: fmt },
        { label: "not cached", fill: uncachedColour, stroke: uncachedColour, paths: bars, points: { show: false }, value: fmt },
        { label: "cached p50", stroke: cachedColour, width: 2, points: { show: false }, value: fmt },
        { label: "cached p95", stroke: cachedColour, width: 2, dash: [6, 4], points: { show: false }, value: fmt },
        { label: "not cached p50", stroke: uncachedColour, width: 2, points: { show: false }, value: fmt },
        { label: "not cached p95", stroke: uncachedColour, width: 2, dash: [6, 4], points: { show: false }, value: fmt },
      ],
    }, data, this.host);
  }

  destroy(): void {
    this.resize.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }
}
