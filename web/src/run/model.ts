// The run as the view knows it: the status snapshot merged with the feed's events, and
// each attempt's milestones (for the timeline). Pure data, no DOM: unit-testable, and the
// view renders only what `dirty` names, so an event never costs a full re-render.
import type { CacheStats, FeedEvent, RunEventData, RunStatus, TaskEventData, TaskStatus, Timings } from "./types";
import { TERMINAL } from "./types";

export interface Attempt {
  attempt: number;
  generation: number;
  /** When the scheduler queued it (the QUEUED transition), epoch seconds. */
  queuedMark: number | null;
  timings: Timings;
  /** The attempt's end as a state (FAILED, SUCCEEDED, CANCELLED, or LOST), null while open. */
  outcome: string | null;
  endedAt: number | null;
  exitCode: number | null;
  reason: string | null;
  message: string | null;
  node: string | null;
  memoized: boolean;
}

export interface TaskView {
  name: string;
  /** The graph node it belongs to: `train[3]` belongs to `train`. */
  group: string;
  index: number | null;
  state: string;
  attempt: number;
  generation: number;
  dependsOn: string[];
  node: string | null;
  exitCode: number | null;
  reason: string | null;
  message: string | null;
  memoized: boolean;
  memoReason: string | null;
  onExit: boolean;
  result: unknown;
  lostAttempts: number;
  timings: Timings;
  cache: CacheStats;
  attempts: Map<number, Attempt>;
  /** (generation, attempt, rank) of what we know: an older report never overwrites it. */
  version: [number, number, number];
}

const MAPPED = /^(.+)\[(\d+)\]$/;

export function groupOf(name: string): { group: string; index: number | null } {
  const m = MAPPED.exec(name);
  return m ? { group: m[1], index: Number(m[2]) } : { group: name, index: null };
}

function rank(state: string): number {
  if (state === "PENDING") return 0;
  if (state === "QUEUED") return 1;
  if (state === "RUNNING") return 2;
  return 3;
}

