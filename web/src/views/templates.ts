// Stored DAGs with parameters (`/api/v1/templates`): the list, and for one of them a form
// of its declared parameters that starts a run (`POST /templates/{name}/runs`). Values are
// sent as typed in: the API reads a string given for an int, number, bool or list
// parameter as that type's text form, and names the parameter when a value is wrong.
// Each row also shows the stored DAG's schedule (./schedules) and links to its runs.
import { ApiError, type Api } from "../api";
import { runPath } from "../router";
import { h, notice, when } from "../ui";
import { failure } from "./runs";
import { loadSchedules, scheduleCell, setPaused, type Schedule } from "./schedules";

interface TemplateInfo {
  name: string;
  latest: number;
  dagName: string;
  createdAt: number;
  updatedAt: number;
}

interface Param {
  name: string;
  type?: "string" | "int" | "number" | "bool" | "list";
  default?: unknown;
  description?: string;
  enum?: unknown[] | null;
}

interface Template extends TemplateInfo {
  version: number;
  params: Param[];
}

const text = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v));

function paramField(p: Param, i: number): { row: HTMLElement; value: () => unknown | undefined } {
  const id = `param-${i}`;
  const required = p.default === null || p.default === undefined;
  const hint = [p.type ?? "string", required ? "required" : `default ${text(p.default)}`].join(", ");
  const label = h("label", { for: id }, p.name, " ", h("span", { class: "muted" }, `(${hint})`));
  const help = p.description ? h("p", { class: "muted", id: `${id}-help` }, p.description) : null;
  const described = help ? `${id}-help` : null;
  if (p.type === "bool") {
    const box = h("input", { type: "checkbox", id, checked: p.default === true, "aria-describedby": described });
    return { row: h("div", { class: "field" }, h("label", { class: "check", for: id }, box, p.name), help), value: () => box.checked };
  }
  if (p.enum?.length) {
    const sel = h("select", { id, "aria-describedby": described },
      ...p.enum.map((v) => h("option", { value: text(v), selected: text(v) === text(p.default) }, text(v))));
    return { row: h("div", { class: "field" }, label, sel, help), value: () => sel.value };
  }
  const input = h("input", { id, type: "text", required, placeholder: required ? "" : text(p.default),
    spellcheck: "false", "aria-describedby": described });
  return {
    row: h("div", { class: "field" }, label, input, help),
    value: () => (input.value === "" ? undefined : input.value),
  };
}

