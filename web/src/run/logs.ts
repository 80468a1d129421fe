// A task's log, read page by page from `GET .../tasks/{task}/logs?offset=` and followed
// while the task runs (every attempt's lines, each after a banner line); the downloader's
// `[HELIOS] Cache hit|miss` lines give the per-input cache table.
import { ApiError, seg, type Api } from "../api";
import type { LogPage } from "./types";

const BANNER = /^\[HELIOS\] ---- attempt (\d+) ----$/;
const CACHE = /^\[HELIOS\] Cache (hit|miss|disabled) (.+?) \((\d+) bytes, sha256 ([0-9a-f]{12})\)/;

export interface InputUse {
  attempt: number;
  name: string;
  kind: "hit" | "miss" | "disabled";
  bytes: number;
}

/** Split lines by attempt (lines before any banner belong to attempt 1). */
export function byAttempt(lines: string[]): Map<number, string[]> {
  const out = new Map<number, string[]>();
  let current = 1;
  for (const line of lines) {
    const m = BANNER.exec(line);
    if (m) {
      current = Number(m[1]);
      if (!out.has(current)) out.set(current, []);
      continue;
    }
    let list = out.get(current);
    if (!list) out.set(current, (list = []));
    list.push(line);
  }
  return out;
}

/** What the downloader said about each input (its lines are the only source per input). */
export function inputUses(lines: string[]): InputUse[] {
  const out: InputUse[] = [];
  let attempt = 1;
  for (const line of lines) {
    const b = BANNER.exec(line);
    if (b) {
      attempt = Number(b[1]);
      continue;
    }
    const m = CACHE.exec(line);
    if (m) out.push({ attempt, kind: m[1] as InputUse["kind"], name: m[2], bytes: Number(m[3]) });
  }
  return out;
}

const PAGE = 5000;
const FOLLOW_MS = 1000;

/** Follows one task's log; `onLines` gets every new batch. Stop it when the panel closes. */
export class LogFollower {
  readonly lines: string[] = [];
  truncated = false;
  private next = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private ctrl = new AbortController();
  private stopped = false;
  private finalRead = false;

  constructor(
    private readonly api: Api,
    private readonly dagId: string,
    private readonly task: string,
    private readonly live: () => boolean,
    private readonly onLines: (added: string[]) => void,
    private readonly onError: (message: string) => void,
  ) {}

  start(): void {
    void this.poll();
  }

  /** Read again now (the task changed state: its last lines may be in). */
  poke(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.finalRead = false;
    void this.poll();
  }

  stop(): void {
    this.stopped = true;
    this.ctrl.abort();
    if (this.timer) clearTimeout(this.timer);
  }

  private busy = false;
  private readOnce = false;

  private async poll(): Promise<void> {
    if (this.stopped || this.busy) return;
    this.busy = true;
    let more = false;
    try {
      const path = `/dags/${seg(this.dagId)}/tasks/${seg(this.task)}/logs?offset=${this.next}&limit=${PAGE}`;
      const page = await this.api.get<LogPage>(path, this.ctrl.signal);
      if (this.stopped) return;
      this.next = page.next;
      this.truncated = Boolean(page.truncated);
      more = page.lines.length >= PAGE;
      if (page.lines.length || !this.readOnce) {
        this.readOnce = true;
        this.lines.push(...page.lines);
        this.onLines(page.lines);
      }
    } catch (err) {
      if (this.stopped) return;
      this.onError(err instanceof ApiError ? err.message : `logs unavailable: ${String(err)}`);
    } finally {
      this.busy = false;
    }
    if (this.stopped) return;
    // Follow while the task can still write; one more read after it ended catches the tail.
    const live = this.live();
    if (more || live || !this.finalRead) {
      if (!live) this.finalRead = true;
      this.timer = setTimeout(() => void this.poll(), more ? 0 : FOLLOW_MS);
    }
  }
}
