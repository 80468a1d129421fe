"""Scheduling decisions as pure functions over a run's current state.

Every entry point takes a `RunView` (what Redis holds now) and returns a `Plan`: the
transitions to record and publish, the attempts to launch, the timers to set and,
when every task is terminal, the run's final state. No I/O happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helios.dag.model import Dag
from helios.messages import TaskReport
from helios.states import RunState, TaskState

T = TaskState

# The reason an executor reports when an attempt died with it (runner or watcher killed,
# pod evicted or deleted by someone else, node gone): not the task's fault.
EXECUTOR_LOST = "ExecutorLost"


@dataclass
class TaskView:
    state: TaskState = T.PENDING
    attempt: int = 0
    lost: int = 0  # attempts of this task lost with their executor (they spend no retries)


@dataclass
class RunView:
    dag: Dag
    state: RunState
    tasks: dict[str, TaskView]
    generation: int = 0
    started: bool = True
    lost_known: bool = False  # `TaskView.lost` was read back (the engine fills it in)


@dataclass(frozen=True)
class Policy:
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 300.0
    max_running_per_run: int = 1_000_000
    lost_attempts_max: int = 3  # lost attempts re-run per task before a loss counts as a failure

    def backoff(self, failed_attempt: int) -> float:
        """Delay before attempt `failed_attempt + 1`: exponential, capped."""
        return min(self.retry_backoff_max_s, self.retry_backoff_s * 2 ** (failed_attempt - 1))


@dataclass
class Transition:
    task: str
    state: TaskState
    attempt: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timer:
    task: str
    attempt: int
    delay_s: float


@dataclass
class Plan:
    transitions: list[Transition] = field(default_factory=list)
    launch: list[tuple[str, int]] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    run_state: RunState | None = None  # set when the run changes state
    cancel_executor: bool = False

    @property
    def empty(self) -> bool:
        return not (self.transitions or self.launch or self.timers or self.run_state
                    or self.cancel_executor)


class _Eval:
    """Applies transitions to a working copy so later steps see earlier ones."""

    def __init__(self, view: RunView):
        self.view = view
        self.plan = Plan()

    def move(self, task: str, state: TaskState, attempt: int, **detail: Any) -> None:
        tv = self.view.tasks[task]
        tv.state, tv.attempt = state, attempt
        if tv.lost:  # every transition carries it: the stored detail is rebuilt per attempt
            detail.setdefault("lostAttempts", tv.lost)
        self.plan.transitions.append(Transition(task, state, attempt, detail))


def _running_count(view: RunView) -> int:
    return sum(1 for t in view.tasks.values() if t.state in (T.QUEUED, T.RUNNING))


def _schedule(ev: _Eval, policy: Policy) -> None:
    """Fail the descendants of failures, queue what is ready, finalise when done."""
    view = ev.view
    if view.state.terminal:
        return
    children = view.dag.children
    failed = [n for n, t in view.tasks.items() if t.state in (T.FAILED, T.UPSTREAM_FAILED)]
    while failed:
        name = failed.pop()
        for child in children[name]:
            if view.tasks[child].state == T.PENDING:
                ev.move(child, T.UPSTREAM_FAILED, view.tasks[child].attempt,
                        reason="UpstreamFailed", message=f"dependency {name!r} did not succeed")
                failed.append(child)
    budget = policy.max_running_per_run - _running_count(view)
    for task in view.dag.tasks:  # document order: deterministic and what users expect
        if budget <= 0:
            break
        tv = view.tasks[task.name]
        if tv.state != T.PENDING:
            continue
        if all(view.tasks[dep].state == T.SUCCEEDED for dep in task.dependencies):
            attempt = tv.attempt + 1
            ev.move(task.name, T.QUEUED, attempt)
            ev.plan.launch.append((task.name, attempt))
            budget -= 1
    if all(t.state.terminal for t in view.tasks.values()):
        states = {t.state for t in view.tasks.values()}
        if states == {T.SUCCEEDED}:
            final = RunState.SUCCEEDED
        elif T.CANCELLED in states:
            final = RunState.CANCELLED
        else:
            final = RunState.FAILED
        view.state = final
        ev.plan.run_state = final


def on_start(view: RunView, policy: Policy) -> Plan:
    """A submission (or its redelivery): announce the run once, queue what is ready."""
    ev = _Eval(view)
    if not view.started:
        view.started = True
        ev.plan.run_state = RunState.RUNNING
        for task in view.dag.tasks:
            ev.move(task.name, T.PENDING, 0)
    _schedule(ev, policy)
    return ev.plan


def on_report(view: RunView, report: TaskReport, policy: Policy, *, adopt: bool = False) -> Plan:
    """`adopt`: the report is of a later attempt than the one recorded, and the record of
    its launch is gone for good (Redis lost its last writes): the executor's word is the
    truth, so the task's current attempt becomes the reported one."""
    ev = _Eval(view)
    tv = view.tasks.get(report.task)
    if (adopt and tv is not None and not view.state.terminal and not tv.state.terminal
            and report.attempt > tv.attempt):
        tv.attempt = report.attempt
        tv.state = T.QUEUED if tv.state == T.PENDING else tv.state
    if tv is None or view.state.terminal or report.attempt != tv.attempt:
        return ev.plan  # stale: an older attempt, a cancelled run, or an unknown task
    if tv.state.terminal:
        return ev.plan  # already decided (a duplicate report)
    detail = _report_detail(report)
    if report.phase == "running":
        if tv.state == T.QUEUED:
            ev.move(report.task, T.RUNNING, tv.attempt, **detail)
        return ev.plan
    if report.phase == "succeeded":
        ev.move(report.task, T.SUCCEEDED, tv.attempt, **detail)
    elif report.reason == EXECUTOR_LOST and tv.lost < policy.lost_attempts_max:
        # Not the task's failure: run it again at once as a new attempt (a new number,
        # so the lost one can never start twice), without spending its retries.
        tv.lost += 1
        nxt = tv.attempt + 1
        ev.move(report.task, T.QUEUED, nxt, **{
            **detail, "reason": EXECUTOR_LOST, "lostAttempt": tv.attempt,
            "message": f"attempt {tv.attempt} was lost with its executor"
                       f" ({report.message or 'no detail'}); re-running as attempt {nxt}"
                       f" (lost {tv.lost} of at most {policy.lost_attempts_max})"})
        ev.plan.launch.append((report.task, nxt))
    else:
        retries = view.dag.task(report.task).retries
        if tv.attempt - tv.lost <= retries:  # lost attempts re-run above spend no retries
            delay = policy.backoff(tv.attempt)
            nxt = tv.attempt + 1
            why = report.message or f"exit code {report.exit_code}"
            retry = {**detail, "retryOf": tv.attempt,
                     "message": f"retrying in {delay:g}s: attempt {tv.attempt} failed"
                                f" ({report.reason}: {why})"}
            ev.move(report.task, T.QUEUED, nxt, **retry)
            if delay > 0:
                ev.plan.timers.append(Timer(report.task, nxt, delay))
            else:
                ev.plan.launch.append((report.task, nxt))
        else:
            ev.move(report.task, T.FAILED, tv.attempt, **detail)
    _schedule(ev, policy)
    return ev.plan