export function mountTemplates(root: HTMLElement, api: Api, navigate: (path: string) => void): () => void {
  const list = h("div", {}, h("p", { class: "muted", role: "status" }, "Loading…"));
  const detail = h("section", { id: "template-detail", "aria-live": "polite" });
  const message = h("div", { id: "schedule-message", "aria-live": "polite" });
  root.replaceChildren(h("h1", {}, "Templates"),
    h("p", { class: "muted" }, "Stored DAGs with parameters. Store one with ",
      h("code", {}, "PUT /api/v1/templates/{name}"), "; run it here with your values. Schedule one with ",
      h("code", {}, "helios schedule NAME --cron …"), "; pause or resume it here."),
    list, detail);
  let alive = true;
  const ctrl = new AbortController();

  async function open(name: string): Promise<void> {
    detail.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    let t: Template;
    try {
      t = await api.get<Template>(`/templates/${encodeURIComponent(name)}`, ctrl.signal);
    } catch (err) {
      if (alive) detail.replaceChildren(failure(err, `the template ${name}`));
      return;
    }
    if (!alive) return;
    const fields = t.params.map(paramField);
    const cache = h("input", { type: "checkbox", id: "template-cache", checked: true });
    const result = h("div", {});
    const form = h("form", { "aria-labelledby": "template-title", class: "template-form" },
      h("h2", { id: "template-title" }, `Run ${t.name}`, h("span", { class: "muted" }, ` (version ${t.version}, DAG ${t.dagName})`)),
      ...(fields.length ? fields.map((f) => f.row) : [h("p", { class: "muted" }, "This template has no parameters.")]),
      h("div", { class: "actions", style: "margin-top:0.6rem" },
        h("label", { class: "check", for: "template-cache" }, cache, "Enable cache"),
        h("button", { type: "submit" }, "Run")),
      result);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const params: Record<string, unknown> = {};
      t.params.forEach((p, i) => {
        const v = fields[i].value();
        if (v !== undefined) params[p.name] = v;
      });
      try {
        const run = await api.post<{ dagId: string }>(`/templates/${encodeURIComponent(t.name)}/runs`,
          JSON.stringify({ params, useCache: cache.checked, version: t.version }));
        navigate(runPath(run.dagId));
      } catch (err) {
        if (err instanceof ApiError && err.status === 400) {
          result.replaceChildren(h("div", { class: "notice error", role: "alert" },
            h("p", {}, h("strong", {}, err.title), err.errors.length ? "" : `: ${err.detail}`),
            err.errors.length ? h("ul", { class: "errors" }, ...err.errors.map((e) => h("li", {}, h("code", {}, e.field), " ", e.reason))) : null));
        } else {
          result.replaceChildren(failure(err, "the run"));
        }
      }
    });
    detail.replaceChildren(form);
    (form.querySelector("input, select") as HTMLElement | null)?.focus();
  }

  // One row per stored DAG: its runs (the runs list filtered by its DAG name), its
  // schedule, and buttons to run it and to pause or resume the schedule.
  function row(t: TemplateInfo, known: Map<string, Schedule> | null): HTMLElement {
    const cell = h("td", {}, known ? scheduleCell(known.get(t.name)) : h("span", { class: "muted" }, "—"));
    const actions = h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", "aria-label": `Run ${t.name}…`, onclick: () => void open(t.name) }, "Run…"));
    let toggle: HTMLButtonElement | null = null;
    const show = (s: Schedule | undefined): void => {
      cell.replaceChildren(scheduleCell(s));
      toggle?.remove();
      toggle = null;
      if (!s) return;
      const paused = s.paused;
      const b = h("button", { type: "button", class: "secondary", "aria-label": `${paused ? "Resume" : "Pause"} the schedule of ${t.name}` },
        paused ? "Resume" : "Pause");
      b.addEventListener("click", async () => {
        b.disabled = true;
        message.replaceChildren();
        try {
          const next = await setPaused(api, t.name, !paused);
          if (!alive) return;
          show(next);
          message.replaceChildren(h("p", { class: "muted" }, `The schedule of ${t.name} is ${next.paused ? "paused" : "resumed"}.`));
          toggle?.focus();
        } catch (err) {
          if (!alive) return;
          b.disabled = false;
          message.replaceChildren(failure(err, `${paused ? "resuming" : "pausing"} the schedule of ${t.name}`));
        }
      });
      toggle = b;
      actions.append(b);
    };
    if (known) show(known.get(t.name));
    return h("tr", {},
      h("td", { class: "mono" }, t.name),
      h("td", {}, h("a", { href: `/?name=${encodeURIComponent(t.dagName)}`, "aria-label": `Runs of ${t.dagName}` }, t.dagName)),
      h("td", {}, String(t.latest)),
      h("td", {}, when(t.updatedAt)),
      cell, h("td", {}, actions));
  }

  // A server without the schedules API still lists its templates (schedules shown as "—").
  const schedules = loadSchedules(api, ctrl.signal).catch(() => null);
  api.get<{ templates: TemplateInfo[] }>("/templates", ctrl.signal).then(async (r) => {
    const known = await schedules;
    if (!alive) return;
    const items = r.templates ?? [];
    if (!items.length) {
      list.replaceChildren(notice("empty", h("p", {}, "No templates are stored yet.")));
      return;
    }
    list.replaceChildren(h("div", { class: "table-wrap" }, h("table", { id: "templates-table" },
      h("thead", {}, h("tr", {}, ...["Name", "DAG name (its runs)", "Version", "Updated", "Schedule", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ...items.map((t) => row(t, known))))), message);
  }).catch((err: unknown) => {
    if (!alive || ctrl.signal.aborted) return;
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
      list.replaceChildren(notice("info", h("p", {}, "This Helios server does not store templates.")));
      return;
    }
    list.replaceChildren(failure(err, "the templates"));
  });
  return () => {
    alive = false;
    ctrl.abort();
  };
}
