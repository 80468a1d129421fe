// The run view's header: title and state, the summary line, and the cancel and retry
// buttons with their in-between states ("Cancelling…", "Retrying…") until the run shows
// the result, announced politely to screen readers.
import type { Api } from "../api";
import { badge, duration, h, when } from "../ui";
import type { RunModel } from "./model";
import type { RunStatus } from "./types";
import { TERMINAL } from "./types";

export interface HeaderHooks {
  /** True once the view is unmounted: late answers are dropped. */
  gone(): boolean;
  /** The retry started (a new generation): the view re-reads and resumes its feed. */
  retried(status: RunStatus): void;
}

export class RunHeader {
  readonly parts: HTMLElement[];
  private readonly head = h("h1", {});
  private readonly meta = h("p", { class: "rv-meta" });
  private readonly cancelBtn = h("button", { type: "button", class: "rv-cancel" }, "Cancel run");
  private readonly retryBtn = h("button", { type: "button", class: "rv-retry" }, "Retry failed tasks");
  private readonly actionMsg = h("span", { class: "rv-action-msg", role: "status" });
  private readonly announcer = h("p", { class: "rv-sr", role: "status" });
  private pending: "cancel" | "retry" | null = null;
  private retryFrom = 0;

  constructor(
    private readonly api: Api,
    private readonly model: RunModel,
    private readonly el: HTMLElement,
    private readonly path: string,
    private readonly hooks: HeaderHooks,
  ) {
    this.cancelBtn.addEventListener("click", () => void this.cancel());
    this.retryBtn.addEventListener("click", () => void this.retry());
    this.parts = [this.head, this.meta, h("div", { class: "rv-actions" }, this.cancelBtn, this.retryBtn, this.actionMsg), this.announcer];
  }

  /** Repaint the title, the summary line and the buttons' states. */
  paint(): void {
    const m = this.model;
    if (this.el.dataset.status && this.el.dataset.status !== m.status) {
      // Said once per change, politely: the badge alone is silent for a screen reader.
      this.announcer.textContent = `The run is now ${m.status.toLowerCase()}.`;
    }
    this.el.dataset.status = m.status;
    this.head.replaceChildren(`Run of ${m.dagName} `, badge(m.status));
    const counts = [...m.counts()].map(([s, n]) => `${n} ${s.replace("_", " ").toLowerCase()}`).join(", ");
    const end = m.endedAt ?? (m.terminal() ? null : Date.now() / 1000);
    const took = m.startedAt && end ? duration((end - m.startedAt) * 1000) : null;
    this.meta.replaceChildren(
      h("span", { class: "mono" }, m.dagId),
      took ? ` · started ${when(m.startedAt)} · ${took}` : ` · submitted ${when(m.submittedAt)} · not started yet`,
      ` · cache ${m.useCache ? "on" : "off"}`, m.generation ? ` · retried ${m.generation}×` : "",
      h("br", {}), `${m.tasks.size} task${m.tasks.size === 1 ? "" : "s"}: ${counts}`);
    const running = m.status === "RUNNING";
    if (this.pending === "cancel" && !running) this.settle(`Cancelled.`);
    // The new generation, not a RUNNING state: a quick retry may be over within one frame.
    if (this.pending === "retry" && m.generation > this.retryFrom) this.settle("Retry started.");
    this.cancelBtn.disabled = !running || this.pending !== null;
    this.cancelBtn.textContent = this.pending === "cancel" ? "Cancelling…" : "Cancel run";
    const retryable = m.status === "FAILED" || m.status === "CANCELLED";
    this.retryBtn.disabled = !retryable || this.pending !== null;
    this.retryBtn.textContent = this.pending === "retry" ? "Retrying…" : "Retry failed tasks";
    this.retryBtn.title = retryable ? "Re-run the failed, upstream-failed and cancelled tasks" : "Only a failed or cancelled run can be retried";
  }

  private settle(text: string): void {
    this.pending = null;
    this.actionMsg.textContent = text;
  }

  /** POST the run's `cancel` or `retry`, showing it pending; false (and why) if refused. */
  private async ask(action: "cancel" | "retry", asking: string, failed: string): Promise<boolean> {
    this.pending = action;
    this.actionMsg.textContent = asking;
    this.paint();
    try {
      await this.api.post(`${this.path}/${action}`, "{}");
      return true;
    } catch (err) {
      this.pending = null;
      this.actionMsg.textContent = `${failed}: ${err instanceof Error ? err.message : String(err)}`;
      this.paint();
      return false;
    }
  }

  private async cancel(): Promise<void> {
    await this.ask("cancel", "Cancelling the run…", "Cancel failed");
  }

  private async retry(): Promise<void> {
    const generation = this.model.generation;
    this.retryFrom = generation;
    if (!(await this.ask("retry", "Asking for a retry…", "Retry failed"))) return;
    // The scheduler takes the retry asynchronously; the feed (closed at the run's end)
    // resumes once the status shows the new generation.
    for (let i = 0; i < 60 && !this.hooks.gone(); i++) {
      try {
        const s = await this.api.get<RunStatus>(this.path);
        if (this.hooks.gone()) return;
        if ((s.generation ?? 0) > generation || !TERMINAL.has(s.status)) {
          this.hooks.retried(s);
          return;
        }
      } catch { /* the API may be restarting: keep asking */ }
      await new Promise((r) => setTimeout(r, Math.min(2000, 250 * (i + 1))));
    }
    if (!this.hooks.gone() && this.pending === "retry") this.settle("The retry was accepted but has not started yet.");
  }
}
