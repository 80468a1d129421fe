// The YAML editor's colours as CSS variables (styles.css defines them for light and dark),
// so they follow the system setting and keep WCAG AA contrast in both (axe checks it).
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import type { Extension } from "@codemirror/state";
import { EditorView } from "@codemirror/view";
import { tags as t } from "@lezer/highlight";

const highlight = HighlightStyle.define([
  { tag: [t.propertyName, t.definition(t.propertyName), t.labelName], color: "var(--syn-key)" },
  { tag: [t.string, t.special(t.string), t.content, t.attributeValue, t.character], color: "var(--syn-string)" },
  { tag: [t.number, t.bool, t.null, t.keyword, t.atom], color: "var(--syn-literal)" },
  { tag: [t.comment, t.lineComment, t.blockComment, t.meta, t.documentMeta], color: "var(--muted)", fontStyle: "italic" },
  { tag: [t.typeName, t.tagName, t.operator], color: "var(--syn-literal)" },
  { tag: [t.punctuation, t.separator, t.squareBracket, t.brace], color: "var(--fg)" },
  { tag: t.invalid, color: "var(--bad)" },
]);

const base = {
  "&": { color: "var(--fg)", backgroundColor: "var(--bg)" },
  ".cm-content": { caretColor: "var(--fg)" },
  ".cm-cursor, .cm-dropCursor": { borderLeftColor: "var(--fg)" },
  ".cm-activeLine": { backgroundColor: "color-mix(in srgb, var(--accent) 8%, transparent)" },
};

export function editorTheme(dark: boolean): Extension {
  return [EditorView.theme(base, { dark }), syntaxHighlighting(highlight)];
}
