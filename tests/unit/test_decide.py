"""Scheduling decisions, without any server."""

from __future__ import annotations

from typing import Any

from helios.dag import parse_dag
from helios.messages import TaskReport
from helios.states import RunState, TaskState
from services.scheduler import decide
from services.scheduler.decide import Policy, RunView, TaskView

T = TaskState
POLICY = Policy(retry_backoff_s=1.0, retry_backoff_max_s=10.0)


def dag(*tasks: dict[str, Any]) -> Any:
    return parse_dag({"apiVersion": "v1", "dagName": "d", "tasks": list(tasks)})


def task(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "i", "command": ["x"], "depends_on": list(deps), **extra}


def fresh(d: Any) -> RunView:
    return RunView(d, RunState.RUNNING, {t.name: TaskView() for t in d.tasks}, started=False)


def report(name: str, phase: str, attempt: int = 1, **kw: Any) -> TaskReport:
    return TaskReport(dagId="r", task=name, attempt=attempt, phase=phase, at=0.0, **kw)  # type: ignore[arg-type]


def states(view: RunView) -> dict[str, str]:
    return {n: t.state.value for n, t in view.tasks.items()}


DIAMOND = dag(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"))


def test_start_announces_every_task_and_queues_roots() -> None:
    view = fresh(DIAMOND)
    plan = decide.on_start(view, POLICY)
    assert plan.run_state == RunState.RUNNING
    assert [t.state for t in plan.transitions[:4]] == [T.PENDING] * 4
    assert plan.launch == [("a", 1)]
    assert states(view) == {"a": "QUEUED", "b": "PENDING", "c": "PENDING", "d": "PENDING"}


def test_start_is_idempotent() -> None:
    view = fresh(DIAMOND)
    decide.on_start(view, POLICY)
    again = decide.on_start(view, POLICY)
    assert again.empty


def test_diamond_runs_to_success() -> None:
    view = fresh(DIAMOND)
    decide.on_start(view, POLICY)
    assert decide.on_report(view, report("a", "running"), POLICY).transitions[0].state == T.RUNNING
    plan = decide.on_report(view, report("a", "succeeded"), POLICY)
    assert sorted(plan.launch) == [("b", 1), ("c", 1)]
    assert decide.on_report(view, report("b", "succeeded"), POLICY).launch == []
    plan = decide.on_report(view, report("c", "succeeded"), POLICY)
    assert plan.launch == [("d", 1)]
    plan = decide.on_report(view, report("d", "succeeded"), POLICY)
    assert plan.run_state == RunState.SUCCEEDED


def test_failure_marks_descendants_and_lets_independent_branch_finish() -> None:
    d = dag(task("a"), task("b", "a"), task("c", "b"), task("x"))
    view = fresh(d)
    decide.on_start(view, POLICY)
    plan = decide.on_report(view, report("a", "failed", exitCode=3), POLICY)
    assert states(view) == {"a": "FAILED", "b": "UPSTREAM_FAILED", "c": "UPSTREAM_FAILED",
                            "x": "QUEUED"}
    assert plan.run_state is None  # x still runs
    plan = decide.on_report(view, report("x", "succeeded"), POLICY)
    assert plan.run_state == RunState.FAILED


def test_retry_with_exponential_backoff_then_success() -> None:
    d = dag(task("a", retries=2))
    view = fresh(d)
    decide.on_start(view, POLICY)
    plan = decide.on_report(view, report("a", "failed", 1), POLICY)
    assert view.tasks["a"].state == T.QUEUED and view.tasks["a"].attempt == 2
    assert plan.timers[0].delay_s == 1.0 and plan.launch == []
    assert decide.on_wake(view, "a", 2).launch == [("a", 2)]
    plan = decide.on_report(view, report("a", "failed", 2), POLICY)
    assert plan.timers[0].delay_s == 2.0
    plan = decide.on_report(view, report("a", "succeeded", 3), POLICY)
    assert plan.run_state == RunState.SUCCEEDED


def test_retries_exhausted() -> None:
    view = fresh(dag(task("a", retries=1)))
    decide.on_start(view, POLICY)
    decide.on_report(view, report("a", "failed", 1), POLICY)
    plan = decide.on_report(view, report("a", "failed", 2), POLICY)
    assert view.tasks["a"].state == T.FAILED and plan.run_state == RunState.FAILED


def test_backoff_is_capped() -> None:
    assert [POLICY.backoff(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_stale_and_duplicate_reports_change_nothing() -> None:
    view = fresh(dag(task("a", retries=1)))
    decide.on_start(view, POLICY)
    decide.on_report(view, report("a", "failed", 1), POLICY)
    assert decide.on_report(view, report("a", "succeeded", 1), POLICY).empty  # old attempt
    decide.on_report(view, report("a", "succeeded", 2), POLICY)
    assert decide.on_report(view, report("a", "succeeded", 2), POLICY).empty  # duplicate
    assert decide.on_wake(view, "a", 2).empty  # late timer


def test_cancel_stops_everything_once() -> None:
    view = fresh(DIAMOND)
    decide.on_start(view, POLICY)
    plan = decide.on_cancel(view)
    assert plan.cancel_executor and plan.run_state == RunState.CANCELLED
    assert set(states(view).values()) == {"CANCELLED"}
    assert decide.on_cancel(view).empty
    assert decide.on_report(view, report("a", "succeeded"), POLICY).empty


def test_retry_reruns_failed_and_upstream_failed_only() -> None:
    d = dag(task("a"), task("b", "a"), task("x"))
    view = fresh(d)
    decide.on_start(view, POLICY)
    decide.on_report(view, report("x", "succeeded"), POLICY)
    decide.on_report(view, report("a", "failed"), POLICY)
    assert view.state == RunState.FAILED
    plan = decide.on_retry(view, POLICY)
    assert plan.run_state == RunState.RUNNING and view.generation == 1
    assert plan.launch == [("a", 2)]
    assert states(view) == {"a": "QUEUED", "b": "PENDING", "x": "SUCCEEDED"}
    decide.on_report(view, report("a", "succeeded", 2), POLICY)
    plan = decide.on_report(view, report("b", "succeeded", 1), POLICY)
    assert plan.run_state == RunState.SUCCEEDED


def test_retry_of_running_or_succeeded_run_is_a_no_op() -> None:
    view = fresh(DIAMOND)
    decide.on_start(view, POLICY)
    assert decide.on_retry(view, POLICY).empty


def test_per_run_cap_limits_parallel_launches() -> None:
    d = dag(*[task(f"t{i}") for i in range(10)])
    view = fresh(d)
    plan = decide.on_start(view, Policy(max_running_per_run=3))
    assert len(plan.launch) == 3
    plan = decide.on_report(view, report("t0", "succeeded"), Policy(max_running_per_run=3))
    assert plan.launch == [("t3", 1)]
