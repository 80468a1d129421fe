// Pure parts of the run view: the SSE grammar, merging the snapshot with events, attempt
// segments, grouping mapped instances, and the quick layout. Run: `npx vitest run src/run`.
import { describe, expect, it } from "vitest";
import { quickLayout } from "./layout";
import { RunModel, groupOf, groupState, segments } from "./model";
import { SseParser, backoffDelay, DEFAULT_FEED_OPTIONS } from "./sse";
import { byAttempt, inputUses } from "./logs";
import { bytes } from "../ui";
import { memoText } from "./details";
import { esc, fit } from "./graph";
import type { RunStatus, TaskEventData } from "./types";

const ID = "a".repeat(32);

function ev(task: string, state: string, attempt: number, extra: Partial<TaskEventData> = {}): TaskEventData {
  return { type: "task", dagId: ID, task, state, attempt, at: 100 + attempt, ...extra };
}

function snapshot(tasks: RunStatus["tasks"], extra: Partial<RunStatus> = {}): RunStatus {
  return { dagId: ID, dagName: "d", status: "RUNNING", generation: 0, tasks, ...extra };
}

describe("SseParser", () => {
  it("splits messages across chunk boundaries, CRLF included, and keeps the last id", () => {
    const p = new SseParser();
    const text = "retry: 2000\r\n\r\n: keepalive\n\nid: 7\nevent: task\ndata: {\"a\":\ndata: 1}\r\n\r\nid: 8\ndata: x\n\n";
    const out = [];
    for (let i = 0; i < text.length; i += 3) out.push(...p.push(text.slice(i, i + 3)));
    expect(out).toEqual([
      { id: "7", event: "task", data: "{\"a\":\n1}" },
      { id: "8", event: "message", data: "x" },
    ]);
    expect(p.lastId).toBe("8");
    expect(p.retryMs).toBe(2000);
  });

  it("holds a message until its blank line arrives", () => {
    const p = new SseParser("3");
    expect(p.push("id: 4\ndata: y\n")).toEqual([]);
    expect(p.push("\n")).toEqual([{ id: "4", event: "message", data: "y" }]);
  });

  it("backs off in steps with jitter and repeats the last step", () => {
    expect(backoffDelay(1, DEFAULT_FEED_OPTIONS, () => 0)).toBe(250);
    expect(backoffDelay(3, DEFAULT_FEED_OPTIONS, () => 1)).toBe(1250);
    expect(backoffDelay(40, DEFAULT_FEED_OPTIONS, () => 0)).toBe(4000);
  });
});

describe("RunModel", () => {
  it("ignores events of another run", () => {
    const m = new RunModel(ID);
    expect(m.apply({ ...ev("x", "RUNNING", 1), dagId: "b".repeat(32) })).toBe(false);
    expect(m.tasks.size).toBe(0);
  });

  it("never lets a replayed older event overwrite a newer snapshot", () => {
    const m = new RunModel(ID);
    m.applySnapshot(snapshot([{ name: "a", state: "SUCCEEDED", attempts: 1, dependsOn: [] }]));
    m.apply(ev("a", "QUEUED", 1));
    m.apply(ev("a", "RUNNING", 1, { timings: { startedAt: 101 } }));
    expect(m.tasks.get("a")!.state).toBe("SUCCEEDED");
    // ...but the history still lands on the timeline.
    expect(m.tasks.get("a")!.attempts.get(1)!.timings.startedAt).toBe(101);
  });

  it("a retried run's PENDING (next generation) is newer than the failure", () => {
    const m = new RunModel(ID);
    m.apply(ev("a", "FAILED", 1));
    m.apply(ev("a", "PENDING", 1, { generation: 1 }));
    expect(m.tasks.get("a")!.state).toBe("PENDING");
    expect(m.generation).toBe(1);
  });

  it("gives a re-queued attempt's report to the attempt that ended", () => {
    const m = new RunModel(ID);
    m.apply(ev("a", "QUEUED", 1, { at: 10 }));
    m.apply(ev("a", "RUNNING", 1, { at: 11, timings: { queuedAt: 10, scheduledAt: 10.5, startedAt: 11 } }));
    m.apply(ev("a", "QUEUED", 2, {
      at: 12, exitCode: 3, reason: "Error",
      timings: { queuedAt: 10, scheduledAt: 10.5, startedAt: 11, finishedAt: 12 },
    }));
    const t = m.tasks.get("a")!;
    const first = t.attempts.get(1)!;
    expect(first.outcome).toBe("FAILED");
    expect(first.exitCode).toBe(3);
    expect(first.timings.finishedAt).toBe(12);
    const second = t.attempts.get(2)!;
    expect(second.queuedMark).toBe(12);
    expect(second.timings).toEqual({});
    expect(segments(first, 99).map((s) => [s.kind, s.from, s.to])).toEqual([
      ["queued", 10, 10.5], ["starting", 10.5, 11], ["running", 11, 12],
    ]);
    expect(segments(second, 13)).toEqual([{ kind: "queued", from: 12, to: 13 }]);
  });

  it("marks only what changed as dirty", () => {
    const m = new RunModel(ID);
    m.applySnapshot(snapshot([
      { name: "a", state: "PENDING", attempts: 0, dependsOn: [] },
      { name: "b", state: "PENDING", attempts: 0, dependsOn: ["a"] },
    ]));
    m.dirty.clear();
    m.structureDirty = false;
    m.apply(ev("b", "QUEUED", 1));
    expect([...m.dirty]).toEqual(["b"]);
    expect(m.structureDirty).toBe(false);
    expect(m.edges()).toEqual([["a", "b"]]);
  });

  it("groups mapped instances under their task", () => {
    expect(groupOf("train[12]")).toEqual({ group: "train", index: 12 });
    expect(groupOf("odd[name")).toEqual({ group: "odd[name", index: null });
    const m = new RunModel(ID);
    m.applySnapshot(snapshot([
      { name: "list", state: "SUCCEEDED", attempts: 1, dependsOn: [] },
      { name: "train", state: "RUNNING", attempts: 0, dependsOn: ["list"] },
      { name: "train[0]", state: "SUCCEEDED", attempts: 1, dependsOn: ["list"] },
    ]));
    m.structureDirty = false;
    m.apply(ev("train[1]", "RUNNING", 1));
    expect(m.groups.get("train")).toEqual(["train", "train[0]", "train[1]"]);
    expect(m.structureDirty).toBe(false); // an instance of a known task: no new node
    expect(m.edges()).toEqual([["list", "train"]]);
    expect(groupState(["SUCCEEDED", "RUNNING"])).toBe("RUNNING");
    expect(groupState(["SUCCEEDED", "SKIPPED"])).toBe("SUCCEEDED");
    expect(groupState(["FAILED", "RUNNING"])).toBe("FAILED");
  });

  it("a stale snapshot does not bring an ended run back to life; a retried one does", () => {
    const m = new RunModel(ID);
    m.apply({ type: "run", dagId: ID, state: "SUCCEEDED", at: 2, endedAt: 2, generation: 0 });
    m.applySnapshot(snapshot([], { status: "RUNNING", generation: 0 }));
    expect(m.status).toBe("SUCCEEDED");
    m.applySnapshot(snapshot([], { status: "RUNNING", generation: 1 }));
    expect(m.status).toBe("RUNNING");
  });

  it("draws exit handlers after the last tasks", () => {
    const m = new RunModel(ID);
    m.applySnapshot(snapshot([
      { name: "a", state: "PENDING", attempts: 0, dependsOn: [] },
      { name: "b", state: "PENDING", attempts: 0, dependsOn: ["a"] },
      { name: "c", state: "PENDING", attempts: 0, dependsOn: ["a"] },
      { name: "report", state: "PENDING", attempts: 0, dependsOn: [], onExit: true },
    ]));
    expect(m.edges()).toEqual([["a", "b"], ["a", "c"], ["b", "report"], ["c", "report"]]);
  });

  it("ends the run on its terminal event and not on an older generation's", () => {
    const m = new RunModel(ID);
    m.apply({ type: "run", dagId: ID, state: "RUNNING", at: 1, generation: 1 });
    m.apply({ type: "run", dagId: ID, state: "FAILED", at: 2, endedAt: 2, generation: 0 });
    expect(m.status).toBe("RUNNING");
    m.apply({ type: "run", dagId: ID, state: "FAILED", at: 3, endedAt: 3, generation: 1 });
    expect(m.terminal()).toBe(true);
    expect(m.endedAt).toBe(3);
  });
});

