// Small DOM helpers shared by the views (no framework: the views are few and plain).

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** An element: `on*` attributes given functions become listeners; false/null are skipped. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, ...children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element with its attributes (the graph and the submit preview draw with it). */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

export function append(el: Element, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "number" ? String(c) : c);
  }
}

/** "850 ms", "4.2 s", "3 min 05 s", "1 h 02 min"; "—" when unknown. */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.round(s - m * 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

/** "0 B", "850 B", "1.5 KiB", "12 MiB" (binary units). */
export function bytes(n: number | undefined | null): string {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${units[i]}`;
}

/** A timestamp given in seconds or milliseconds since the epoch (or ISO), local time. */
export function when(value: number | string | null | undefined): string {
  const d = toDate(value);
  return d ? d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" }) : "—";
}

export function toDate(value: number | string | null | undefined): Date | null {
  if (value === null || value === undefined || value === "") return null;
  let n = typeof value === "number" ? value : Number(value);
  if (!Number.isFinite(n)) {
    const d = new Date(String(value));
    return Number.isNaN(d.getTime()) ? null : d;
  }
  if (n < 1e11) n *= 1000; // seconds
  return new Date(n);
}

/** A state badge: text and a class the stylesheet colours (never colour alone). */
export function badge(state: string): HTMLElement {
  return h("span", { class: `badge state-${state.toLowerCase()}` }, state);
}

/** A message that explains an empty or failed view. */
export function notice(kind: "info" | "error" | "empty", ...children: Child[]): HTMLElement {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, ...children);
}

/** Calls `tick` every `ms` while the tab is visible; each wait starts when the last tick ended
 * (a slow API never gets requests piled up). `restart()` begins a fresh wait, `stop()` ends it. */
export function poller(ms: number, tick: () => Promise<void>): { restart(): void; stop(): void } {
  let timer: number | undefined;
  let stopped = false;
  function restart(): void {
    window.clearTimeout(timer);
    if (stopped) return;
    timer = window.setTimeout(async () => {
      if (document.visibilityState === "visible") await tick();
      restart();
    }, ms);
  }
  return { restart, stop: () => { stopped = true; window.clearTimeout(timer); } };
}
