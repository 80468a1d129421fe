"""The one template syntax of DAG documents (pure: no I/O, no eval, no shell).

Syntax
======
A reference is a dotted path between double braces, spaces (or tabs) inside optional:

    {{ params.NAME }}   {{params.NAME}}   {{ run.id }}   {{ run.logicalTime }}
    {{ item }}  {{ item.field }}  {{ item.0 }}          (forEach instances, at run time)

Each path segment is letters, digits, `_` or `-`; the first one (the root) starts with a
letter or `_`. A segment of digits indexes a list. Every `{{` opens a reference: a `{{`
that does not form one is an error, so a typo never reaches a task unnoticed. A literal
`{{` is written `{{ "{{" }}` (or `{{ '{{' }}`), and a literal `{` right before a reference
`{{ "{" }}`; `}}` outside a reference is plain text.

Values are turned into text one way, whatever the caller: a string as is; `true`/`false`
for booleans; integers in decimal; other numbers as JSON writes them (`0.5`, `1e+100`);
`null` for None; lists and objects as compact JSON with sorted keys (so equal values
always give equal text, and memoization fingerprints agree).

Deferred references and partial renders
=======================================
`render(text, values, defer=("item", "run.status"))` leaves references whose path is, or
starts with, a deferred path verbatim for a later render (the scheduler renders
`{{ item }}` and `{{ run.status }}` at run time). Such a render, or one with
`partial=True`, is partial: its output is again a template. Escapes are kept as written
and an inserted value's `{{`, and a `{` it ends with (which would otherwise run into a
following reference or brace), are written as escapes, so the later render gives
exactly the value. A render that is not partial is final: its output is plain text.

The API renders a submitted document partially (`helios.dag.references`): a stored
definition is a template whose only `{{` are deferred references and escapes, and the
scheduler renders every task that holds a `{{` once, when it dispatches it.

Substitution is textual and happens before a task starts; the result goes into argv or
the environment as one string each, never through a shell.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

_SEGMENT = r"[A-Za-z0-9_-]+"
_ROOT = r"[A-Za-z_][A-Za-z0-9_-]*"
# One expression inside `{{ }}`: a path, or a quoted `{{` or `{` (the escapes).
_EXPR = re.compile(
    r"\{\{[ \t]*(?:(?P<path>" + _ROOT + r"(?:\." + _SEGMENT + r")*)"
    r"|(?P<escape>\"\{\{?\"|'\{\{?'))[ \t]*\}\}")
_OPEN = "{{"
ESCAPE = '{{ "{{" }}'
BRACE_ESCAPE = '{{ "{" }}'
MAX_REFERENCES = 10_000  # per string: bounded work whatever the input


class TemplateError(ValueError):
    """A string is not a valid template, or names something with no value."""

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message)
        self.position = position


@dataclass(frozen=True, slots=True)
class Ref:
    """One reference: its path (`("params", "x")`), where it is, and its source text."""

    path: tuple[str, ...]
    start: int
    end: int
    raw: str

    @property
    def root(self) -> str:
        return self.path[0]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class _Escape:
    start: int
    end: int
    raw: str

    @property
    def literal(self) -> str:
        return self.raw.strip("{} \t")[1:-1]  # what was quoted: `{{` or `{`


def _scan(text: str) -> list[Ref | _Escape]:
    """Every reference and escape of `text`, in order; a malformed `{{` is an error."""
    out: list[Ref | _Escape] = []
    pos = 0
    while (start := text.find(_OPEN, pos)) != -1:
        match = _EXPR.match(text, start)
        if match is None:
            snippet = text[start:start + 40]
            raise TemplateError(
                f"malformed template expression at character {start}: {snippet!r}; a "
                "reference is {{ params.NAME }}, {{ run.id }} or {{ run.logicalTime }}, "
                f"and a literal '{{{{' is written {ESCAPE}", start)
        if len(out) >= MAX_REFERENCES:
            raise TemplateError(f"more than {MAX_REFERENCES} template expressions in one string")
        path = match.group("path")
        if path is None:
            out.append(_Escape(start, match.end(), match.group()))
        else:
            out.append(Ref(tuple(path.split(".")), start, match.end(), match.group()))
        pos = match.end()
    return out


def has_template(text: str) -> bool:
    """Whether `text` holds any `{{` at all (a cheap test before any parsing)."""
    return _OPEN in text


def references(text: str) -> list[Ref]:
    """The references of `text`, in order (escapes are not references)."""
    return [item for item in _scan(text) if isinstance(item, Ref)]


def is_deferred(path: Sequence[str], defer: Collection[str]) -> bool:
    """Whether a path is one of `defer` or under one (`item.x` is under `item`)."""
    dotted = ".".join(path)
    return any(dotted == d or dotted.startswith(d + ".") for d in defer)


def lookup(values: Mapping[str, object], path: Sequence[str]) -> object:
    """The value at `path`; KeyError naming the path when there is none."""
    current: object = values
    for i, segment in enumerate(path):
        if isinstance(current, Mapping) and segment in current:
            current = current[segment]
        elif (isinstance(current, list | tuple) and segment.isdigit()
              and int(segment) < len(current)):
            current = current[int(segment)]
        else:
            raise KeyError(".".join(path[: i + 1]))
    return current


def to_text(value: object) -> str:
    """A value as the text a task sees (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError(f"{value!r} has no JSON form")
        return json.dumps(value)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"a value of type {type(value).__name__} cannot be rendered: {exc}"
                            ) from None


