// The run's timeline (Gantt): one row per task, one bar per attempt, each bar in three
// segments (queued, starting, running). Positions are CSS variables relative to the
// row's `--span`, so a growing run rescales with one style write, not one per bar.
import { duration } from "../ui";
import { segments, type Attempt, type RunModel, type TaskView } from "./model";

/** Rows drawn at most (a 10,000-instance map is summarised past this). */
export const MAX_ROWS = 2000;

interface Row {
  el: HTMLElement;
  name: HTMLButtonElement;
  bars: HTMLElement;
  open: boolean;
}

function attemptTitle(a: Attempt, now: number): string {
  const parts = segments(a, now).map((s) => `${s.kind} ${duration((s.to - s.from) * 1000)}`);
  const end = a.outcome ? `${a.outcome.toLowerCase()}${a.exitCode !== null ? ` (exit ${a.exitCode})` : ""}` : "in progress";
  return `attempt ${a.attempt}: ${end}${parts.length ? ` · ${parts.join(", ")}` : ""}`;
}

export class TimelineView {
  readonly root: HTMLElement;
  private readonly list: HTMLElement;
  private readonly axis: HTMLElement;
  private readonly more: HTMLElement;
  private readonly rows = new Map<string, Row>();
  private origin: number | null = null;
  private span = 1;
  private tabStop: string | null = null;

  constructor(private readonly onOpen: (task: string, viaKeyboard: boolean) => void) {
    this.root = document.createElement("div");
    this.root.className = "rv-timeline";
    this.axis = document.createElement("div");
    this.axis.className = "rv-axis";
    this.axis.setAttribute("aria-hidden", "true");
    this.list = document.createElement("div");
    this.list.className = "rv-rows";
    this.list.setAttribute("role", "list");
    this.list.setAttribute("aria-label", "Timeline: one row per task (arrow keys move, Enter opens a task)");
    this.more = document.createElement("p");
    this.more.className = "rv-more";
    this.root.append(this.axis, this.list, this.more);
    this.list.addEventListener("click", (ev) => {
      const row = (ev.target as Element).closest<HTMLElement>(".rv-row");
      // A button's click from Enter or Space has detail 0: focus then moves to the details.
      if (row?.dataset.task) this.open(row.dataset.task, ev.detail === 0);
    });
    this.list.addEventListener("keydown", (ev) => this.key(ev));
  }

  /** Re-render the rows of `names` (or, with `all`, every row: a new origin or new tasks). */
  update(model: RunModel, names: Iterable<string>, now: number, all = false): void {
    const origin = model.timeOrigin();
    if (origin !== this.origin) {
      this.origin = origin;
      all = true;
    }
    if (all) this.build(model);
    const targets = all ? model.tasks.keys() : names;
    for (const name of targets) {
      const t = model.tasks.get(name);
      const row = this.rows.get(name);
      if (t && row) this.paintRow(row, t, now);
    }
    this.tick(model, now);
  }

  /** Stretch the scale to `now` while the run goes on, and grow the open bars. */
  tick(model: RunModel, now: number): void {
    if (this.origin === null) return;
    const end = model.endedAt ?? (model.terminal() ? this.lastEnd(model, now) : now);
    this.span = Math.max(0.001, end - this.origin);
    this.root.style.setProperty("--span", String(this.span));
    for (const [name, row] of this.rows) {
      if (!row.open) continue;
      const t = model.tasks.get(name);
      if (t) this.paintRow(row, t, now);
    }
    this.paintAxis();
  }

  private lastEnd(model: RunModel, now: number): number {
    let end = this.origin ?? now;
    for (const t of model.tasks.values()) for (const a of t.attempts.values()) {
      for (const s of segments(a, now)) end = Math.max(end, s.to);
    }
    return end;
  }