function newer(a: [number, number, number], b: [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return true; // the same step again: take it (it may carry more detail)
}

/** The most telling state of a group of instances (what its graph node shows). */
export function groupState(states: Iterable<string>): string {
  const order = ["FAILED", "RUNNING", "QUEUED", "UPSTREAM_FAILED", "CANCELLED", "PENDING", "SUCCEEDED", "SKIPPED"];
  const seen = new Set(states);
  if (seen.size === 0) return "PENDING";
  if ([...seen].every((s) => s === "SUCCEEDED" || s === "SKIPPED")) return seen.has("SUCCEEDED") ? "SUCCEEDED" : "SKIPPED";
  for (const s of order) if (seen.has(s)) return s;
  return [...seen][0];
}

export class RunModel {
  dagName = "";
  status = "RUNNING";
  generation = 0;
  useCache = true;
  submittedAt: number | null = null;
  startedAt: number | null = null;
  endedAt: number | null = null;
  loaded = false;
  readonly tasks = new Map<string, TaskView>();
  /** Graph nodes in document order, each with its tasks (one, or a mapped task's instances). */
  readonly groups = new Map<string, string[]>();
  /** Task names changed since the view last rendered them. */
  readonly dirty = new Set<string>();
  runDirty = false;
  /** A group appeared (a mapped task expanded): the graph needs a new layout. */
  structureDirty = false;

  constructor(readonly dagId: string) {}

  private ensure(name: string): TaskView {
    let t = this.tasks.get(name);
    if (t) return t;
    const { group, index } = groupOf(name);
    t = {
      name, group, index, state: "PENDING", attempt: 0, generation: 0, dependsOn: [], node: null,
      exitCode: null, reason: null, message: null, memoized: false, memoReason: null, onExit: false, result: undefined, lostAttempts: 0,
      timings: {}, cache: {}, attempts: new Map(), version: [-1, -1, -1],
    };
    this.tasks.set(name, t);
    const members = this.groups.get(group);
    if (members) members.push(name);
    else {
      this.groups.set(group, [name]);
      this.structureDirty = true;
    }
    return t;
  }

  /**
   * Edges between graph nodes (a mapped task's instances share their task's node). Exit
   * handlers run after everything else: they hang off the last tasks (those nothing
   * depends on), so they are drawn at the end.
   */
  edges(): [string, string][] {
    const out = new Set<string>();
    const pairs: [string, string][] = [];
    const add = (from: string, to: string): void => {
      const key = `${from}\n${to}`;
      if (from === to || out.has(key) || !this.groups.has(from)) return;
      out.add(key);
      pairs.push([from, to]);
    };
    const exits = new Set<string>();
    for (const t of this.tasks.values()) {
      if (t.onExit) exits.add(t.group);
      for (const dep of t.dependsOn) add(groupOf(dep).group, t.group);
    }
    if (exits.size) {
      const hasChild = new Set(pairs.map(([a]) => a));
      const sinks = [...this.groups.keys()].filter((g) => !exits.has(g) && !hasChild.has(g));
      for (const x of exits) {
        if (pairs.some(([, b]) => b === x)) continue;
        for (const sink of sinks) add(sink, x);
      }
    }
    return pairs;
  }

  applySnapshot(s: RunStatus): void {
    this.dagName = s.dagName;
    this.useCache = s.useCache ?? true;
    const g = s.generation ?? 0;
    // A snapshot read before the feed's latest run event must not bring a run back to
    // life; one of a later generation (a retry) does.
    if (g > this.generation || (g === this.generation && !(this.terminal() && s.status === "RUNNING"))) {
      this.status = s.status;
      this.endedAt = s.endedAt ?? null;
    }
    this.generation = Math.max(this.generation, g);
    this.submittedAt = s.submittedAt ?? this.submittedAt;
    this.startedAt = s.startedAt ?? this.startedAt;
    this.runDirty = true;
    for (const ts of s.tasks) this.applyTaskStatus(ts, s.generation ?? 0);
    this.loaded = true;
  }

  private applyTaskStatus(ts: TaskStatus, generation: number): void {
    const t = this.ensure(ts.name);
    const deps = ts.dependsOn ?? [];
    if (deps.join("\n") !== t.dependsOn.join("\n") || Boolean(ts.onExit) !== t.onExit) {
      t.dependsOn = deps;
      t.onExit = Boolean(ts.onExit);
      this.structureDirty = true;
    }
    if (ts.result !== undefined) t.result = ts.result;
    const version: [number, number, number] = [generation, ts.attempts, rank(ts.state)];
    if (!newer(version, t.version)) return;
    // A re-read after a reconnect repeats most tasks unchanged: repaint only what moved.
    const before = JSON.stringify([t.state, t.node, t.exitCode, t.reason, t.message, t.memoized, t.timings, t.cache, t.result]);
    t.version = version;
    t.state = ts.state;
    t.attempt = ts.attempts;
    t.generation = generation;
    t.node = ts.node ?? null;
    t.exitCode = ts.exitCode ?? null;
    t.reason = ts.reason ?? null;
    t.message = ts.message ?? null;
    t.memoized = ts.memoized ?? false;
    t.memoReason = ts.memoReason ?? null;
    t.lostAttempts = ts.lostAttempts ?? 0;
    t.timings = ts.timings ?? {};
    t.cache = ts.cache ?? {};
    this.recordAttempt(t, ts.state, ts.attempts, generation, null, ts);
    if (JSON.stringify([t.state, t.node, t.exitCode, t.reason, t.message, t.memoized, t.timings, t.cache, t.result]) !== before) {
      this.dirty.add(t.name);
    }
  }

  /** Apply one feed event; false when it belongs to another run (never shown here). */
  apply(ev: FeedEvent): boolean {
    if (ev.dagId !== this.dagId) return false;
    if (ev.type === "run") this.applyRun(ev);
    else this.applyTask(ev);
    return true;
  }

  private applyRun(ev: RunEventData): void {
    const generation = ev.generation ?? 0;
    if (generation < this.generation) return;
    this.generation = generation;
    this.status = ev.state;
    if (ev.startedAt) this.startedAt = this.startedAt ?? ev.startedAt;
    this.endedAt = TERMINAL.has(ev.state) ? (ev.endedAt ?? ev.at) : null;
    this.runDirty = true;
  }

  private applyTask(ev: TaskEventData): void {
    const t = this.ensure(ev.task);
    const generation = ev.generation ?? 0;
    if (generation > this.generation) {
      this.generation = generation;
      this.runDirty = true;
    }
    // History is recorded whatever the current state (a late snapshot may be ahead).
    this.recordAttempt(t, ev.state, ev.attempt, generation, ev.at, ev);
    this.dirty.add(t.name);
    const version: [number, number, number] = [generation, ev.attempt, rank(ev.state)];
    if (!newer(version, t.version)) return;
    t.version = version;
    t.state = ev.state;
    t.attempt = ev.attempt;
    t.generation = generation;
    t.node = ev.node ?? t.node;
    t.exitCode = ev.exitCode ?? (ev.state === "QUEUED" ? null : t.exitCode);
    t.reason = ev.reason ?? null;
    t.message = ev.message ?? null;
    t.memoized = ev.memoized ?? false;
    t.lostAttempts = ev.lostAttempts ?? t.lostAttempts;
    if (ev.timings) t.timings = ev.timings;
    if (ev.cache && (ev.cache.hits || ev.cache.misses || TERMINAL.has(ev.state))) t.cache = ev.cache;
  }

  /**
   * Keep each attempt's milestones. A QUEUED step of attempt n that carries start or end
   * times describes attempt n-1 (the scheduler re-queues a failed or lost attempt with the
   * report of the one that ended): those go to n-1, which ended then.
   */
  private recordAttempt(
    t: TaskView, state: string, n: number, generation: number, at: number | null,
    d: { timings?: Timings; exitCode?: number | null; reason?: string | null; message?: string | null; node?: string | null; memoized?: boolean },
  ): void {
    if (n < 1 || state === "PENDING" || state === "UPSTREAM_FAILED" || state === "SKIPPED") return;
    const timings = d.timings ?? {};
    const carriesEnd = Boolean(timings.startedAt || timings.finishedAt || timings.scheduledAt);
    if (state === "QUEUED" && carriesEnd && n > 1) {
      const prev = this.attemptOf(t, n - 1, generation);
      mergeTimings(prev.timings, timings);
      prev.outcome = prev.outcome ?? (d.reason === "ExecutorLost" ? "LOST" : "FAILED");
      prev.endedAt = prev.endedAt ?? timings.finishedAt ?? at;
      prev.exitCode = d.exitCode ?? prev.exitCode;
      prev.reason = d.reason ?? prev.reason;
      prev.node = d.node ?? prev.node;
    }
    const a = this.attemptOf(t, n, generation);
    if (state === "QUEUED") {
      if (at !== null) a.queuedMark = a.queuedMark ?? at;
      return;
    }
    mergeTimings(a.timings, timings);
    a.node = d.node ?? a.node;
    if (TERMINAL.has(state)) {
      a.outcome = state;
      a.endedAt = timings.finishedAt ?? a.endedAt ?? at;
      a.exitCode = d.exitCode ?? a.exitCode;
      a.reason = d.reason ?? a.reason;
      a.message = d.message ?? a.message;
      a.memoized = d.memoized ?? false;
    }
  }

  private attemptOf(t: TaskView, n: number, generation: number): Attempt {
    let a = t.attempts.get(n);
    if (!a) {
      a = {
        attempt: n, generation, queuedMark: null, timings: {}, outcome: null, endedAt: null,
        exitCode: null, reason: null, message: null, node: null, memoized: false,
      };
      t.attempts.set(n, a);
    }
    return a;
  }

  /** The earliest moment the timeline shows (epoch seconds), null before anything ran. */
  timeOrigin(): number | null {
    let min = this.startedAt ?? this.submittedAt ?? Infinity;
    for (const t of this.tasks.values()) {
      for (const a of t.attempts.values()) {
        const first = attemptStart(a);
        if (first !== null && first < min) min = first;
      }
    }
    return Number.isFinite(min) ? min : null;
  }

  terminal(): boolean {
    return TERMINAL.has(this.status);
  }

  counts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const t of this.tasks.values()) out.set(t.state, (out.get(t.state) ?? 0) + 1);
    return out;
  }
}

