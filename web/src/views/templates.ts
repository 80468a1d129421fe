import type { Api } from "../api";
import { h } from "../ui";

export function mountTemplates(root: HTMLElement, _api: Api, _navigate: (path: string) => void): () => void {
  root.replaceChildren(h("h1", {}, "Templates"));
  return () => {};
}
