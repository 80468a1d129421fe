"""Trigger rules and `when` conditions in the decision functions (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from helios.dag import parse_dag
from helios.messages import TaskReport
from helios.states import RunState, TaskState
from services.scheduler import decide
from services.scheduler.decide import Policy, RunView, TaskView
from services.scheduler.trigger_rules import Verdict, verdict

T = TaskState
POLICY = Policy(retry_backoff_s=0.0)


def dag(*tasks: dict[str, Any], **top: Any) -> Any:
    return parse_dag({"apiVersion": "v1", "dagName": "d", "tasks": list(tasks), **top})


def task(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "i", "command": ["x"], "depends_on": list(deps), **extra}


def start(d: Any, params: dict[str, Any] | None = None) -> RunView:
    view = RunView(d, RunState.RUNNING, {t.name: TaskView() for t in d.all_tasks},
                   started=False, params=params or {})
    decide.on_start(view, POLICY)
    return view


def finish(view: RunView, name: str, ok: bool = True, **kw: Any) -> decide.Plan:
    attempt = view.tasks[name].attempt
    return decide.on_report(view, TaskReport(
        dag_id="r", task=name, attempt=attempt, phase="succeeded" if ok else "failed",
        at=0.0, exit_code=0 if ok else 1, **kw), POLICY)


def state(view: RunView, name: str) -> str:
    return view.tasks[name].state.value


@pytest.mark.parametrize(("rule", "states", "expected"), [
    ("all_succeeded", [T.SUCCEEDED, T.RUNNING], Verdict.WAIT),
    ("all_succeeded", [T.SUCCEEDED, T.SUCCEEDED], Verdict.RUN),
    ("all_succeeded", [T.FAILED, T.RUNNING], Verdict.UPSTREAM_FAILED),
    ("all_succeeded", [T.SKIPPED, T.SUCCEEDED], Verdict.SKIP),
    ("all_done", [T.FAILED, T.RUNNING], Verdict.WAIT),
    ("all_done", [T.FAILED, T.SKIPPED, T.UPSTREAM_FAILED], Verdict.RUN),
    ("any_failed", [T.FAILED, T.RUNNING], Verdict.RUN),
    ("any_failed", [T.SUCCEEDED, T.SKIPPED], Verdict.SKIP),
    ("any_failed", [T.SUCCEEDED, T.RUNNING], Verdict.WAIT),
    ("none_failed", [T.SUCCEEDED, T.SKIPPED], Verdict.RUN),
    ("none_failed", [T.CANCELLED, T.RUNNING], Verdict.UPSTREAM_FAILED),
    ("all_succeeded", [], Verdict.RUN),
])
def test_verdicts(rule: str, states: list[TaskState], expected: Verdict) -> None:
    assert verdict(rule, states) is expected


def test_all_done_cleanup_runs_after_a_failure_and_the_run_still_fails() -> None:
    view = start(dag(task("a"), task("b", "a"), task("clean", "a", trigger="all_done")))
    plan = finish(view, "a", ok=False)
    assert state(view, "b") == "UPSTREAM_FAILED"
    assert ("clean", 1) in plan.launch
    plan = finish(view, "clean")
    assert plan.run_state is RunState.FAILED


def test_any_failed_alert_is_skipped_when_nothing_failed_and_the_run_succeeds() -> None:
    view = start(dag(task("a"), task("alert", "a", trigger="any_failed")))
    plan = finish(view, "a")
    assert state(view, "alert") == "SKIPPED"
    assert view.tasks["alert"].state is T.SKIPPED
    assert plan.run_state is RunState.SUCCEEDED


def test_skip_propagates_under_the_default_rule_but_not_none_failed() -> None:
    view = start(dag(task("a"), task("b", "a", when="params.deploy"), task("c", "b"),
                     task("d", "b", trigger="none_failed"),
                     params=[{"name": "deploy", "type": "bool"}]),
                 params={"deploy": False})
    plan = finish(view, "a")
    assert [state(view, n) for n in "bcd"] == ["SKIPPED", "SKIPPED", "QUEUED"]
    assert view.tasks["b"].state is T.SKIPPED
    assert ("d", 1) in plan.launch
    assert plan.transitions[1].detail["reason"] == "ConditionFalse"
    assert finish(view, "d").run_state is RunState.SUCCEEDED


def test_when_sees_exit_code_and_result_of_upstream_tasks() -> None:
    d = dag(task("score"), task("publish", "score",
                                when="tasks.score.result.auc >= 0.8 && tasks.score.exitCode == 0"),
            task("report", "score", when="tasks.score.result.auc < 0.8"))
    view = start(d)
    finish(view, "score", result={"auc": 0.9})
    assert state(view, "publish") == "QUEUED"
    assert state(view, "report") == "SKIPPED"


def test_a_condition_that_cannot_be_evaluated_fails_the_task_with_the_reason() -> None:
    view = start(dag(task("a"), task("b", "a", when="tasks.a.result.missing == 1")))
    plan = finish(view, "a")  # no result: null has no field
    assert state(view, "b") == "FAILED"
    failed = next(t for t in plan.transitions if t.task == "b")
    assert failed.detail["reason"] == "ConditionError"
    assert plan.run_state is RunState.FAILED


def test_when_at_the_root_uses_params() -> None:
    view = start(dag(task("a", when="params.n > 2"), task("b", when="params.n <= 2"),
                     params=[{"name": "n", "type": "int"}]),
                 params={"n": 3})
    assert (state(view, "a"), state(view, "b")) == ("QUEUED", "SKIPPED")