  private build(model: RunModel): void {
    const names: string[] = [];
    for (const members of model.groups.values()) for (const n of members) names.push(n);
    const shown = names.slice(0, MAX_ROWS);
    const keep = new Set(shown);
    for (const [name, row] of this.rows) if (!keep.has(name)) { row.el.remove(); this.rows.delete(name); }
    const frag = document.createDocumentFragment();
    for (const name of shown) {
      let row = this.rows.get(name);
      if (!row) {
        const el = document.createElement("div");
        el.className = "rv-row";
        el.setAttribute("role", "listitem");
        el.dataset.task = name;
        const btn = document.createElement("button");
        btn.type = "button";
        btn.className = "rv-row-name";
        btn.tabIndex = -1;
        btn.textContent = name;
        btn.title = name;
        const bars = document.createElement("div");
        bars.className = "rv-bars";
        el.append(btn, bars);
        row = { el, name: btn, bars, open: false };
        this.rows.set(name, row);
      }
      frag.append(row.el);
    }
    this.list.replaceChildren(frag);
    this.more.textContent = names.length > shown.length
      ? `Showing the first ${shown.length} of ${names.length} tasks; open a task from the graph to see the rest.` : "";
    if (!this.tabStop || !this.rows.has(this.tabStop)) this.setTabStop(shown[0] ?? null);
  }

  private paintRow(row: Row, t: TaskView, now: number): void {
    row.el.dataset.state = t.state;
    row.name.setAttribute("aria-label", `${t.name}: ${t.state.replace("_", " ").toLowerCase()}, ${t.attempts.size} attempt${t.attempts.size === 1 ? "" : "s"}`);
    const origin = this.origin;
    const frag = document.createDocumentFragment();
    let open = false;
    if (origin !== null) {
      for (const a of t.attempts.values()) {
        const segs = segments(a, now);
        if (!segs.length) continue;
        if (!a.outcome) open = true;
        const bar = document.createElement("span");
        bar.className = `rv-attempt outcome-${(a.outcome ?? "open").toLowerCase()}${a.memoized ? " memoized" : ""}`;
        bar.title = attemptTitle(a, now);
        bar.dataset.attempt = String(a.attempt);
        const from = segs[0].from, to = segs[segs.length - 1].to;
        bar.style.setProperty("--s", String(from - origin));
        bar.style.setProperty("--d", String(to - from));
        for (const s of segs) {
          const seg = document.createElement("span");
          seg.className = `rv-seg ${s.kind}`;
          // Inside the bar, in fractions of the bar itself.
          seg.style.left = `${to > from ? ((s.from - from) / (to - from)) * 100 : 0}%`;
          seg.style.width = `${to > from ? ((s.to - s.from) / (to - from)) * 100 : 100}%`;
          bar.append(seg);
        }
        if (t.attempts.size > 1) {
          const tag = document.createElement("span");
          tag.className = "rv-attempt-no";
          tag.textContent = `#${a.attempt}`;
          bar.append(tag);
        }
        frag.append(bar);
      }
    }
    row.open = open;
    row.bars.replaceChildren(frag);
  }

  private paintAxis(): void {
    const step = niceStep(this.span / 5);
    const ticks: HTMLElement[] = [];
    for (let v = 0; v <= this.span + 1e-9 && ticks.length < 12; v += step) {
      const tick = document.createElement("span");
      tick.style.setProperty("--s", String(v));
      tick.textContent = duration(v * 1000);
      ticks.push(tick);
    }
    this.axis.replaceChildren(...ticks);
  }

  private setTabStop(name: string | null): void {
    if (this.tabStop) {
      const old = this.rows.get(this.tabStop);
      if (old) old.name.tabIndex = -1;
    }
    this.tabStop = name;
    const row = name ? this.rows.get(name) : undefined;
    if (row) row.name.tabIndex = 0;
  }

  private open(task: string, viaKeyboard: boolean): void {
    this.setTabStop(task);
    this.onOpen(task, viaKeyboard);
  }

  private key(ev: KeyboardEvent): void {
    const row = (ev.target as Element).closest<HTMLElement>(".rv-row");
    if (!row) return;
    let next: Element | null = null;
    if (ev.key === "ArrowDown") next = row.nextElementSibling;
    else if (ev.key === "ArrowUp") next = row.previousElementSibling;
    else if (ev.key === "Home") next = this.list.firstElementChild;
    else if (ev.key === "End") next = this.list.lastElementChild;
    else return;
    ev.preventDefault();
    const name = (next as HTMLElement | null)?.dataset.task;
    if (!name) return;
    this.setTabStop(name);
    this.rows.get(name)?.name.focus();
  }
}

/** 1, 2 or 5 times a power of ten, in seconds. */
export function niceStep(raw: number): number {
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}
