"""One run of a DAG document: its parameters resolved and its references rendered.

Pure and CPU-bound: the API runs it in its parser workers (`services.api.parsing`), off
the event loop, right after the document is parsed. The result is validated again as a
whole (a value may make an argument too long), so the stored definition is a valid DAG
whose only remaining references are those deferred to run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from helios import templating
from helios.dag.graph import FieldError
from helios.dag.model import Dag
from helios.dag.parse import DagError, parse_dag
from helios.dag.references import is_templated, render_document
from helios.params import ParamError, resolve


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What a run adds to a document: its id, logical time and supplied values."""

    run_id: str
    logical_time: str  # RFC 3339
    params: Mapping[str, object]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.run_id, "logicalTime": self.logical_time, "params": dict(self.params)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSpec:
        return cls(str(data["id"]), str(data["logicalTime"]), dict(data.get("params") or {}))


def rfc3339(moment: datetime) -> str:
    """`2026-12-01T10:00:00Z` (UTC as Z; fractions only when there are some; a naive
    time is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    text = moment.isoformat(timespec=spec)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@dataclass(frozen=True, slots=True)
class Instance:
    dag: Dag  # the definition to store and run
    params: dict[str, Any]  # every declared parameter's value
    templated: bool  # whether `dag` differs from the document it came from


def instantiate(dag: Dag, run: RunSpec) -> Instance:
    """Resolve `run.params` against the declared ones and render the references.
    Raises DagError naming `params.NAME` for a missing or ill-typed value."""
    try:
        values = resolve(dag.params, run.params)
    except ParamError as exc:
        raise DagError("invalid parameters", [
            FieldError(f"params.{p.name}", p.reason) for p in exc.problems]) from None
    if not is_templated(dag):
        return Instance(dag, values, templated=False)
    context = {"params": values, "run": {"id": run.run_id, "logicalTime": run.logical_time}}
    try:
        rendered = render_document(dag.to_document(), context)
    except templating.TemplateError as exc:  # checked at parse time: a bug if it happens
        raise DagError("invalid DAG", [FieldError("", str(exc))]) from None
    return Instance(parse_dag(rendered), values, templated=True)
