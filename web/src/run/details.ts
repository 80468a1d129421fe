// The panel of one task (or of a mapped task's instances): state, exit code and reason,
// node, each attempt's time breakdown, cache per input with bytes saved, memoization,
// and the log of every attempt, followed live while the task runs.
import type { Api } from "../api";
import { badge, bytes, duration, h } from "../ui";
import { LogFollower, byAttempt, inputUses } from "./logs";
import { segments, type Attempt, type RunModel, type TaskView } from "./model";
import { TERMINAL } from "./types";

/** Memoization in words: "reused <run>/<task>", "ran: <what changed>", or not memoizable. */
export function memoText(t: TaskView): string {
  if (t.memoized) return `hit: ${t.memoReason ?? "outputs reused"}`;
  if (t.memoReason) return t.memoReason.startsWith("ran: ") ? `miss: ${t.memoReason.slice(5)}` : t.memoReason;
  return "not memoized (the task does not set memoize)";
}

function seconds(a: Attempt, kind: string, now: number): string {
  const s = segments(a, now).find((x) => x.kind === kind);
  return s ? duration((s.to - s.from) * 1000) : "—";
}

/** A wide table in a region that scrolls sideways and can take keyboard focus to do so. */
function scroller(label: string, table: HTMLElement): HTMLElement {
  return h("div", { class: "rv-scroll", role: "region", "aria-label": label, tabindex: "0" }, table);
}

function fact(dl: HTMLElement, term: string, value: string | Node): void {
  dl.append(h("dt", {}, term), h("dd", {}, value));
}

export class DetailsPanel {
  readonly root: HTMLElement;
  private task: string | null = null;
  private follower: LogFollower | null = null;
  private readonly body: HTMLElement;
  private readonly logPre: HTMLPreElement;
  private readonly attemptSel: HTMLSelectElement;
  private readonly logNote: HTMLElement;
  private readonly inputsBox: HTMLElement;
  private readonly heading: HTMLHeadingElement;
  private lastState = "";

  constructor(
    private readonly api: Api,
    private readonly model: RunModel,
    private readonly onPick: (task: string) => void,
    private readonly onClose: () => void,
  ) {
    this.heading = h("h2", { id: "rv-details-title", tabindex: "-1" });
    const close = h("button", { type: "button", class: "secondary rv-close", "aria-label": "Close task details" }, "Close");
    close.addEventListener("click", () => this.onClose());
    this.body = h("div", { class: "rv-facts" });
    this.inputsBox = h("div", { class: "rv-inputs" });
    this.attemptSel = h("select", { id: "rv-log-attempt" });
    this.attemptSel.addEventListener("change", () => this.renderLog());
    this.logNote = h("p", { class: "rv-log-note", role: "status" });
    this.logPre = h("pre", { class: "rv-log", tabindex: "0", "aria-label": "Task log" });
    this.root = h("section", { class: "rv-details", "aria-labelledby": "rv-details-title", hidden: true },
      h("div", { class: "rv-details-head" }, this.heading, close),
      this.body, this.inputsBox,
      h("div", { class: "rv-log-head" }, h("h3", {}, "Log"),
        h("label", { for: "rv-log-attempt" }, "Attempt "), this.attemptSel),
      this.logNote, this.logPre);
  }

  get current(): string | null {
    return this.task;
  }

  show(task: string, focus: boolean): void {
    if (task !== this.task) {
      this.follower?.stop();
      this.task = task;
      this.logPre.textContent = "";
      this.shown = { mode: "", count: 0 };
      this.logNote.textContent = "Loading the log…";
      this.attemptSel.replaceChildren(h("option", { value: "all" }, "all attempts"));
      const t = this.model.tasks.get(task);
      this.follower = new LogFollower(this.api, this.model.dagId, task,
        () => {
          const cur = this.model.tasks.get(task);
          return !this.model.terminal() || (cur !== undefined && !TERMINAL.has(cur.state));
        },
        () => { this.renderLog(); this.renderInputs(); },
        (msg) => { this.logNote.textContent = msg; });
      if (t && (this.model.groups.get(task)?.length ?? 1) <= 1) this.follower.start();
      else this.logNote.textContent = "Pick an instance to see its log.";
    }
    this.root.hidden = false;
    this.refresh();
    if (focus) this.heading.focus();
  }

