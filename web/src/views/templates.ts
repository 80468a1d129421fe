// Stored DAGs with parameters (`GET /api/v1/templates`), listed read-only. The route is
// newer than this page: a server without it gets a plain explanation, not an error.
import { ApiError, type Api } from "../api";
import { h, notice } from "../ui";
import { failure } from "./runs";

interface Template {
  name: string;
  description?: string | null;
  params?: unknown;
  [key: string]: unknown;
}

function paramNames(params: unknown): string[] {
  if (Array.isArray(params)) {
    return params.map((p) => (typeof p === "object" && p !== null && "name" in p ? String((p as { name: unknown }).name) : String(p)));
  }
  if (typeof params === "object" && params !== null) return Object.keys(params);
  return [];
}

export function mountTemplates(root: HTMLElement, api: Api, _navigate: (path: string) => void): () => void {
  const body = h("div", {}, h("p", { class: "muted", role: "status" }, "Loading…"));
  root.replaceChildren(h("h1", {}, "Templates"), body);
  let alive = true;
  const ctrl = new AbortController();
  api.get<{ templates?: Template[] } | Template[]>("/templates", ctrl.signal).then((r) => {
    if (!alive) return;
    const list = Array.isArray(r) ? r : r.templates ?? [];
    if (!list.length) {
      body.replaceChildren(notice("empty", h("p", {}, "No templates are stored yet.")));
      return;
    }
    body.replaceChildren(h("div", { class: "table-wrap" }, h("table", { id: "templates-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Description"), h("th", { scope: "col" }, "Parameters"))),
      h("tbody", {}, ...list.map((t) => h("tr", {},
        h("td", { class: "mono" }, String(t.name)),
        h("td", {}, t.description ? String(t.description) : "—"),
        h("td", {}, paramNames(t.params).join(", ") || "—")))))));
  }).catch((err: unknown) => {
    if (!alive || ctrl.signal.aborted) return;
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
      body.replaceChildren(notice("info", h("p", {}, "This Helios server does not store templates.")));
      return;
    }
    body.replaceChildren(failure(err, "the templates"));
  });
  return () => {
    alive = false;
    ctrl.abort();
  };
}
