// The metrics panel of one DAG name: the seed page's cards (cached runs: count and average
// duration; non-cached runs: count and average duration; the last run's task load) and
// table (run id, start time, duration, cache enabled, cache hit, status, tasks, nodes), a
// chart of durations with p50/p95 lines, and the cache's speedup. Refreshed every few
// seconds, so a submission shows up here as soon as its run ends.
import type { Api } from "../api";
import { runPath } from "../router";
import { badge, bytes, duration, h, notice, poller, when } from "../ui";
import { DurationChart } from "./chart";
import { failure } from "./runs";

interface Group {
  count: number;
  succeeded: number;
  meanMs: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  cacheHitRatio: number | null;
  bytesSaved: number;
  bytesFetched: number;
}

interface RunMetrics {
  dagId: string;
  dagName: string;
  status: string;
  startTime: string | null;
  endTime: string | null;
  durationMs: number | null;
  cacheEnabled: boolean;
  cacheHit: string;
  taskCount: number;
  taskSucceeded: number;
  taskFailed: number;
  taskUpstreamFailed: number;
  nodes: string[];
}

interface Metrics {
  dagName: string;
  limit: number;
  runs: RunMetrics[];
  summary: {
    runs: number;
    cached: Group;
    nonCached: Group;
    speedup: number | null;
    lastRun: { dagId: string; status: string; load: string; succeeded: number; total: number; failed: number; upstreamFailed: number } | null;
  };
}

const REFRESH_MS = 3000;
const LIMITS = [10, 20, 50, 100];

function card(id: string, title: string, big: string, ...lines: (string | HTMLElement)[]): HTMLElement {
  return h("section", { class: "card", id, "aria-labelledby": `${id}-title` },
    h("h3", { id: `${id}-title` }, title),
    h("p", { class: "big" }, big),
    ...lines.map((l) => h("p", {}, l)));
}

export function cards(m: Metrics): HTMLElement {
  const { cached, nonCached, speedup, lastRun } = m.summary;
  const last = lastRun
    ? card("card-last", "Last run's task load", `${lastRun.succeeded}/${lastRun.total} ok`,
      `${lastRun.failed} failed${lastRun.upstreamFailed ? `, ${lastRun.upstreamFailed} upstream failed` : ""}`,
      h("span", {}, badge(lastRun.status)))
    : card("card-last", "Last run's task load", "—", "no run yet");
  const gain = speedup !== null
    ? card("card-speedup", "Cache speedup", `${speedup.toFixed(2)}×`,
      speedup >= 1 ? `cached runs take ${Math.round((1 - 1 / speedup) * 100)}% less time` : "cached runs are slower in this window",
      cached.bytesSaved ? `${bytes(cached.bytesSaved)} not fetched again` : "")
    : card("card-speedup", "Cache speedup", "—", "needs successful runs with and without the cache");
  return h("div", { class: "cards", id: "metrics-cards" },
    card("card-cached", "Cached runs", String(cached.count), `Avg duration: ${duration(cached.meanMs)}`,
      cached.cacheHitRatio !== null ? `Cache hit ratio: ${Math.round(cached.cacheHitRatio * 100)}%` : ""),
    card("card-uncached", "Non-cached runs", String(nonCached.count), `Avg duration: ${duration(nonCached.meanMs)}`),
    last, gain);
}

export function table(m: Metrics): HTMLElement {
  const head = ["Run ID", "Start Time", "Duration", "Cache Enabled", "Cache Hit", "Status", "Tasks", "Nodes"];
  return h("div", { class: "table-wrap" }, h("table", { id: "metrics-table" },
    h("caption", { class: "muted", style: "text-align:left" }, `The last ${m.runs.length} runs of ${m.dagName}, newest first`),
    h("thead", {}, h("tr", {}, ...head.map((t) => h("th", { scope: "col", class: t === "Duration" ? "num" : null }, t)))),
    h("tbody", {}, ...m.runs.map((r) => h("tr", {},
      h("td", {}, h("a", { href: runPath(r.dagId), class: "mono", "aria-label": `Run ${r.dagId}` }, r.dagId.slice(0, 12))),
      h("td", {}, when(r.startTime)),
      h("td", { class: "num" }, duration(r.durationMs)),
      h("td", {}, r.cacheEnabled ? "Yes" : "No"),
      h("td", { class: `cache-${r.cacheHit.toLowerCase().replace("/", "")}` }, r.cacheHit),
      h("td", {}, badge(r.status)),
      h("td", {}, `${r.taskSucceeded}/${r.taskCount}`),
      h("td", {}, r.nodes.length ? r.nodes.join(", ") : "—"))))));
}

