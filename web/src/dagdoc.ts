// The DAG document as the editor holds it: where a field path of the API's errors is in the
// text, and the task graph for the preview. Pure functions over the `yaml` package's AST.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Node } from "yaml";

export type PathPart = string | number;

/** `tasks[1].depends_on[0]` → ["tasks", 1, "depends_on", 0]; "" → []. */
export function parsePath(path: string): PathPart[] {
  const parts: PathPart[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    parts.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  }
  return parts;
}

export interface Located {
  from: number;
  to: number;
  /** 1-based. */
  line: number;
  /** How much of the path was found in the text (all of it, or up to a missing key). */
  exact: boolean;
}

function rangeOf(node: Node | null | undefined): [number, number] | null {
  const r = node?.range;
  return r ? [r[0], Math.max(r[0], r[1])] : null;
}

/** Where an error's field path is in `text`; the deepest part that exists when a key is
 * missing; a "line N" in the reason (syntax errors) when the path is empty. */
export function locate(text: string, field: string, reason = ""): Located | null {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, keepSourceTokens: false, uniqueKeys: false });
  const at = (from: number, to: number, exact: boolean): Located => {
    // Point at the first line of a multi-line node only: that is where the reader looks.
    const line = lines.linePos(from).line;
    const eol = text.indexOf("\n", from);
    return { from, to: Math.min(to, eol < 0 ? text.length : eol), line, exact };
  };
  const parts = parsePath(field);
  if (parts.length === 0) {
    const m = [...reason.matchAll(/line (\d+)/g)].pop();
    if (!m) return null;
    const n = Number(m[1]);
    const starts = [0, ...[...text.matchAll(/\n/g)].map((x) => (x.index ?? 0) + 1)];
    const from = starts[Math.min(n, starts.length) - 1] ?? 0;
    return at(from, from + 1, true);
  }
  let node: unknown = doc.contents;
  let best = rangeOf(doc.contents as Node | null);
  for (const part of parts) {
    let next: unknown = undefined;
    let keyRange: [number, number] | null = null;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(part));
      if (pair) {
        keyRange = rangeOf(pair.key as Node);
        next = pair.value ?? pair.key;
      }
    } else if (isSeq(node) && typeof part === "number") {
      next = node.items[part];
    }
    if (next === undefined || next === null) {
      return best ? at(best[0], best[1], false) : null;
    }
    // A key's own line is the one to show (the value may start on the next line).
    const r = keyRange ?? rangeOf(next as Node);
    if (r) best = keyRange ? [keyRange[0], rangeOf(next as Node)?.[1] ?? keyRange[1]] : r;
    node = next;
  }
  return best ? at(best[0], best[1], true) : null;
}

export interface Preview {
  name: string | null;
  tasks: string[];
  edges: [string, string][];
  /** A reason the document cannot be previewed (syntax error, no tasks). */
  problem: string | null;
  /** Syntax errors found locally, with where they are. */
  syntax: { message: string; from: number; to: number; line: number }[];
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

/** The task graph of the document: dependencies from `depends_on` and from inputs. */
export function preview(text: string): Preview {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false });
  const syntax = doc.errors.map((e) => ({
    message: e.message.split("\n")[0],
    from: e.pos[0],
    to: Math.max(e.pos[0] + 1, e.pos[1]),
    line: lines.linePos(e.pos[0]).line,
  }));
  const empty = { name: null, tasks: [], edges: [] as [string, string][], syntax };
  if (syntax.length) return { ...empty, problem: `line ${syntax[0].line}: ${syntax[0].message}` };
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    return { ...empty, problem: String(e) };
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return { ...empty, problem: "the document is not a mapping" };
  }
  const d = data as Record<string, unknown>;
  const name = typeof d.dagName === "string" ? d.dagName : null;
  const raw = Array.isArray(d.tasks) ? d.tasks : [];
  const tasks: string[] = [];
  const edges: [string, string][] = [];
  for (const t of raw) {
    if (typeof t !== "object" || t === null || typeof (t as { name?: unknown }).name !== "string") continue;
    const task = t as Record<string, unknown>;
    const me = task.name as string;
    tasks.push(me);
    const from = new Set(strings(task.depends_on));
    for (const input of Array.isArray(task.inputs) ? task.inputs : []) {
      const producer = (input as { fromTask?: unknown } | null)?.fromTask;
      if (typeof producer === "string") from.add(producer);
    }
    for (const f of from) edges.push([f, me]);
  }
  return { name, tasks, edges, syntax, problem: tasks.length ? null : "no tasks yet" };
}
