import type { Api } from "../api";
import { h } from "../ui";

export function mountMetrics(root: HTMLElement, dagName: string, _api: Api): () => void {
  root.replaceChildren(h("h1", {}, `Metrics of ${dagName}`));
  return () => {};
}