def on_wake(view: RunView, task: str, attempt: int) -> Plan:
    """A retry's backoff elapsed: launch it if it is still the attempt we wait for."""
    plan = Plan()
    tv = view.tasks.get(task)
    if tv and not view.state.terminal and tv.state == T.QUEUED and tv.attempt == attempt:
        plan.launch.append((task, attempt))
    return plan


def on_cancel(view: RunView) -> Plan:
    ev = _Eval(view)
    if view.state.terminal:
        return ev.plan
    for name, tv in view.tasks.items():
        if not tv.state.terminal:
            ev.move(name, T.CANCELLED, tv.attempt, reason="Cancelled",
                    message="the run was cancelled")
    view.state = RunState.CANCELLED
    ev.plan.run_state = RunState.CANCELLED
    ev.plan.cancel_executor = True
    return ev.plan


def on_retry(view: RunView, policy: Policy) -> Plan:
    """Re-run failed, upstream-failed and cancelled tasks of a finished run."""
    ev = _Eval(view)
    if not view.state.terminal or view.state == RunState.SUCCEEDED:
        return ev.plan
    for name, tv in view.tasks.items():
        if tv.state in (T.FAILED, T.UPSTREAM_FAILED, T.CANCELLED):
            ev.move(name, T.PENDING, tv.attempt, reason="Retried")
    view.state = RunState.RUNNING
    view.generation += 1
    ev.plan.run_state = RunState.RUNNING
    _schedule(ev, policy)
    return ev.plan


def _report_detail(report: TaskReport) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "node": report.node,
        "timings": report.timings.model_dump(by_alias=True),
    }
    if report.phase != "running":
        detail.update(exitCode=report.exit_code, reason=report.reason, message=report.message,
                      cache=report.cache.model_dump(by_alias=True))
    return detail
