import type { Api } from "../api";
import { h } from "../ui";

export function mountSubmit(root: HTMLElement, _api: Api, _navigate: (path: string) => void): () => void {
  root.replaceChildren(h("h1", {}, "Submit a DAG"));
  return () => {};
}
