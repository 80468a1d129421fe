"""Turning request bodies into a validated `Dag`, with errors a user can act on."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from pydantic import ValidationError

from helios.dag.graph import FieldError, check_graph
from helios.dag.model import DNS1123_LABEL, IMAGE, MAX_TASKS, Dag
from helios.dag.references import check_templates

MAX_DOCUMENT_BYTES = 1024 * 1024
# A DAG nests six levels at most (dag > tasks > task > resources > limits > cpu); nothing
# legitimate comes near this bound, and YAML's scanner slows down sharply with depth.
MAX_DEPTH = 32

# Quoted scalars (JSON, YAML double and single quotes) and YAML comments: brackets in
# them do not nest. Alternatives are disjoint, so the scan stays linear.
_NOT_STRUCTURE = re.compile(
    rb'"(?:[^"\\]|\\.)*"' rb"|'(?:[^']|'')*'" rb"|(?:^|(?<=[ \t]))#[^\n]*", re.MULTILINE
)
_OTHER_BYTES = bytes(b for b in range(256) if b not in b"[]{}")


class DagError(ValueError):
    """The document is not a runnable DAG; `errors` locate every problem found."""

    def __init__(self, title: str, errors: list[FieldError]):
        errors = [FieldError(e.loc[:200], e.msg[:500]) for e in errors[:100]]  # bounded echo
        self.title = title
        self.errors = errors
        detail = "; ".join(f"{e.loc}: {e.msg}" if e.loc else e.msg for e in errors[:10])
        super().__init__(f"{title}: {detail}" if detail else title)


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _from_validation(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        kind = err["type"]
        loc = _loc(tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == DNS1123_LABEL:
            msg = "must be a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters)"
        elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == IMAGE:
            msg = "must be a container image reference (visible ASCII characters, no spaces)"
        elif (kind == "too_short" and loc.endswith("command")) or (
                kind == "string_too_short" and err.get("ctx", {}).get("min_length") == 1):
            msg = "must not be empty"
        elif kind == "value_error":
            msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        else:
            msg = err["msg"]
        errors.append(FieldError(loc, msg))
    return errors


def parse_dag(data: Any, *, use_cache: bool | None = None) -> Dag:
    """Validate a decoded document; `use_cache` overrides the document's own flag."""
    if not isinstance(data, dict):
        raise DagError("invalid DAG", [FieldError("", "the document must be a mapping")])
    tasks = data.get("tasks")
    if isinstance(tasks, list) and len(tasks) > MAX_TASKS:
        raise DagError(
            "invalid DAG", [FieldError("tasks", f"{len(tasks)} tasks; at most {MAX_TASKS} allowed")]
        )
    if use_cache is not None:
        data = {**data, "useCache": use_cache}
    try:
        dag = Dag.model_validate(data)
    except ValidationError as exc:
        raise DagError("invalid DAG", _from_validation(exc)) from None
    errors = check_graph(dag)
    if errors:
        raise DagError("invalid DAG", errors)
    return dag


def parse_dag_document(body: bytes, content_type: str = "application/json") -> Dag:
    """Decode a JSON or YAML request body (size-checked) and validate it."""
    if len(body) > MAX_DOCUMENT_BYTES:
        raise DagError(
            "document too large",
            [FieldError("", f"{len(body)} bytes; at most {MAX_DOCUMENT_BYTES} allowed")],
        )
    media = content_type.split(";")[0].strip().lower()
    if flow_depth(body, MAX_DEPTH) > MAX_DEPTH:
        raise DagError("document too deeply nested",
                       [FieldError("", f"nesting deeper than {MAX_DEPTH} levels")])
    try:
        if media in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
            data = yaml.load(body, Loader=_SafeNoAliasLoader)
        else:
            data = json.loads(body, object_pairs_hook=_unique_keys)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        kind = "YAML" if media.endswith("yaml") else "JSON"
        raise DagError(f"malformed {kind}", [FieldError("", _short(str(exc)))]) from None
    dag = parse_dag(data)
    # Template references are checked where documents come in; a stored definition is
    # rendered already (a parameter's value may hold '{{'), so `parse_dag` leaves them be.
    errors = check_templates(dag)
    if errors:
        raise DagError("invalid DAG", errors)
    return dag


def flow_depth(body: bytes, stop_at: int) -> int:
    """How deep `[`/`{` nest outside quoted strings and comments, counting no further than
    `stop_at + 1`: a cheap linear pre-scan, so a megabyte of `[` is refused before a parser
    spends seconds on it. It may over- or under-count odd YAML (an apostrophe in a plain
    scalar); the parser's own depth bound and the caller's time bound still hold."""
    depth = 0
    for byte in _NOT_STRUCTURE.sub(b"", body).translate(None, _OTHER_BYTES):
        if byte in b"[{":
            depth += 1
            if depth > stop_at:
                return depth
        elif depth:
            depth -= 1
    return depth if depth <= stop_at else stop_at + 1


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object must not repeat a key: the last one silently winning hides typos."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:60]!r}")
        out[key] = value
    return out


def _short(text: str) -> str:
    return " ".join(text.split())[:300]


class _SafeNoAliasLoader(yaml.SafeLoader):
    """SafeLoader without aliases (a billion-laughs document cannot expand in memory) and
    with a nesting bound (block nesting by indentation escapes the bracket pre-scan)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not allowed", event.start_mark
            )
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key[:60]!r}", key_node.start_mark)
            seen.add(key) if isinstance(key, str) else None
        return super().construct_mapping(node, deep=deep)