function percentiles(m: Metrics): string {
  const part = (label: string, g: Group): string | null =>
    g.p50Ms === null ? null : `${label}: p50 ${duration(g.p50Ms)}, p95 ${duration(g.p95Ms)}`;
  return [part("cached", m.summary.cached), part("not cached", m.summary.nonCached)].filter(Boolean).join("; ");
}

export function mountMetrics(root: HTMLElement, dagName: string, api: Api): () => void {
  let limit = Number(new URLSearchParams(location.search).get("limit")) || 20;
  if (!LIMITS.includes(limit)) limit = 20;
  let alive = true;
  let ctrl: AbortController | null = null;
  let chart: DurationChart | null = null;

  const limitSelect = h("select", { id: "metrics-limit" },
    ...LIMITS.map((n) => h("option", { value: n, selected: n === limit }, `last ${n} runs`)));
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const top = h("div", {});
  const chartHost = h("div", { class: "chart", id: "metrics-chart", role: "img" });
  const chartNote = h("p", { class: "muted", id: "chart-note" });
  const figure = h("figure", { style: "margin:1rem 0", hidden: true },
    h("figcaption", { id: "chart-caption" }, h("strong", {}, "Run durations"),
      " — ", h("span", { class: "legend-key", style: "background:var(--cached)" }), "cached ",
      h("span", { class: "legend-key", style: "background:var(--uncached)" }), "not cached; solid line p50, dashed p95"),
    chartHost, chartNote);
  const bottom = h("div", {});

  root.replaceChildren(
    h("h1", {}, "Metrics of ", h("span", { class: "mono", title: dagName }, dagName)),
    h("div", { class: "filters" },
      h("div", { class: "field" }, h("label", { for: "metrics-limit" }, "Window"), limitSelect),
      h("a", { class: "button secondary", href: `/?name=${encodeURIComponent(dagName)}` }, "Runs of this DAG"),
      h("a", { class: "button", href: "/submit" }, "Submit a DAG")),
    status, top, figure, bottom);

  function render(m: Metrics): void {
    if (!m.runs.length) {
      figure.hidden = true;
      top.replaceChildren(notice("empty", h("p", {}, h("strong", {}, `No runs of ${m.dagName} yet. `),
        h("a", { href: "/submit" }, "Submit one"), " (the DAG's ", h("code", {}, "dagName"), " must be ",
        h("code", {}, m.dagName), "); its metrics appear here when it ends.")));
      bottom.replaceChildren();
      return;
    }
    top.replaceChildren(cards(m));
    figure.hidden = false;
    const note = percentiles(m);
    chartNote.textContent = note ? `Successful runs only. ${note}.` : "Successful runs only.";
    chartHost.setAttribute("aria-label", `Bar chart of the durations of the last ${m.runs.length} runs. ${note}`);
    chart ??= new DurationChart(chartHost);
    chart.update(m.runs, m.summary.cached, m.summary.nonCached);
    bottom.replaceChildren(h("h2", {}, "Runs"), table(m));
  }

  async function load(quiet: boolean): Promise<void> {
    ctrl?.abort();
    const mine = (ctrl = new AbortController());
    if (!quiet) status.textContent = "Loading…";
    try {
      const m = await api.get<Metrics>(`/dags/${encodeURIComponent(dagName)}/metrics?limit=${limit}`, mine.signal);
      if (!alive || mine.signal.aborted) return;
      status.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes by itself.`;
      render(m);
    } catch (err) {
      if (!alive || mine.signal.aborted) return;
      status.textContent = "";
      top.querySelector(":scope > .notice.error")?.remove();
      top.prepend(failure(err, `the metrics of ${dagName}`, () => void load(false)));
    }
  }

  const refresh = poller(REFRESH_MS, () => load(true));

  limitSelect.addEventListener("change", () => {
    limit = Number(limitSelect.value);
    history.replaceState(null, "", `${location.pathname}?limit=${limit}`);
    void load(false);
  });
  void load(false);
  refresh.restart();
  return () => {
    alive = false;
    ctrl?.abort();
    refresh.stop();
    chart?.destroy();
  };
}
