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


# --- attempts lost with their executor -------------------------------------------------

LOST = "ExecutorLost"


def lose(view: RunView, name: str, attempt: int, policy: Policy = POLICY) -> decide.Plan:
    return decide.on_report(view, report(name, "failed", attempt, reason=LOST,
                                         message="runner gone"), policy)


def test_lost_attempt_is_rerun_at_once_as_a_new_attempt_without_spending_retries() -> None:
    view = fresh(dag(task("a")))  # retries: 0
    decide.on_start(view, POLICY)
    decide.on_report(view, report("a", "running"), POLICY)
    plan = lose(view, "a", 1)
    assert plan.launch == [("a", 2)] and plan.timers == []
    (t,) = plan.transitions
    assert (t.state, t.attempt, t.detail["reason"]) == (T.QUEUED, 2, LOST)
    assert t.detail["lostAttempts"] == 1 and t.detail["lostAttempt"] == 1
    assert "attempt 1 was lost" in t.detail["message"]
    assert view.tasks["a"].lost == 1
    # Attempt 2 really fails: with retries 0 that is the end, the lost attempt spent none.
    plan = decide.on_report(view, report("a", "failed", 2, exitCode=1), POLICY)
    assert [(t.state, t.attempt) for t in plan.transitions] == [(T.FAILED, 2)]
    assert plan.transitions[0].detail["lostAttempts"] == 1
    assert plan.run_state == RunState.FAILED


def test_lost_attempts_do_not_count_against_retries() -> None:
    view = fresh(dag(task("a", retries=1)))
    decide.on_start(view, POLICY)
    lose(view, "a", 1)
    lose(view, "a", 2)
    plan = decide.on_report(view, report("a", "failed", 3, exitCode=1), POLICY)
    assert plan.transitions[0].state == T.QUEUED and plan.timers[0].attempt == 4  # its retry
    plan = decide.on_report(view, report("a", "failed", 4, exitCode=1), POLICY)
    assert plan.transitions[0].state == T.FAILED


def test_a_task_that_keeps_getting_lost_fails_after_the_max() -> None:
    policy = Policy(retry_backoff_s=1.0, lost_attempts_max=2)
    view = fresh(dag(task("a"), task("b", "a")))
    decide.on_start(view, policy)
    assert lose(view, "a", 1, policy).launch == [("a", 2)]
    assert lose(view, "a", 2, policy).launch == [("a", 3)]
    plan = lose(view, "a", 3, policy)
    assert plan.launch == []
    assert [(t.task, t.state) for t in plan.transitions] == [
        ("a", T.FAILED), ("b", T.UPSTREAM_FAILED)]
    assert plan.transitions[0].detail["reason"] == LOST
    assert plan.transitions[0].detail["lostAttempts"] == 2
    assert plan.run_state == RunState.FAILED


def test_past_the_max_a_loss_spends_the_retries_like_any_failure() -> None:
    policy = Policy(retry_backoff_s=0.0, lost_attempts_max=1)
    view = fresh(dag(task("a", retries=1)))
    decide.on_start(view, policy)
    lose(view, "a", 1, policy)
    plan = lose(view, "a", 2, policy)
    assert plan.launch == [("a", 3)] and "retrying" in plan.transitions[0].detail["message"]
    assert lose(view, "a", 3, policy).transitions[0].state == T.FAILED


def test_a_stale_or_duplicate_lost_report_changes_nothing() -> None:
    view = fresh(dag(task("a")))
    decide.on_start(view, POLICY)
    lose(view, "a", 1)
    assert lose(view, "a", 1).empty  # the same loss again (a redelivery)
    assert view.tasks["a"].lost == 1 and view.tasks["a"].attempt == 2


def test_the_lost_count_survives_a_user_retry_transition() -> None:
    view = fresh(dag(task("a")))
    decide.on_start(view, POLICY)
    lose(view, "a", 1)
    decide.on_report(view, report("a", "failed", 2, exitCode=1), POLICY)
    plan = decide.on_retry(view, POLICY)
    assert all(t.detail["lostAttempts"] == 1 for t in plan.transitions)
    assert plan.launch == [("a", 3)]


def test_a_report_ahead_of_the_record_is_adopted_when_asked() -> None:
    view = fresh(dag(task("a")))
    decide.on_start(view, POLICY)  # attempt 1 recorded; attempt 2's record was lost
    assert decide.on_report(view, report("a", "succeeded", 2), POLICY).empty
    plan = decide.on_report(view, report("a", "succeeded", 2), POLICY, adopt=True)
    assert [(t.state, t.attempt) for t in plan.transitions] == [(T.SUCCEEDED, 2)]
    assert plan.run_state == RunState.SUCCEEDED


def test_adopting_never_revives_a_finished_task() -> None:
    view = fresh(dag(task("a"), task("b")))
    decide.on_start(view, POLICY)
    decide.on_report(view, report("a", "failed", 1, exitCode=1), POLICY)
    assert decide.on_report(view, report("a", "succeeded", 2), POLICY, adopt=True).empty
    assert view.tasks["a"].state == T.FAILED and view.tasks["a"].attempt == 1
