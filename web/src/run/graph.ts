// The DAG drawn in SVG from a layout. Nodes are built once per layout; a state change
// touches one node's class and label. Keyboard: the graph is one tab stop (roving
// tabindex); arrow keys move to the nearest node that way, Enter or Space opens it.
import { NODE_H, NODE_W, type Layout } from "./layout";
import { svg } from "../ui";

export interface NodeInfo {
  state: string;
  /** "3 attempts", "12/20 done", ...: shown under the name. */
  sub: string;
}

/** A name cut to fit the node; the whole name stays in the accessible label. */
export function fit(name: string, max = 24): string {
  return name.length <= max ? name : `${name.slice(0, max - 1)}…`;
}

interface DrawnNode {
  g: SVGGElement;
  sub: SVGTextElement;
  state: string;
  x: number;
  y: number;
}

export class GraphView {
  readonly root: HTMLElement;
  private readonly svgEl: SVGSVGElement;
  private readonly nodes = new Map<string, DrawnNode>();
  private focused: string | null = null;
  private selected: string | null = null;
  private scale = 1;
  private size = { w: 0, h: 0 };

  constructor(private readonly onOpen: (group: string, viaKeyboard: boolean) => void) {
    this.root = document.createElement("div");
    this.root.className = "rv-graph";
    this.svgEl = svg("svg", { role: "group", "aria-label": "Task graph (arrow keys move between tasks, Enter opens one)" });
    this.root.append(this.svgEl);
    this.svgEl.addEventListener("click", (ev) => {
      const g = (ev.target as Element).closest<SVGGElement>("g.rv-node");
      if (g?.dataset.group) this.open(g.dataset.group, false);
    });
    this.svgEl.addEventListener("keydown", (ev) => this.key(ev));
    this.svgEl.addEventListener("focusin", (ev) => {
      const g = (ev.target as Element).closest<SVGGElement>("g.rv-node");
      if (g?.dataset.group) this.focused = g.dataset.group;
    });
  }

  /**
   * Draw every node and edge at the layout's positions. The first drawing is one markup
   * string (one parse instead of thousands of createElementNS calls); a new layout of the
   * same nodes (ELK's after the quick one) only moves them.
   */
  draw(layout: Layout, edges: [string, string][], info: (group: string) => NodeInfo): void {
    const hadFocus = this.svgEl.contains(document.activeElement);
    const w = Math.ceil(layout.width), hgt = Math.ceil(layout.height);
    this.size = { w, h: hgt };
    this.svgEl.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
    this.applyScale();
    this.svgEl.dataset.engine = layout.engine;
    const path = edgePath(layout, edges);
    const same = this.nodes.size === layout.positions.size && [...layout.positions.keys()].every((k) => this.nodes.has(k));
    if (same) {
      for (const [group, pos] of layout.positions) {
        const n = this.nodes.get(group)!;
        n.x = pos.x;
        n.y = pos.y;
        n.g.setAttribute("transform", `translate(${pos.x},${pos.y})`);
      }
      this.svgEl.querySelector(".rv-edge")?.setAttribute("d", path);
      return;
    }
    const parts = [
      '<defs><marker id="rv-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto">',
      '<path d="M0,0L8,4L0,8z" class="rv-arrowhead"/></marker></defs>',
      `<g class="rv-edges" aria-hidden="true"><path class="rv-edge" marker-end="url(#rv-arrow)" d="${path}"/></g><g class="rv-nodes">`,
    ];
    const states = new Map<string, NodeInfo>();
    for (const [group, pos] of layout.positions) {
      const i = info(group);
      states.set(group, i);
      const label = esc(labelOf(group, i));
      parts.push(
        `<g class="rv-node state-${esc(i.state.toLowerCase())}" data-state="${esc(i.state)}" transform="translate(${pos.x},${pos.y})"`,
        ` tabindex="-1" role="button" data-group="${esc(group)}" aria-label="${label}"><title>${label}</title>`,
        `<rect width="${NODE_W}" height="${NODE_H}" rx="7"/><text x="10" y="16" class="rv-name">${esc(fit(group))}</text>`,
        `<text x="10" y="32" class="rv-sub">${esc(subOf(i))}</text></g>`,
      );
    }
    parts.push("</g>");
    this.svgEl.innerHTML = parts.join("");
    this.nodes.clear();
    for (const g of this.svgEl.querySelectorAll<SVGGElement>("g.rv-node")) {
      const group = g.dataset.group!;
      const pos = layout.positions.get(group)!;
      this.nodes.set(group, { g, sub: g.lastElementChild as SVGTextElement, state: states.get(group)!.state, x: pos.x, y: pos.y });
    }
    // Keep focus and selection across a re-layout.
    const focus = this.focused && this.nodes.has(this.focused) ? this.focused : this.nodes.keys().next().value ?? null;
    this.focused = null;
    this.setTabStop(focus);
    if (this.selected) this.select(this.selected);
    if (hadFocus && focus) this.nodes.get(focus)?.g.focus();
  }