def render(text: str, values: Mapping[str, object], *, defer: Collection[str] = (),
           partial: bool = False) -> str:
    """`text` with every reference replaced by its value's text.

    References under `defer` are kept verbatim. With `defer` or `partial` the result is a
    template for a later render (escapes kept, a `{{` in a value escaped); otherwise
    escapes become `{{`. An unknown reference raises TemplateError naming it."""
    if _OPEN not in text:
        return text
    partial = partial or bool(defer)
    out: list[str] = []
    pos = 0
    for item in _scan(text):
        out.append(text[pos:item.start])
        pos = item.end
        if isinstance(item, _Escape):
            out.append(item.raw if partial else item.literal)
        elif is_deferred(item.path, defer):
            out.append(item.raw)
        else:
            try:
                value = lookup(values, item.path)
            except KeyError:
                raise TemplateError(f"unknown reference {item.dotted!r}"
                                    f"{_known_hint(values, item.path)}", item.start) from None
            value_text = to_text(value)
            out.append(_escaped(value_text) if partial else value_text)
    out.append(text[pos:])
    return "".join(out)


def _escaped(value_text: str) -> str:
    """A value as a later render reads it back unchanged: its `{{` as the escape, and a
    `{` it ends with too, since the template may go on with `{` or a reference."""
    text = value_text.replace(_OPEN, ESCAPE)
    return text[:-1] + BRACE_ESCAPE if text.endswith("{") else text


def check(text: str, known: Collection[str], *, defer: Collection[str] = ()) -> list[str]:
    """Problems of `text` (empty when fine) given the paths that will have a value:
    `known` holds full paths (`params.x`, `run.id`). A path that descends into a known
    one (`params.cfg.0`) is accepted: its value's shape is only known at render time."""
    try:
        refs = references(text)
    except TemplateError as exc:
        return [str(exc)]
    problems = []
    for ref in refs:
        if is_deferred(ref.path, defer):
            continue
        if not any(ref.dotted == k or ref.dotted.startswith(k + ".") for k in known):
            problems.append(f"unknown reference {ref.dotted!r}{_known_hint_paths(known, ref)}")
    return problems


def _known_hint(values: Mapping[str, object], path: Sequence[str]) -> str:
    parent = values
    for segment in path[:-1]:
        child = parent.get(segment) if isinstance(parent, Mapping) else None
        if not isinstance(child, Mapping):
            break
        parent = child
    else:
        names = sorted(str(k) for k in parent)
        prefix = ".".join(path[:-1])
        if names:
            shown = ", ".join(f"{prefix}.{n}" if prefix else n for n in names[:20])
            return f" (known: {shown})"
    return ""


def _known_hint_paths(known: Collection[str], ref: Ref) -> str:
    same_root = sorted(k for k in known if k.split(".")[0] == ref.root) or sorted(known)
    if not same_root:
        return ""
    return f" (known: {', '.join(same_root[:20])})"
