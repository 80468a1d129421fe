// The page's shell: navigation, the token form, and one mounted view at a time.
import "./styles.css";
import { Api } from "./api";
import { match, type Route } from "./router";
import { mountRunsList } from "./views/runs";
import { mountTokenForm } from "./views/token";
import { h } from "./ui";

type Unmount = () => void;

const api = new Api("");
const view = document.getElementById("view") as HTMLElement;
const banner = document.getElementById("banner") as HTMLElement;
let unmount: Unmount = () => {};

function title(route: Route): string {
  switch (route.name) {
    case "runs": return "Runs";
    case "submit": return "Submit a DAG";
    case "run": return `Run ${route.dagId}`;
    case "metrics": return `Metrics of ${route.dagName}`;
    case "templates": return "Templates";
    default: return "Not found";
  }
}

/**
 * A view whose code is loaded when first needed (the editor and the run view's graph are
 * most of the bundle). Unmounted before it arrived, it never mounts.
 */
function lazy(load: () => Promise<(root: HTMLElement) => Unmount>): Unmount {
  let done = false;
  let inner: Unmount = () => {};
  view.replaceChildren(h("p", { class: "muted", role: "status" }, "Loading…"));
  load().then((mountIt) => {
    if (done) return;
    view.replaceChildren();
    inner = mountIt(view);
  }).catch((err: unknown) => {
    if (!done) view.replaceChildren(h("div", { class: "notice error", role: "alert" },
      "This part of the page could not be loaded (", String(err), "). Reload to try again."));
  });
  return () => {
    done = true;
    inner();
  };
}

function mount(route: Route): Unmount {
  switch (route.name) {
    case "runs": return mountRunsList(view, api);
    case "submit":
      return lazy(async () => { const m = await import("./views/submit"); return (root) => m.mountSubmit(root, api, navigate); });
    case "run": {
      const { dagId } = route;
      return lazy(async () => { const m = await import("./run/view"); return (root) => m.mountRunView(root, dagId, api); });
    }
    case "metrics": {
      const { dagName } = route;
      return lazy(async () => { const m = await import("./views/metrics"); return (root) => m.mountMetrics(root, dagName, api); });
    }
    case "templates":
      return lazy(async () => { const m = await import("./views/templates"); return (root) => m.mountTemplates(root, api, navigate); });
    default:
      view.replaceChildren(h("h1", {}, "Page not found"),
        h("p", {}, "Nothing lives at ", h("code", {}, route.path), ". ", h("a", { href: "/" }, "See all runs"), "."));
      return () => {};
  }
}

function render(focus: boolean): void {
  unmount();
  view.replaceChildren();
  const route = match(location.pathname);
  document.title = `${title(route)} · Helios`;
  for (const a of document.querySelectorAll<HTMLAnchorElement>("nav a[data-nav]")) {
    if (a.dataset.nav === route.name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  unmount = mount(route);
  // A new view is announced by moving focus to it, as a page load would.
  if (focus) view.focus({ preventScroll: true });
}

export function navigate(path: string): void {
  if (path !== location.pathname + location.search) history.pushState(null, "", path);
  render(true);
  window.scrollTo(0, 0);
}

// Same-origin links move within the page instead of reloading it.
document.addEventListener("click", (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = (ev.target as Element | null)?.closest?.("a");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
  if (url.pathname === location.pathname && url.hash) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener("popstate", () => render(true));

// The token form: shown when the API asks for a token, or from the header's button; a saved
// token re-mounts the view (its calls are made again) and focus returns to it.
const tokenForm = mountTokenForm(banner, api, () => render(true));
api.addEventListener("token-needed", (ev) => tokenForm.show((ev as CustomEvent).detail));
document.getElementById("token-button")?.addEventListener("click", () => tokenForm.show(null));

render(false);
