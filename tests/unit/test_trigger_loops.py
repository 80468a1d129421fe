"""runSucceeded triggers cannot form a loop (each success would start the next run)."""

from __future__ import annotations

from helios.schedules.records import SuccessSource, TriggerBody, TriggerRecord
from services.api.triggers import reaches, success_edges


def chain(name: str, source: str, template: str) -> TriggerRecord:
    body = TriggerBody(template=template, source=SuccessSource(kind="runSucceeded", template=source))
    return TriggerRecord(name=name, body=body, created_at=0.0)


def test_a_trigger_that_closes_a_loop_is_found() -> None:
    edges = success_edges([chain("ab", "a", "b"), chain("bc", "b", "c")], but="new")
    assert reaches(edges, "c", "a") is False  # a -> b -> c, then c -> a is not yet there
    assert reaches(edges, "a", "c") is True   # so adding c -> a closes a loop
    assert reaches(edges, "b", "b") is True   # a DAG triggering itself
    # Replacing trigger `bc` (b -> c) drops its old edge from the check.
    assert reaches(success_edges([chain("ab", "a", "b"), chain("bc", "b", "c")], but="bc"),
                   "a", "c") is False
