// The run view at /runs/{dagId}: header with cancel and retry, the graph, the details of a
// task, and the timeline, live from the run's SSE feed. Events only mark what changed;
// one animation frame paints it, so a 1,000-task replay never re-renders the page per event.
import "./run.css";
import { ApiError, Unreachable, seg, type Api } from "../api";
import { badge, duration, h, notice } from "../ui";
import { DetailsPanel } from "./details";
import { RunHeader } from "./header";
import { GraphView, type NodeInfo } from "./graph";
import { elkLayout, quickLayout, type Layout } from "./layout";
import { RunModel, groupState } from "./model";
import { Feed, type FeedState } from "./sse";
import { TimelineView } from "./timeline";
import type { FeedEvent, RunStatus } from "./types";
import { TERMINAL } from "./types";

/** How long the graph waits for ELK before drawing the quick layout meanwhile. */
const ELK_GRACE_MS = 250;

export function mountRunView(root: HTMLElement, dagId: string, api: Api): () => void {
  const view = new RunView(root, dagId, api);
  view.start();
  return () => view.destroy();
}

class RunView {
  private readonly model: RunModel;
  private readonly el: HTMLElement;
  private feed: Feed | null = null;
  private disposed = false;
  private frame = 0;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private layoutSeq = 0;
  private lastSnapshot = 0;
  private readonly t0 = performance.now();
  private graph!: GraphView;
  private timeline!: TimelineView;
  private details!: DetailsPanel;
  private conn!: HTMLElement;
  private returnFocus: HTMLElement | null = null;
  private header!: RunHeader;
  private received = 0;
  private readonly revealed = new Set<string>();
  private readonly onToken = (): void => { if (!this.model.loaded) void this.load(); else this.feed?.restart(); };

  constructor(private readonly root: HTMLElement, private readonly dagId: string, private readonly api: Api) {
    this.model = new RunModel(dagId);
    this.el = h("div", { class: "rv", "data-dag-id": dagId });
  }

  start(): void {
    this.root.replaceChildren(this.el);
    this.el.append(h("h1", {}, "Run ", h("span", { class: "mono" }, this.dagId)), notice("info", "Loading the run…"));
    this.api.addEventListener("token", this.onToken);
    void this.load();
  }

  destroy(): void {
    this.disposed = true;
    this.feed?.stop();
    this.details?.destroy();
    cancelAnimationFrame(this.frame);
    if (this.ticker) clearInterval(this.ticker);
    this.api.removeEventListener("token", this.onToken);
  }

  private path(suffix = ""): string {
    return `/dags/${seg(this.dagId)}${suffix}`;
  }