describe("logs", () => {
  const lines = [
    "[HELIOS] ---- attempt 1 ----",
    "[HELIOS] Cache miss input.txt (10 bytes, sha256 0c15e883dee8) fetched from s3://b/k",
    "boom",
    "[HELIOS] ---- attempt 2 ----",
    "[HELIOS] Cache hit input.txt (10 bytes, sha256 0c15e883dee8)",
    "ok",
  ];

  it("splits by attempt", () => {
    expect([...byAttempt(lines)]).toEqual([
      [1, [lines[1], "boom"]], [2, [lines[4], "ok"]],
    ]);
  });

  it("reads the downloader's per-input cache lines", () => {
    expect(inputUses(lines)).toEqual([
      { attempt: 1, name: "input.txt", kind: "miss", bytes: 10 },
      { attempt: 2, name: "input.txt", kind: "hit", bytes: 10 },
    ]);
  });
});

describe("quickLayout", () => {
  it("puts each task right of its dependencies, 1,000 tasks in a few milliseconds", () => {
    const nodes = Array.from({ length: 1000 }, (_, i) => `t${i}`);
    const edges: [string, string][] = [];
    for (let i = 50; i < 1000; i++) edges.push([`t${i - 50}`, `t${i}`], [`t${i - 50 + ((i + 7) % 50) - (i % 50)}`, `t${i}`]);
    const l = quickLayout(nodes, edges);
    for (const [a, b] of edges) expect(l.positions.get(a)!.x).toBeLessThan(l.positions.get(b)!.x);
    expect(l.positions.size).toBe(1000);
    expect(l.ms).toBeLessThan(500);
  });
});

describe("words and markup", () => {
  it("says what memoization did and why it missed", () => {
    const m = new RunModel(ID);
    m.applySnapshot(snapshot([
      { name: "hit", state: "SUCCEEDED", attempts: 1, memoized: true, memoReason: "reused run 1234/hit" },
      { name: "miss", state: "SUCCEEDED", attempts: 1, memoReason: "ran: the image changed" },
      { name: "off", state: "SUCCEEDED", attempts: 1 },
    ]));
    expect(memoText(m.tasks.get("hit")!)).toBe("hit: reused run 1234/hit");
    expect(memoText(m.tasks.get("miss")!)).toBe("miss: the image changed");
    expect(memoText(m.tasks.get("off")!)).toMatch(/^not memoized/);
  });

  it("sizes bytes, cuts long names, escapes markup", () => {
    expect(bytes(10)).toBe("10 B");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(0)).toBe("0 B");
    expect(fit("a".repeat(30))).toHaveLength(24);
    expect(esc(`<b a="x">&'`)).toBe("&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
  });
});