function mergeTimings(into: Timings, from: Timings): void {
  for (const k of ["queuedAt", "scheduledAt", "startedAt", "finishedAt"] as const) {
    const v = from[k];
    if (v !== null && v !== undefined) into[k] = v;
  }
}

export function attemptStart(a: Attempt): number | null {
  const marks = [a.queuedMark, a.timings.queuedAt, a.timings.scheduledAt, a.timings.startedAt]
    .filter((v): v is number => typeof v === "number");
  return marks.length ? Math.min(...marks) : null;
}

export interface Segment {
  kind: "queued" | "starting" | "running";
  from: number;
  to: number;
}

/**
 * An attempt's bar: queued (scheduler's decision or dispatch → executor took it),
 * starting (inputs fetched, image pulled → command started), running (→ finished).
 * `now` closes the segment that is still open.
 */
export function segments(a: Attempt, now: number): Segment[] {
  const start = attemptStart(a);
  if (start === null) return [];
  const end = a.timings.finishedAt ?? a.endedAt ?? (a.outcome ? null : now);
  const sched = a.timings.scheduledAt ?? null;
  const started = a.timings.startedAt ?? null;
  const out: Segment[] = [];
  const close = (v: number | null): number => v ?? end ?? start;
  const queuedTo = sched ?? started ?? end;
  out.push({ kind: "queued", from: start, to: close(queuedTo) });
  if (sched !== null) out.push({ kind: "starting", from: sched, to: close(started ?? end) });
  if (started !== null) out.push({ kind: "running", from: started, to: close(end) });
  return out.filter((s) => s.to >= s.from);
}