  /** Zoom by a factor, or to fit the graph's width in its box ("fit"); returns the scale. */
  zoom(by: number | "fit"): number {
    const fit = Math.min(1, (this.root.clientWidth - 4) / Math.max(1, this.size.w));
    this.scale = by === "fit" ? fit : Math.min(2, Math.max(Math.min(fit, 0.1), this.scale * by));
    this.applyScale();
    return this.scale;
  }

  private applyScale(): void {
    this.svgEl.setAttribute("width", String(Math.ceil(this.size.w * this.scale)));
    this.svgEl.setAttribute("height", String(Math.ceil(this.size.h * this.scale)));
  }

  /** Repaint one node after its state changed. */
  update(group: string, i: NodeInfo): void {
    const n = this.nodes.get(group);
    if (n) this.paint(group, n, i);
  }

  private paint(group: string, n: DrawnNode, i: NodeInfo): void {
    if (n.state !== i.state) {
      n.g.classList.remove(`state-${n.state.toLowerCase()}`);
      n.g.classList.add(`state-${i.state.toLowerCase()}`);
      n.g.dataset.state = i.state;
      n.state = i.state;
    }
    const sub = subOf(i);
    if (n.sub.textContent === sub) return;
    n.sub.textContent = sub;
    const aria = labelOf(group, i);
    n.g.setAttribute("aria-label", aria);
    (n.g.firstChild as SVGTitleElement).textContent = aria;
  }

  select(group: string | null): void {
    if (this.selected) this.nodes.get(this.selected)?.g.classList.remove("selected");
    this.selected = group;
    const n = group ? this.nodes.get(group) : undefined;
    if (n) {
      n.g.classList.add("selected");
      n.g.setAttribute("aria-pressed", "true");
    }
    for (const [name, other] of this.nodes) if (name !== group) other.g.removeAttribute("aria-pressed");
  }

  focusNode(group: string): void {
    const n = this.nodes.get(group);
    if (!n) return;
    this.setTabStop(group);
    n.g.focus();
    this.reveal(n);
  }

  /** Scroll a node into the box without moving focus. */
  show(group: string): void {
    const n = this.nodes.get(group);
    if (n) this.reveal(n);
  }

  private setTabStop(group: string | null): void {
    if (this.focused && this.focused !== group) this.nodes.get(this.focused)?.g.setAttribute("tabindex", "-1");
    this.focused = group;
    if (group) this.nodes.get(group)?.g.setAttribute("tabindex", "0");
  }

  private reveal(n: DrawnNode): void {
    const r = this.root;
    const k = this.scale;
    const x = n.x * k, y = n.y * k;
    if (x < r.scrollLeft || x + NODE_W * k > r.scrollLeft + r.clientWidth) r.scrollLeft = x - 24;
    if (y < r.scrollTop || y + NODE_H * k > r.scrollTop + r.clientHeight) r.scrollTop = y - 24;
  }

  private open(group: string, viaKeyboard: boolean): void {
    this.setTabStop(group);
    this.onOpen(group, viaKeyboard);
  }

  private key(ev: KeyboardEvent): void {
    const cur = this.focused ? this.nodes.get(this.focused) : undefined;
    if (!cur || !this.focused) return;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      this.open(this.focused, true);
      return;
    }
    const dir = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] }[ev.key];
    if (!dir) return;
    ev.preventDefault();
    const next = nearest(cur, dir as [number, number], this.nodes);
    if (next) this.focusNode(next);
  }
}

function subOf(i: NodeInfo): string {
  return `${i.state.replace("_", " ").toLowerCase()}${i.sub ? ` · ${i.sub}` : ""}`;
}

function labelOf(group: string, i: NodeInfo): string {
  return `${group}: ${subOf(i)}`;
}

const ESC: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text for markup (task names are DNS labels, but nothing here trusts that). */
export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESC[c]);
}

/** All edges as one path: a 1,000-task graph draws them as one element, not thousands. */
function edgePath(layout: Layout, edges: [string, string][]): string {
  let d = "";
  for (const [a, b] of edges) {
    const p = layout.positions.get(a);
    const q = layout.positions.get(b);
    if (!p || !q) continue;
    const x1 = p.x + NODE_W, y1 = p.y + NODE_H / 2, x2 = q.x, y2 = q.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    d += `M${x1},${y1}C${mid},${y1} ${mid},${y2} ${x2 - 4},${y2}`;
  }
  return d;
}

/** The closest node in a direction, preferring ones straight ahead. */
function nearest(from: { x: number; y: number }, [dx, dy]: [number, number], nodes: Map<string, DrawnNode>): string | null {
  let best: string | null = null;
  let bestScore = Infinity;
  for (const [name, n] of nodes) {
    const vx = n.x - from.x, vy = n.y - from.y;
    const ahead = vx * dx + vy * dy;
    if (ahead <= 0) continue;
    const side = Math.abs(vx * dy) + Math.abs(vy * dx);
    const score = ahead + side * 3;
    if (score < bestScore) {
      bestScore = score;
      best = name;
    }
  }
  return best;
}
