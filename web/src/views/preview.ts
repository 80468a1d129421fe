// The submit page's preview: the document's tasks as a graph, left to right (dagre),
// drawn as SVG before anything is sent. Large documents are summarised, not drawn.
import { Graph, layout } from "@dagrejs/dagre";
import type { Preview } from "../dagdoc";
import { svg } from "../ui";

const NODE_W = 168;
const NODE_H = 34;
/** Beyond this the preview is a count: laying out 1,000 tasks on every keystroke would lag. */
export const PREVIEW_MAX_TASKS = 300;

function label(name: string): string {
  return name.length > 22 ? `${name.slice(0, 21)}…` : name;
}

/** Draw `p` into `root` (replacing what was there). */
export function drawPreview(root: HTMLElement, p: Preview): void {
  root.replaceChildren();
  const say = (text: string): void => {
    const el = document.createElement("p");
    el.className = "muted";
    el.textContent = text;
    root.append(el);
  };
  if (p.problem) return say(`No preview: ${p.problem}.`);
  if (p.tasks.length > PREVIEW_MAX_TASKS) {
    return say(`${p.tasks.length} tasks, ${p.edges.length} dependencies: too many to draw here; the run view draws them.`);
  }
  const g = new Graph();
  g.setGraph({ rankdir: "LR", nodesep: 14, ranksep: 48, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  const known = new Set(p.tasks);
  for (const t of p.tasks) g.setNode(t, { width: NODE_W, height: NODE_H });
  const unknown: string[] = [];
  for (const [a, b] of p.edges) {
    if (known.has(a)) g.setEdge(a, b);
    else unknown.push(`${b} depends on ${a}, which is not a task`);
  }
  layout(g);
  const { width = NODE_W, height = NODE_H } = g.graph();
  const names = p.tasks.join(", ");
  const root_svg = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `Preview of ${p.name ?? "the DAG"}: ${p.tasks.length} tasks (${names})` });
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "preview-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }));
  defs.append(marker);
  root_svg.append(defs);
  for (const e of g.edges()) {
    const pts = g.edge(e).points ?? [];
    if (!pts.length) continue;
    const d = pts.map((pt: { x: number; y: number }, i: number) => `${i ? "L" : "M"} ${pt.x} ${pt.y}`).join(" ");
    root_svg.append(svg("path", { d, class: "edge", "marker-end": "url(#preview-arrow)" }));
  }
  for (const t of p.tasks) {
    const n = g.node(t);
    const grp = svg("g", { class: "node", transform: `translate(${n.x - NODE_W / 2} ${n.y - NODE_H / 2})` });
    grp.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 6 }));
    const text = svg("text", { x: NODE_W / 2, y: NODE_H / 2 + 4, "text-anchor": "middle" });
    text.textContent = label(t);
    const title = svg("title", {});
    title.textContent = t;
    grp.append(title, text);
    root_svg.append(grp);
  }
  root.append(root_svg);
  for (const u of unknown) say(u);
}