  hide(): void {
    this.follower?.stop();
    this.follower = null;
    this.task = null;
    this.root.hidden = true;
  }

  /** The task changed: repaint the facts, and read the log now if its state moved. */
  refresh(): void {
    const name = this.task;
    if (!name) return;
    const t = this.model.tasks.get(name);
    const members = this.model.groups.get(name);
    if (members && members.length > 1) return this.renderGroup(name, members.filter((m) => m !== name), t);
    if (!t) return;
    this.heading.replaceChildren(`Task ${t.name} `, badge(t.state));
    const now = Date.now() / 1000;
    const dl = h("dl", {});
    fact(dl, "State", `${t.state}${t.reason ? ` (${t.reason})` : ""}`);
    if (t.message) fact(dl, "Message", t.message);
    fact(dl, "Attempt", `${t.attempt || "—"}${t.lostAttempts ? ` (${t.lostAttempts} lost with their executor)` : ""}`);
    fact(dl, "Exit code", t.exitCode === null ? "—" : String(t.exitCode));
    fact(dl, "Node", t.node ?? "—");
    const c = t.cache;
    fact(dl, "Cache", this.model.useCache
      ? `${c.hits ?? 0} hit / ${c.misses ?? 0} miss · ${bytes(c.bytesSaved)} saved, ${bytes(c.bytesFetched)} fetched`
      : "off for this run");
    fact(dl, "Memoization", memoText(t));
    if (t.dependsOn.length) fact(dl, "Depends on", t.dependsOn.join(", "));
    if (t.onExit) fact(dl, "Runs", "on exit, after every other task ended");
    if (t.result !== undefined && t.result !== null) {
      const text = JSON.stringify(t.result);
      fact(dl, "Result", h("code", {}, text.length > 300 ? `${text.slice(0, 299)}…` : text));
    }
    const rows = [...t.attempts.values()].sort((a, b) => a.attempt - b.attempt).map((a) => {
      const segs = segments(a, now);
      const total = segs.length ? duration((segs[segs.length - 1].to - segs[0].from) * 1000) : "—";
      return h("tr", {},
        h("th", { scope: "row" }, String(a.attempt)),
        h("td", {}, a.outcome ?? "in progress", a.memoized ? " (memoized)" : ""),
        h("td", {}, a.exitCode === null ? "—" : String(a.exitCode)),
        h("td", {}, total),
        h("td", {}, seconds(a, "queued", now)),
        h("td", {}, seconds(a, "starting", now)),
        h("td", {}, seconds(a, "running", now)),
        h("td", {}, a.reason ?? "—"),
        h("td", {}, a.node ?? "—"));
    });
    const table = rows.length ? scroller("Attempts", h("table", { class: "rv-attempts" },
      h("caption", {}, "Attempts and where their time went"),
      h("thead", {}, h("tr", {}, ...["#", "outcome", "exit", "total", "queued", "starting", "running", "reason", "node"]
        .map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, ...rows))) : h("p", {}, "No attempt has started yet.");
    this.swap(this.body, [dl, table]);
    if (t.state !== this.lastState) {
      this.lastState = t.state;
      this.follower?.poke();
    }
  }

  private renderGroup(name: string, members: string[], base: TaskView | undefined): void {
    this.heading.replaceChildren(`Mapped task ${name} `, base ? badge(base.state) : "",
      h("span", { class: "rv-count" }, ` ${members.length} instance${members.length === 1 ? "" : "s"}`));
    const list = h("ul", { class: "rv-instances" });
    for (const m of members.slice(0, 500)) {
      const t = this.model.tasks.get(m);
      const b = h("button", { type: "button", class: "secondary" }, m, " ", badge(t?.state ?? "PENDING"));
      b.addEventListener("click", () => this.onPick(m));
      list.append(h("li", {}, b));
    }
    const note = base?.message ? h("p", {}, base.message) : h("span", {});
    this.swap(this.body, [note, list, members.length > 500 ? h("p", {}, `and ${members.length - 500} more`) : h("span", {})]);
    this.inputsBox.replaceChildren();
  }

  /**
   * Replace a box's content only when it changed (it is repainted every second while the
   * task runs), and keep keyboard focus on the same control if it was inside.
   */
  private swap(box: HTMLElement, children: HTMLElement[]): void {
    const html = children.map((c) => c.outerHTML).join("");
    if (box.dataset.html === html) return;
    box.dataset.html = html;
    const active = document.activeElement;
    const key = active && box.contains(active) ? (active as HTMLElement).getAttribute("aria-label") ?? active.textContent : null;
    box.replaceChildren(...children);
    if (key === null) return;
    for (const el of box.querySelectorAll<HTMLElement>("[tabindex], button, a")) {
      if ((el.getAttribute("aria-label") ?? el.textContent) === key) { el.focus(); break; }
    }
  }

  private renderInputs(): void {
    const uses = inputUses(this.follower?.lines ?? []);
    if (!uses.length) {
      this.inputsBox.replaceChildren();
      return;
    }
    const rows = uses.map((u) => h("tr", {},
      h("td", {}, String(u.attempt)), h("th", { scope: "row" }, u.name),
      h("td", {}, u.kind === "hit" ? "hit" : u.kind === "miss" ? "miss" : "cache off"),
      h("td", {}, bytes(u.bytes)), h("td", {}, u.kind === "hit" ? bytes(u.bytes) : "0 B")));
    this.inputsBox.replaceChildren(scroller("Inputs", h("table", { class: "rv-inputs-table" },
      h("caption", {}, "Inputs: node cache per input (from the downloader's log lines)"),
      h("thead", {}, h("tr", {}, ...["attempt", "input", "cache", "size", "bytes saved"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, ...rows))));
  }

  private shown = { mode: "", count: 0 };

  private renderLog(): void {
    const lines = this.follower?.lines ?? [];
    const parts = byAttempt(lines);
    const chosen = this.attemptSel.value || "all";
    const have = new Set([...this.attemptSel.options].map((o) => o.value));
    for (const n of parts.keys()) {
      if (!have.has(String(n))) this.attemptSel.append(h("option", { value: String(n) }, `attempt ${n}`));
    }
    const atBottom = this.logPre.scrollTop + this.logPre.clientHeight >= this.logPre.scrollHeight - 4;
    if (chosen === "all" && this.shown.mode === "all" && this.shown.count > 0 && lines.length >= this.shown.count) {
      // Following a long log: append the new lines instead of re-setting all of it.
      if (lines.length > this.shown.count) this.logPre.append(`\n${lines.slice(this.shown.count).join("\n")}`);
    } else {
      this.logPre.textContent = chosen === "all" ? lines.join("\n") : (parts.get(Number(chosen)) ?? []).join("\n");
    }
    this.shown = { mode: chosen, count: lines.length };
    if (atBottom) this.logPre.scrollTop = this.logPre.scrollHeight;
    const live = this.model.tasks.get(this.task ?? "");
    this.logNote.textContent = lines.length
      ? `${lines.length} line${lines.length === 1 ? "" : "s"}${this.follower?.truncated ? " (cut: the whole log is archived in object storage)" : ""}${live && !TERMINAL.has(live.state) ? " · following" : ""}`
      : "No log lines yet.";
  }

  destroy(): void {
    this.follower?.stop();
  }
}
