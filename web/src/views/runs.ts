import type { Api } from "../api";
import { h } from "../ui";

export function mountRunsList(root: HTMLElement, _api: Api): () => void {
  root.replaceChildren(h("h1", {}, "Runs"));
  return () => {};
}
