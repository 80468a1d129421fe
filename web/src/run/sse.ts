// A Server-Sent Events reader over fetch, because the feed needs an `Authorization` header
// (EventSource cannot send one, and a token in the URL ends up in logs). It keeps the last
// event id and resumes with `Last-Event-ID` after any drop, with backoff, so a transition
// is never lost: the api replays its feed from JetStream after that id.
import { Unreachable, type Api } from "../api";

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** The text/event-stream grammar (HTML Living Standard, "Parsing an event stream"). */
export class SseParser {
  lastId: string | null = null;
  retryMs: number | null = null;
  private buf = "";
  private data: string[] = [];
  private event = "";
  private sawData = false;

  constructor(lastId: string | null = null) {
    this.lastId = lastId;
  }

  /** Feed decoded text; returns the messages it completed. */
  push(chunk: string): SseMessage[] {
    this.buf += chunk;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buf.length; i++) {
      const c = this.buf[i];
      if (c !== "\n" && c !== "\r") continue;
      // A CR at the very end may be the first half of CRLF: wait for the next chunk.
      if (c === "\r" && i === this.buf.length - 1) break;
      const line = this.buf.slice(start, i);
      if (c === "\r" && this.buf[i + 1] === "\n") i++;
      start = i + 1;
      const msg = this.line(line);
      if (msg) out.push(msg);
    }
    this.buf = this.buf.slice(start);
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === "") {
      if (!this.sawData) {
        this.event = "";
        return null;
      }
      const msg = { id: this.lastId, event: this.event || "message", data: this.data.join("\n") };
      this.data = [];
      this.event = "";
      this.sawData = false;
      return msg;
    }
    if (line.startsWith(":")) return null; // a comment: the server's keepalive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.sawData = true;
    } else if (field === "event") {
      this.event = value;
    } else if (field === "id") {
      if (!value.includes("\0")) this.lastId = value;
    } else if (field === "retry" && /^\d+$/.test(value)) {
      this.retryMs = Number(value);
    }
    return null;
  }
}

export type FeedState =
  | { kind: "connecting"; attempt: number }
  | { kind: "live" }
  | { kind: "waiting"; attempt: number; delayMs: number; why: string }
  | { kind: "ended" }
  | { kind: "notfound" }
  | { kind: "auth"; status: number };

export interface FeedHandlers {
  /** A connection is open: the view re-reads the run's status (it may have missed a lot). */
  onOpen(reconnect: boolean): void;
  onMessage(msg: SseMessage): void;
  onState(state: FeedState): void;
}

export interface FeedOptions {
  /** Delays between reconnects, the last one repeated (jittered by up to +25%). */
  backoffMs: readonly number[];
  /** A stream silent this long is dead (the server's keepalive comes every 15 s). */
  silenceMs: number;
}

export const DEFAULT_FEED_OPTIONS: FeedOptions = {
  backoffMs: [250, 500, 1000, 2000, 4000],
  silenceMs: 45_000,
};

export function backoffDelay(failures: number, opts: FeedOptions, rand = Math.random): number {
  const steps = opts.backoffMs;
  const base = steps[Math.min(Math.max(failures, 1), steps.length) - 1] ?? 1000;
  return Math.round(base * (1 + 0.25 * rand()));
}

class Retryable extends Error {}

/** One run's feed: `start()` once, `stop()` on unmount (aborts the request at once). */
export class Feed {
  private ctrl: AbortController | null = null;
  private running = false;
  private stopped = false;
  private opened = false;
  private generationOfLoop = 0;

  constructor(
    private readonly api: Api,
    private readonly path: string,
    private readonly handlers: FeedHandlers,
    private readonly opts: FeedOptions = DEFAULT_FEED_OPTIONS,
    public lastId: string | null = null,
  ) {}

  start(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    const loop = ++this.generationOfLoop;
    void this.loop(loop);
  }

  /** Start again after the feed ended (the run was retried) or a token was given. */
  restart(): void {
    if (this.stopped) return;
    this.ctrl?.abort();
    this.running = false;
    this.start();
  }

  stop(): void {
    this.stopped = true;
    this.running = false;
    this.ctrl?.abort();
  }

  private current(loop: number): boolean {
    return !this.stopped && loop === this.generationOfLoop;
  }

  private async loop(loop: number): Promise<void> {
    let failures = 0;
    while (this.current(loop)) {
      const ctrl = new AbortController();
      this.ctrl = ctrl;
      this.handlers.onState({ kind: "connecting", attempt: failures + 1 });
      let why = "";
      try {
        const headers: Record<string, string> = { Accept: "text/event-stream" };
        if (this.lastId !== null) headers["Last-Event-ID"] = this.lastId;
        const res = await this.api.raw(this.path, { headers, signal: ctrl.signal, cache: "no-store" });
        if (!this.current(loop)) return;
        if (res.status === 204) return this.finish(loop, { kind: "ended" });
        if (res.status === 404) return this.finish(loop, { kind: "notfound" });
        if (res.status === 401 || res.status === 403) return this.finish(loop, { kind: "auth", status: res.status });
        if (!res.ok || !res.body) throw new Retryable(`HTTP ${res.status}`);
        this.handlers.onState({ kind: "live" });
        this.handlers.onOpen(this.opened);
        this.opened = true;
        const delivered = await this.read(res.body, ctrl, loop);
        // The server closed the stream (run over, or it is shutting down): resume at once
        // if it delivered something, else back off (204 ends the loop when the run is over).
        if (delivered) {
          failures = 0;
          continue;
        }
        why = "the stream closed";
      } catch (err) {
        if (!this.current(loop)) return;
        why = err instanceof Unreachable ? "the API is unreachable" : err instanceof Error ? err.message : String(err);
      }
      failures++;
      const delayMs = backoffDelay(failures, this.opts);
      this.handlers.onState({ kind: "waiting", attempt: failures, delayMs, why });
      await sleep(delayMs, ctrl.signal);
    }
  }

  private finish(loop: number, state: FeedState): void {
    if (!this.current(loop)) return;
    this.running = false;
    this.handlers.onState(state);
  }

  /** Read until the stream ends; true when at least one message came through. */
  private async read(body: ReadableStream<Uint8Array>, ctrl: AbortController, loop: number): Promise<boolean> {
    const parser = new SseParser(this.lastId);
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let delivered = false;
    let timer = setTimeout(() => ctrl.abort(), this.opts.silenceMs);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return delivered;
        clearTimeout(timer);
        timer = setTimeout(() => ctrl.abort(), this.opts.silenceMs);
        for (const msg of parser.push(decoder.decode(value, { stream: true }))) {
          if (!this.current(loop)) return delivered;
          this.lastId = msg.id;
          delivered = true;
          this.handlers.onMessage(msg);
        }
      }
    } finally {
      clearTimeout(timer);
      reader.cancel().catch(() => {});
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