  private async load(attempt = 0): Promise<void> {
    let status: RunStatus;
    try {
      status = await this.api.get<RunStatus>(this.path());
    } catch (err) {
      if (this.disposed) return;
      if (err instanceof ApiError && (err.status === 404 || err.status === 400)) return this.notFound();
      if (err instanceof ApiError && err.needsToken) {
        return this.problem("An API token is needed to see this run. Paste one in the form above (helios dev prints how).");
      }
      const why = err instanceof Unreachable ? "The Helios API is unreachable" : `The run could not be read (${String(err)})`;
      const delay = Math.min(8000, 500 * 2 ** attempt);
      this.problem(`${why}; trying again in ${Math.round(delay / 1000)} s.`);
      setTimeout(() => { if (!this.disposed) void this.load(attempt + 1); }, delay);
      return;
    }
    if (this.disposed) return;
    this.lastSnapshot = performance.now();
    this.model.applySnapshot(status);
    this.build();
    this.schedule();
    this.feed = new Feed(this.api, this.path("/events"), {
      onOpen: (reconnect) => void this.resync(reconnect),
      onMessage: (msg) => {
        // What the feed delivered, on the element: a look in devtools shows where it is.
        this.el.dataset.events = String(++this.received);
        if (msg.id !== null) this.el.dataset.lastEventId = msg.id;
        this.onMessage(msg.data);
      },
      onState: (state) => this.onFeedState(state),
    });
    this.feed.start();
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  private notFound(): void {
    this.el.replaceChildren(
      h("h1", {}, "Run not found"),
      notice("error", h("p", {}, "There is no run ", h("code", {}, this.dagId), "."),
        h("p", {}, "The id may be mistyped, or the run was removed by retention. ", h("a", { href: "/" }, "See all runs"), ".")));
    this.el.dataset.state = "notfound";
  }

  private problem(text: string): void {
    this.el.replaceChildren(h("h1", {}, "Run ", h("span", { class: "mono" }, this.dagId)), notice("error", text));
  }

  /** A (re)connected feed: re-read the status, the feed's replay fills in the history. */
  private async resync(reconnect: boolean): Promise<void> {
    if (!reconnect && performance.now() - this.lastSnapshot < 2000) return;
    try {
      const status = await this.api.get<RunStatus>(this.path());
      if (this.disposed) return;
      this.lastSnapshot = performance.now();
      this.model.applySnapshot(status);
      this.schedule();
    } catch {
      // The feed itself reports the connection; the next reconnect reads again.
    }
  }

  private onMessage(data: string): void {
    let ev: FeedEvent;
    try {
      ev = JSON.parse(data) as FeedEvent;
    } catch {
      return;
    }
    if (this.model.apply(ev)) this.schedule();
  }

  private onFeedState(s: FeedState): void {
    if (this.disposed || !this.conn) return;
    this.el.dataset.feed = s.kind;
    let text: string;
    switch (s.kind) {
      case "connecting": text = s.attempt > 1 ? `Reconnecting (attempt ${s.attempt})…` : "Connecting to the live feed…"; break;
      case "live": text = "Live: following the run's events."; break;
      case "waiting": text = `Connection lost (${s.why}); reconnecting in ${duration(s.delayMs)} (attempt ${s.attempt}).`; break;
      case "ended": text = "The run has ended; its feed is closed."; break;
      case "notfound": text = "The run's feed is gone (the run was removed)."; break;
      case "auth": text = "The API refused the token for the live feed; paste a token above to resume."; break;
    }
    this.conn.textContent = text;
  }

  private build(): void {
    this.header = new RunHeader(this.api, this.model, this.el, this.path(), {
      gone: () => this.disposed,
      retried: (status) => {
        this.model.applySnapshot(status);
        this.schedule();
        this.feed?.restart();
      },
    });
    this.conn = h("p", { class: "rv-conn", role: "status" }, "Connecting to the live feed…");
    this.graph = new GraphView((group, kb) => this.openGroup(group, kb));
    this.timeline = new TimelineView((task, kb) => this.openTask(task, kb));
    this.details = new DetailsPanel(this.api, this.model, (task) => this.openTask(task, true), () => this.closeDetails());
    const legend = h("ul", { class: "rv-legend", "aria-label": "States" },
      ...["PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "UPSTREAM_FAILED", "CANCELLED", "SKIPPED"]
        .map((s) => h("li", {}, badge(s))));
    const tlLegend = h("ul", { class: "rv-legend", "aria-label": "Timeline segments" },
      ...(["queued", "starting", "running"] as const).map((k) => h("li", {}, h("span", { class: `rv-swatch ${k}` }), k)),
      ...([["succeeded", "succeeded"], ["failed", "failed or lost attempt"], ["cancelled", "cancelled"]] as const)
        .map(([k, text]) => h("li", {}, h("span", { class: `rv-swatch ${k}` }), text)));
    this.el.replaceChildren(
      h("nav", { class: "rv-crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "/" }, "Runs"), " › ",
        h("a", { href: `/dags/${encodeURIComponent(this.model.dagName)}` }, this.model.dagName)),
      ...this.header.parts,
      this.conn,
      h("div", { class: "rv-main" },
        h("section", { class: "rv-graph-box", "aria-labelledby": "rv-graph-title" },
          h("div", { class: "rv-graph-head" }, h("h2", { id: "rv-graph-title" }, "Graph"), this.zoomBar()),
          legend, this.graph.root),
        this.details.root),
      h("section", { class: "rv-timeline-box", "aria-labelledby": "rv-timeline-title" },
        h("h2", { id: "rv-timeline-title" }, "Timeline"), tlLegend, this.timeline.root));
    // Escape closes the task's details from anywhere in the view (focus goes back to its node).
    this.el.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.details.current && !ev.defaultPrevented) {
        ev.preventDefault();
        this.closeDetails();
      }
    });
    const wanted = new URLSearchParams(location.search).get("task");
    if (wanted && (this.model.tasks.has(wanted) || this.model.groups.has(wanted))) this.openTask(wanted, false);
  }

  private zoomBar(): HTMLElement {
    const status = h("span", { class: "rv-zoom-level", "aria-live": "polite" }, "100%");
    const button = (label: string, text: string, by: number | "fit"): HTMLElement => {
      const b = h("button", { type: "button", class: "secondary", "aria-label": label }, text);
      b.addEventListener("click", () => { status.textContent = `${Math.round(this.graph.zoom(by) * 100)}%`; });
      return b;
    };
    return h("div", { class: "rv-zoom", role: "group", "aria-label": "Zoom" },
      button("Zoom out", "−", 1 / 1.5), button("Zoom in", "+", 1.5), button("Fit the graph to the width", "Fit", "fit"), status);
  }

