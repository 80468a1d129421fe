// Placeholder: the run view (graph, timeline, logs, cancel/retry) is built here.
import type { Api } from "../api";

export function mountRunView(root: HTMLElement, dagId: string, _api: Api): () => void {
  const h1 = document.createElement("h1");
  h1.textContent = `Run ${dagId}`;
  root.replaceChildren(h1);
  return () => {};
}
