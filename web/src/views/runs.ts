// The home page: recent runs of every DAG name, newest first; filtered by name and state
// (kept in the URL's query, so a filtered list can be shared and survives a reload),
// paginated with the API's cursors, refreshed every few seconds while the tab is visible.
import { ApiError, Unreachable, type Api } from "../api";
import { metricsPath, runPath } from "../router";
import { badge, duration, h, notice, poller, when } from "../ui";

export interface RunSummary {
  dagId: string;
  dagName: string | null;
  state: string;
  submittedAt: number | null;
  startedAt: number | null;
  endedAt: number | null;
  durationMs: number | null;
  taskCount: number | null;
  useCache: boolean;
}

interface RunList {
  runs: RunSummary[];
  next: string | null;
}

export const STATES = ["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const PAGE = 25;
const REFRESH_MS = 3000;

/** What to say when a call failed (with a button to try again at once, if given). */
export function failure(err: unknown, what: string, retry?: () => void): HTMLElement {
  if (err instanceof Unreachable) {
    return notice("error", h("p", {}, h("strong", {}, "The Helios API is unreachable. "),
      `Is it running (`, h("code", {}, "helios dev"), ` or the api service)? The page keeps trying.`),
      retry ? h("button", { type: "button", class: "secondary", onclick: () => retry() }, "Try again now") : null);
  }
  if (err instanceof ApiError && err.needsToken) {
    const which = err.status === 403 ? "A token that may do this is needed" : "An API token is needed";
    return notice("error", h("p", {}, h("strong", {}, which), ` for ${what}. `,
      "Paste one in the form above (", h("code", {}, "API token"), " in the header)."));
  }
  if (err instanceof ApiError) {
    return notice("error", h("p", {}, h("strong", {}, `${err.title}: `), err.detail || `could not load ${what}`));
  }
  return notice("error", h("p", {}, `Could not load ${what}: ${String(err)}`));
}

export function mountRunsList(root: HTMLElement, api: Api): () => void {
  const params = new URLSearchParams(location.search);
  let name = params.get("name") ?? "";
  let state = params.get("state") ?? "";
  // `?limit=` picks the page size (the API allows 1..200).
  const asked = Number(params.get("limit"));
  const pageSize = Number.isInteger(asked) && asked >= 1 && asked <= 200 ? asked : PAGE;
  // Cursors of the pages before this one: "Newer" pops, "Older" pushes.
  const cursors: (string | null)[] = [];
  let cursor: string | null = null;
  let next: string | null = null;
  let alive = true;
  let ctrl: AbortController | null = null;

  const nameInput = h("input", { id: "filter-name", type: "search", value: name, list: "dag-names",
    placeholder: "any name", autocomplete: "off", spellcheck: "false", maxlength: 63 });
  const names = h("datalist", { id: "dag-names" });
  const stateSelect = h("select", { id: "filter-state" },
    h("option", { value: "" }, "any state"),
    ...STATES.map((s) => h("option", { value: s, selected: s === state }, s.toLowerCase())));
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const body = h("div", {});
  const newer = h("button", { type: "button", class: "secondary", disabled: true }, "← Newer");
  const older = h("button", { type: "button", class: "secondary", disabled: true }, "Older →");
  const pageInfo = h("span", { class: "muted" });

  root.replaceChildren(
    h("h1", {}, "Runs"),
    h("form", { class: "filters", role: "search", "aria-label": "Filter runs", onsubmit: (e: Event) => e.preventDefault() },
      h("div", { class: "field" }, h("label", { for: "filter-name" }, "DAG name"), nameInput, names),
      h("div", { class: "field" }, h("label", { for: "filter-state" }, "State"), stateSelect),
      h("a", { class: "button", href: "/submit" }, "Submit a DAG")),
    status, body,
    h("nav", { class: "pager", "aria-label": "Pages" }, newer, pageInfo, older));

  function syncUrl(): void {
    const q = new URLSearchParams();
    if (name) q.set("name", name);
    if (state) q.set("state", state);
    if (pageSize !== PAGE) q.set("limit", String(pageSize));
    const search = q.toString() ? `?${q}` : "";
    if (search !== location.search) history.replaceState(null, "", `/${search}`);
  }

  function table(runs: RunSummary[]): HTMLElement {
    const rows = runs.map((r) => h("tr", {},
      h("td", {}, h("a", { href: runPath(r.dagId), class: "mono", "aria-label": `Run ${r.dagId} of ${r.dagName ?? "unknown"}` }, r.dagId.slice(0, 12))),
      h("td", {}, r.dagName
        ? h("a", { href: metricsPath(r.dagName), class: "ellipsis", title: `Metrics of ${r.dagName}` }, r.dagName)
        : "—"),
      h("td", {}, badge(r.state)),
      h("td", {}, when(r.submittedAt)),
      h("td", { class: "num" }, r.durationMs !== null ? duration(r.durationMs)
        : r.state === "RUNNING" && r.startedAt ? `${duration(Date.now() - r.startedAt * 1000)} so far` : "—"),
      h("td", { class: "num" }, r.taskCount ?? "—"),
      h("td", {}, r.useCache ? "on" : "off")));
    return h("div", { class: "table-wrap" }, h("table", { id: "runs-table" },
      h("caption", { class: "muted", style: "text-align:left" }, "Newest first"),
      h("thead", {}, h("tr", {}, ...["Run", "DAG name", "State", "Submitted", "Duration", "Tasks", "Cache"]
        .map((t) => h("th", { scope: "col", class: t === "Duration" || t === "Tasks" ? "num" : null }, t)))),
      h("tbody", {}, ...rows)));
  }

  function empty(): HTMLElement {
    if (name || state) {
      return notice("empty", h("p", {}, "No runs match these filters. ",
        h("button", { type: "button", class: "secondary", onclick: () => { nameInput.value = ""; stateSelect.value = ""; filtersChanged(); } }, "Clear filters")));
    }
    return notice("empty", h("p", {}, h("strong", {}, "No runs yet.")),
      h("p", {}, h("a", { href: "/submit" }, "Submit a DAG"), " from this page (the seed example is ready to go), or from a shell: ",
        h("code", {}, "helios submit examples/cache-test.yaml --follow"), "."));
  }

  async function load(quiet: boolean): Promise<void> {
    ctrl?.abort();
    const mine = (ctrl = new AbortController());
    const q = new URLSearchParams({ limit: String(pageSize) });
    if (name) q.set("name", name);
    if (state) q.set("state", state);
    if (cursor) q.set("cursor", cursor);
    if (!quiet) status.textContent = "Loading…";
    try {
      const list = await api.get<RunList>(`/dags?${q}`, mine.signal);
      if (!alive || mine.signal.aborted) return;
      next = list.next;
      body.replaceChildren(list.runs.length ? table(list.runs) : empty());
      status.textContent = list.runs.length ? `${list.runs.length} run${list.runs.length === 1 ? "" : "s"} shown${cursor ? "" : ", updating live"}` : "";
    } catch (err) {
      if (!alive || mine.signal.aborted) return;
      status.textContent = "";
      // Keep the last good table under the message: a blip should not blank the page.
      body.querySelector(".notice.error")?.remove();
      body.prepend(failure(err, "the runs", () => void load(false)));
    }
    newer.disabled = cursors.length === 0;
    older.disabled = next === null;
    pageInfo.textContent = `Page ${cursors.length + 1}`;
  }

  const refresh = poller(REFRESH_MS, () => load(true));

  let typing: number | undefined;
  function filtersChanged(): void {
    name = nameInput.value.trim();
    state = stateSelect.value;
    cursors.length = 0;
    cursor = null;
    syncUrl();
    void load(false);
    refresh.restart();
  }
  nameInput.addEventListener("input", () => {
    window.clearTimeout(typing);
    typing = window.setTimeout(filtersChanged, 300);
  });
  stateSelect.addEventListener("change", filtersChanged);
  older.addEventListener("click", () => {
    if (next === null) return;
    cursors.push(cursor);
    cursor = next;
    void load(false);
  });
  newer.addEventListener("click", () => {
    if (!cursors.length) return;
    cursor = cursors.pop() ?? null;
    void load(false);
  });
  const onVisible = (): void => { if (document.visibilityState === "visible") void load(true); };
  document.addEventListener("visibilitychange", onVisible);

  // Names for the filter's suggestions (best effort: the list works without them).
  api.get<{ names: string[] }>("/dag-names").then((r) => {
    names.replaceChildren(...r.names.slice(0, 200).map((n) => h("option", { value: n })));
  }).catch(() => {});

  void load(false);
  refresh.restart();
  return () => {
    alive = false;
    ctrl?.abort();
    refresh.stop();
    window.clearTimeout(typing);
    document.removeEventListener("visibilitychange", onVisible);
  };
}
