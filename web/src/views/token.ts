// The token form: shown when the API answers 401/403, or from the header's button.
import type { Api, TokenNeededDetail } from "../api";
import { h } from "../ui";

export interface TokenForm {
  show(detail: TokenNeededDetail | null): void;
}

export function mountTokenForm(root: HTMLElement, api: Api, onSaved: () => void): TokenForm {
  let shown: HTMLElement | null = null;

  function hide(): void {
    shown?.remove();
    shown = null;
  }

  function show(detail: TokenNeededDetail | null): void {
    const why = detail === null
      ? "Paste an API token to use instead of the stored one."
      : detail.status === 403
        ? "The stored token may not do this (it lacks the scope). Paste a token that may."
        : detail.refused
          ? "The API did not accept the stored token. Paste another one."
          : "The API needs a token.";
    if (shown) {
      shown.querySelector(".why")!.textContent = why;
      return;
    }
    const input = h("input", { id: "token-input", type: "password", autocomplete: "off", spellcheck: "false", required: true });
    const form = h("form", { class: "token-form", "aria-labelledby": "token-title" },
      h("h2", { id: "token-title" }, "API token"),
      h("p", { class: "why" }, why),
      h("p", { class: "hint" }, "With ", h("code", {}, "helios dev"), " the token is in ",
        h("code", {}, ".helios/auth/token"), ". It is kept in this browser only."),
      h("label", { for: "token-input" }, "Token"),
      input,
      h("div", { class: "actions" },
        h("button", { type: "submit" }, "Save token"),
        h("button", { type: "button", class: "secondary", onclick: () => hide() }, "Close")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!input.value.trim()) return;
      api.setToken(input.value);
      hide();
      onSaved();
    });
    shown = h("section", { class: "token-panel" }, form);
    root.append(shown);
    input.focus();
  }

  return { show };
}
