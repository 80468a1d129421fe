// Submit: a YAML editor (CodeMirror 6) with the seed example, the "Enable cache" checkbox,
// a live preview of the task graph, and the API's validation errors shown at their lines
// (the problem+json `errors[].field` paths are found in the document's YAML AST).
import { yaml } from "@codemirror/lang-yaml";
import { lintGutter, setDiagnostics, type Diagnostic } from "@codemirror/lint";
import { Compartment, EditorSelection } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { basicSetup } from "codemirror";
import { ApiError, type Api, type FieldError } from "../api";
import { locate, preview } from "../dagdoc";
import { metricsPath, runPath } from "../router";
import { SEED } from "../seed";
import { h } from "../ui";
import { editorTheme } from "./editortheme";
import { drawPreview } from "./preview";
import { failure } from "./runs";

// The draft survives a reload of this tab (not other tabs, not a new session).
const DRAFT_KEY = "helios.draft";

interface Submitted {
  dagId: string;
  dagName: string;
}

export function mountSubmit(root: HTMLElement, api: Api, navigate: (path: string) => void): () => void {
  const initial = new URLSearchParams(location.search).get("example") === "seed"
    ? SEED : sessionStorage.getItem(DRAFT_KEY) ?? SEED;
  const editorHost = h("div", { class: "editor", id: "dag-editor" });
  const cache = h("input", { type: "checkbox", id: "use-cache", checked: true });
  const submit = h("button", { type: "submit", id: "submit-dag" }, "Submit");
  const result = h("div", { id: "submit-result", "aria-live": "polite" });
  const previewBox = h("div", { class: "preview", id: "dag-preview" });
  const metricsLink = h("p", { class: "muted" });
  let busy = false;
  let timer: number | undefined;

  const form = h("form", { id: "submit-form", "aria-labelledby": "submit-title" },
    h("h1", { id: "submit-title" }, "Submit a DAG"),
    h("div", { class: "submit-grid" },
      h("div", {},
        h("p", { id: "editor-help", class: "muted" },
          "YAML or JSON. Ctrl+Enter submits; Tab moves on to the next control."),
        editorHost,
        h("div", { class: "actions", style: "margin-top:0.6rem" },
          h("label", { class: "check", for: "use-cache" }, cache, "Enable cache"),
          submit,
          h("button", { type: "button", class: "secondary", onclick: () => replace(SEED) }, "Reset to the seed example")),
        result),
      h("div", {},
        h("h2", { id: "preview-title" }, "Preview"),
        previewBox,
        metricsLink)));
  root.replaceChildren(form);

  function diagnostics(errors: FieldError[], text: string): { diags: Diagnostic[]; lines: (number | null)[] } {
    const diags: Diagnostic[] = [];
    const lines: (number | null)[] = [];
    for (const e of errors) {
      const at = locate(text, e.field, e.reason);
      lines.push(at?.line ?? null);
      if (at) diags.push({ from: at.from, to: Math.max(at.to, at.from), severity: "error",
        message: e.field ? `${e.field}: ${e.reason}` : e.reason });
    }
    return { diags, lines };
  }

  function goToLine(line: number): void {
    const l = view.state.doc.line(Math.min(line, view.state.doc.lines));
    view.dispatch({ selection: EditorSelection.cursor(l.from), scrollIntoView: true });
    view.focus();
  }

  function showErrors(err: ApiError, text: string): void {
    const { diags, lines } = diagnostics(err.errors, text);
    view.dispatch(setDiagnostics(view.state, diags));
    const items = err.errors.map((e, i) => {
      const line = lines[i];
      return h("li", {},
        line !== null
          ? h("button", { type: "button", class: "link", onclick: () => goToLine(line) }, `Line ${line}`)
          : h("span", {}, "Document"),
        ": ", e.field ? h("code", {}, e.field) : null, e.field ? " " : null, e.reason);
    });
    result.replaceChildren(h("div", { class: "notice error", role: "alert", id: "submit-errors" },
      h("p", {}, h("strong", {}, `${err.title}`),
        err.errors.length ? ` (${err.errors.length} problem${err.errors.length === 1 ? "" : "s"})` : `: ${err.detail}`),
      items.length ? h("ul", { class: "errors" }, ...items) : null));
  }

  function refreshPreview(): void {
    const text = view.state.doc.toString();
    sessionStorage.setItem(DRAFT_KEY, text);
    const p = preview(text);
    drawPreview(previewBox, p);
    // Syntax errors are shown as soon as they are typed, at their place.
    view.dispatch(setDiagnostics(view.state, p.syntax.map((s) => ({
      from: Math.min(s.from, text.length), to: Math.min(s.to, text.length), severity: "error" as const,
      message: `YAML: ${s.message}` }))));
    metricsLink.replaceChildren(...(p.name && /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(p.name)
      ? [h("a", { href: metricsPath(p.name) }, `Metrics of ${p.name}`), " (cached and non-cached runs, durations, cache speedup)"]
      : []));
  }

  async function send(): Promise<void> {
    if (busy) return;
    busy = true;
    // A preview still pending would clear the errors this submission is about to show.
    window.clearTimeout(timer);
    refreshPreview();
    submit.disabled = true;
    submit.textContent = "Submitting…";
    const text = view.state.doc.toString();
    try {
      const useCache = cache.checked ? "true" : "false";
      const run = await api.post<Submitted>(`/dags?useCache=${useCache}`, text, "application/yaml");
      result.replaceChildren();
      navigate(runPath(run.dagId));
      return;
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) showErrors(err, text);
      else result.replaceChildren(failure(err, "the submission"));
    } finally {
      busy = false;
      submit.disabled = false;
      submit.textContent = "Submit";
    }
  }

  // The editor's colours follow the system's light/dark setting, as the page's do.
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  const theme = new Compartment();
  const onScheme = (): void => { view.dispatch({ effects: theme.reconfigure(editorTheme(dark.matches)) }); };

  const view = new EditorView({
    doc: initial,
    parent: editorHost,
    extensions: [
      basicSetup,
      yaml(),
      theme.of(editorTheme(dark.matches)),
      lintGutter(),
      keymap.of([{ key: "Mod-Enter", run: () => { void send(); return true; } }]),
      EditorView.contentAttributes.of({ "aria-label": "DAG document (YAML)", "aria-describedby": "editor-help" }),
      EditorView.updateListener.of((u) => {
        if (!u.docChanged) return;
        window.clearTimeout(timer);
        timer = window.setTimeout(refreshPreview, 250);
      }),
    ],
  });

  function replace(text: string): void {
    view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    result.replaceChildren();
    refreshPreview();
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void send();
  });
  refreshPreview();
  dark.addEventListener("change", onScheme);
  return () => {
    dark.removeEventListener("change", onScheme);
    window.clearTimeout(timer);
    view.destroy();
  };
}