  private schedule(): void {
    if (this.frame || this.disposed) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.flush();
    });
  }

  /** Paint what changed since the last frame. */
  private flush(): void {
    if (this.disposed || !this.model.loaded) return;
    const m = this.model;
    const now = Date.now() / 1000;
    const structure = m.structureDirty;
    if (structure) {
      m.structureDirty = false;
      this.relayout();
    }
    const groups = new Set<string>();
    for (const name of m.dirty) groups.add(m.tasks.get(name)?.group ?? name);
    for (const g of groups) this.graph.update(g, this.nodeInfo(g));
    this.timeline.update(m, m.dirty, now, structure);
    const sel = this.details.current;
    if (sel && (m.dirty.has(sel) || groups.has(sel))) this.details.refresh();
    m.dirty.clear();
    if (m.runDirty || groups.size) {
      m.runDirty = false;
      this.header.paint();
    }
  }

  private tick(): void {
    if (this.disposed || !this.model.loaded) return;
    const now = Date.now() / 1000;
    if (!this.model.terminal()) {
      this.timeline.tick(this.model, now);
      this.header.paint();
      if (this.details.current) this.details.refresh();
    }
  }

  private relayout(): void {
    const seq = ++this.layoutSeq;
    const nodes = [...this.model.groups.keys()];
    const edges = this.model.edges();
    let drawn = false;
    const draw = (layout: Layout): void => {
      if (this.disposed || seq !== this.layoutSeq) return;
      this.graph.draw(layout, edges, (g) => this.nodeInfo(g));
      if (this.details.current) this.graph.select(this.model.tasks.get(this.details.current)?.group ?? this.details.current);
      drawn = true;
      if (!this.revealed.has(layout.engine)) {
        // A big graph opens where the action is: the first failed, running or queued task
        // (again when ELK's layout replaces the quick one: the nodes moved).
        this.revealed.add(layout.engine);
        const order = ["FAILED", "RUNNING", "QUEUED"];
        const hot = nodes.map((g) => ({ g, rank: order.indexOf(this.nodeInfo(g).state) }))
          .filter((x) => x.rank >= 0).sort((a, b) => a.rank - b.rank)[0];
        if (hot) this.graph.show(hot.g);
      }
      this.el.dataset.layout = layout.engine;
      this.el.dataset.layoutMs = String(Math.round(layout.ms));
      this.el.dataset.renderMs ??= String(Math.round(performance.now() - this.t0));
    };
    const quick = (): void => { if (!drawn) draw(quickLayout(nodes, edges)); };
    const timer = setTimeout(quick, ELK_GRACE_MS);
    elkLayout(nodes, edges).then((layout) => { clearTimeout(timer); draw(layout); }, (err: unknown) => {
      clearTimeout(timer);
      console.warn("ELK layout failed; using the quick layout", err);
      quick();
    });
  }

  private nodeInfo(group: string): NodeInfo {
    const members = this.model.groups.get(group) ?? [];
    const tasks = members.map((n) => this.model.tasks.get(n)).filter((t) => t !== undefined);
    if (tasks.length === 1 && tasks[0].index === null) {
      const t = tasks[0];
      const sub = [t.onExit ? "on exit" : "", t.memoized ? "memoized" : t.attempt > 1 ? `attempt ${t.attempt}` : t.node ? `on ${t.node}` : ""]
        .filter(Boolean).join(" · ");
      return { state: t.state, sub };
    }
    const instances = tasks.filter((t) => t.index !== null);
    const done = instances.filter((t) => TERMINAL.has(t.state)).length;
    const state = instances.length ? groupState(instances.map((t) => t.state)) : tasks[0]?.state ?? "PENDING";
    return { state, sub: instances.length ? `${done}/${instances.length} done` : "" };
  }

  private openGroup(group: string, viaKeyboard: boolean): void {
    const members = this.model.groups.get(group) ?? [];
    const single = members.length === 1 && this.model.tasks.get(members[0])?.index === null;
    this.openTask(single ? members[0] : group, viaKeyboard);
  }

  private openTask(task: string, viaKeyboard: boolean): void {
    // Escape brings focus back where the task was opened from (a graph node, a timeline row).
    const from = document.activeElement;
    if (from instanceof Element && from !== document.body && !this.details.root.contains(from)) this.returnFocus = from as HTMLElement;
    this.details.show(task, viaKeyboard);
    this.graph.select(this.model.tasks.get(task)?.group ?? task);
    const url = new URL(location.href);
    url.searchParams.set("task", task);
    history.replaceState(history.state, "", url);
  }

  private closeDetails(): void {
    const task = this.details.current;
    this.details.hide();
    this.graph.select(null);
    const url = new URL(location.href);
    url.searchParams.delete("task");
    history.replaceState(history.state, "", url);
    const back = this.returnFocus;
    this.returnFocus = null;
    if (back?.isConnected) back.focus();
    else if (task) this.graph.focusNode(this.model.tasks.get(task)?.group ?? task);
  }
}
