"""Scheduling decisions as pure functions over a run's current state.

Every entry point takes a `RunView` (what Redis holds now) and returns a `Plan`: the
transitions to record and publish, the attempts to launch, the timers to set, the
forEach tasks to expand and, when every task is terminal, the run's final state. No I/O
happens here.

A PENDING task's fate is decided by its trigger rule (`trigger_rules`), then its `when`
condition (`helios.dag.conditions`), then, for a forEach task, by expanding it into
instances `task[i]` (which then run like tasks of their own, at most `maxParallel` at
once). An expanded forEach task ends when all its instances have. Exit handlers
(`onExit`) wait until every other task is terminal.
"""

from __future__ import annotations

import heapq
from typing import Any

from helios.dag.conditions import ConditionError, evaluate, references, task_value
from helios.dag.model import Task
from helios.messages import TaskReport
from helios.states import RunState, TaskState
from services.scheduler.expand import ItemsError, instance_name, parse_instance, static_items
from services.scheduler.mapped_results import mapped_result, need_results
from services.scheduler.plans import Plan, Policy, Timer, Transition, merge
from services.scheduler.runview import MapIndex, RunView, TaskView
from services.scheduler.trigger_rules import FAILED_STATES, Verdict, verdict

__all__ = ["EXECUTOR_LOST", "Plan", "Policy", "RunView", "TaskView", "Timer", "Transition", "merge"]

T = TaskState

# The reason an executor reports when an attempt died with it (runner or watcher killed,
# pod evicted or deleted by someone else, node gone): not the task's fault.
EXECUTOR_LOST = "ExecutorLost"
# A run-time reference ({{ item.field }}) with no value: the attempt never started.
TEMPLATE_ERROR = "TemplateError"


class _Eval:
    """Applies transitions to a working copy so later steps see earlier ones."""

    def __init__(self, view: RunView):
        self.view = view
        view.ensure_index()
        self.plan = Plan()

    def move(self, task: str, state: TaskState, attempt: int, **detail: Any) -> None:
        tv = self.view.tasks[task]
        self.view.set_state(task, state)
        tv.attempt = attempt
        if tv.lost:  # every transition carries it: the stored detail is rebuilt per attempt
            detail.setdefault("lostAttempts", tv.lost)
        self.plan.transitions.append(Transition(task, state, attempt, detail))


def _schedule(ev: _Eval, policy: Policy) -> None:
    """Settle what can be settled (failures, skips, conditions, expansions, finished
    forEach tasks) until nothing changes, queue what is ready, finalise when done."""
    view = ev.view
    if view.state.terminal:
        return
    while True:
        changed = False
        ready: list[str] = []
        main_done = view.main_open() == 0
        exits = {t.name for t in view.dag.on_exit}
        for task in view.dag.all_tasks:  # document order: deterministic, what users expect
            tv = view.tasks[task.name]
            if tv.state is T.RUNNING and task.name in view.items:
                changed |= _close_map(ev, task)
            elif tv.state is T.PENDING and (main_done or task.name not in exits):
                outcome = _settle(ev, task)
                if outcome is None:
                    ready.append(task.name)
                elif outcome and tv.state.terminal and task.name in view.items:
                    _follow_parent(ev, task.name)
                changed |= bool(outcome)
        if not changed:
            break
    _launch(ev, policy, ready)
    if view.open_count() == 0:
        final = view.outcome()
        view.state = final
        ev.plan.run_state = final


def _settle(ev: _Eval, task: Task) -> bool | None:
    """Decide a PENDING task: True if it moved, False if it waits, None if it is ready
    to be queued."""
    view = ev.view
    deps = task.dependencies
    v = verdict(task.trigger, [view.tasks[d].state for d in deps])
    tv = view.tasks[task.name]
    if v is Verdict.WAIT:
        return False
    if v is Verdict.UPSTREAM_FAILED:
        culprit = next(d for d in deps if view.tasks[d].state in FAILED_STATES)
        ev.move(task.name, T.UPSTREAM_FAILED, tv.attempt, reason="UpstreamFailed",
                message=f"dependency {culprit!r} did not succeed")
        return True
    if v is Verdict.SKIP:
        if task.trigger == "any_failed":
            why = "no dependency failed (trigger: any_failed)"
        else:
            why = f"dependency {next(d for d in deps if view.tasks[d].state is T.SKIPPED)!r}" \
                  " was skipped"
        ev.move(task.name, T.SKIPPED, tv.attempt, reason="UpstreamSkipped"
                if task.trigger != "any_failed" else "TriggerRule", message=why)
        return True
    if task.when is not None:
        try:
            go = evaluate(task.when, condition_context(view, task.when))
        except ConditionError as exc:
            ev.move(task.name, T.FAILED, tv.attempt, reason="ConditionError",
                    message=f"when: {exc}")
            return True
        if not go:
            ev.move(task.name, T.SKIPPED, tv.attempt, reason="ConditionFalse",
                    message=f"when is false: {task.when[:200]}")
            return True
    if task.for_each is None:
        return None
    try:
        items = static_items(task, view.params)
    except ItemsError as exc:
        ev.move(task.name, T.FAILED, tv.attempt, reason="ForEachError", message=str(exc))
        return True
    if items is None:  # a list an upstream task wrote: the engine reads it (on_items)
        ev.move(task.name, T.QUEUED, tv.attempt, reason="Expanding",
                message="reading the forEach items")
        ev.plan.expand.append(task.name)
        return True
    _expand(ev, task, items)
    return True


def _follow_parent(ev: _Eval, name: str) -> None:
    """An exit handler run again after a retry, that ended without expanding again (its
    condition was false, or a handler before it failed): its instances, set PENDING by
    the retry, end as it did instead of waiting for ever."""
    parent = ev.view.tasks[name]
    state = T.UPSTREAM_FAILED if parent.state is T.FAILED else parent.state
    for i in range(len(ev.view.items[name])):
        tv = ev.view.tasks[inst := instance_name(name, i)]
        if tv.state is T.PENDING:
            ev.move(inst, state, tv.attempt, reason="NotRunAgain",
                    message=f"{name} ended {parent.state.value} without running its instances")


def _expand(ev: _Eval, task: Task, items: list[Any]) -> None:
    tv = ev.view.tasks[task.name]
    if not items:
        ev.move(task.name, T.SKIPPED, tv.attempt, reason="NoItems",
                message="forEach has no items")
        return
    ev.view.add_instances(task.name, items)
    ev.plan.expanded[task.name] = items
    ev.move(task.name, T.RUNNING, tv.attempt, reason="Expanded", instances=len(items),
            message=f"{len(items)} instances")


def _close_map(ev: _Eval, task: Task) -> bool:
    """An expanded forEach task ends once every instance has."""
    view = ev.view
    m = view.maps[task.name]
    if m.open > 0:
        return False
    tv = view.tasks[task.name]
    if m.bad == 0:
        ev.move(task.name, T.SUCCEEDED, tv.attempt, instances=m.count,
                message=f"{m.count} instances succeeded")
        return True
    bad = [n for i in range(m.count)
           if view.tasks[n := instance_name(task.name, i)].state in FAILED_STATES]
    shown = ", ".join(bad[:10]) + (", ..." if len(bad) > 10 else "")
    ev.move(task.name, T.FAILED, tv.attempt, instances=m.count, reason="InstancesFailed",
            message=f"{m.bad} of {m.count} instances did not succeed: {shown}")
    return True


def _launch(ev: _Eval, policy: Policy, ready: list[str]) -> None:
    view = ev.view
    budget = policy.max_running_per_run - view.running_count()
    for name in ready:
        if budget <= 0:
            return
        attempt = view.tasks[name].attempt + 1
        ev.move(name, T.QUEUED, attempt)
        ev.plan.launch.append((name, attempt))
        budget -= 1
    for task in view.dag.all_tasks:
        m = view.maps.get(task.name)
        if m is None or view.tasks[task.name].state is not T.RUNNING:
            continue
        cap = task.max_parallel or m.count
        while budget > 0 and m.active < cap and m.pending:
            i = heapq.heappop(m.pending)
            name = instance_name(task.name, i)
            tv = view.tasks[name]
            if tv.state is not T.PENDING:
                continue  # a stale heap entry (the instance moved on another way)
            ev.move(name, T.QUEUED, tv.attempt + 1)
            ev.plan.launch.append((name, tv.attempt))
            budget -= 1


def condition_context(view: RunView, when: str) -> dict[str, Any]:
    """What a `when` condition sees: the run's params, the tasks it names, and (exit
    handlers) the run's status so far and its failed tasks. A forEach task's `result` is
    the list of its instances' results."""
    refs = references(when)
    need_results(view, refs.results)
    tasks = {}
    for name in refs.tasks:
        tv = view.tasks.get(name, TaskView())
        result = mapped_result(view, name) if name in view.items and name in refs.results \
            else tv.result
        tasks[name] = task_value(tv.state.value, tv.exit_code, result)
    context: dict[str, Any] = {"params": dict(view.params), "tasks": tasks}
    if refs.run:
        context["run"] = run_values(view)["run"]
    return context


def run_values(view: RunView) -> dict[str, Any]:
    """`{{ run.status }}` and `{{ run.failedTasks }}` for exit handlers."""
    return {"run": {"status": view.outcome(main_only=True).value,
                    "failedTasks": view.failed_tasks()}}


def on_start(view: RunView, policy: Policy) -> Plan:
    """A submission (or its redelivery): announce the run once, queue what is ready."""
    ev = _Eval(view)
    if not view.started:
        view.started = True
        ev.plan.run_state = RunState.RUNNING
        for task in view.dag.all_tasks:
            ev.move(task.name, T.PENDING, 0)
    _schedule(ev, policy)
    return ev.plan


def on_items(view: RunView, task: str, items: list[Any] | None, error: str | None,
             policy: Policy) -> Plan:
    """The engine read a forEach task's items from its upstream output (or could not)."""
    ev = _Eval(view)
    tv = view.tasks.get(task)
    if tv is None or view.state.terminal or tv.state is not T.QUEUED or task in view.items:
        return ev.plan
    if items is None:
        ev.move(task, T.FAILED, tv.attempt, reason="ForEachError",
                message=error or "the forEach items could not be read")
    else:
        _expand(ev, view.dag.task(task), items)
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
        view.set_state(report.task, T.QUEUED if tv.state == T.PENDING else tv.state)
    if tv is None or view.state.terminal or report.attempt != tv.attempt:
        return ev.plan  # stale: an older attempt, a cancelled run, or an unknown task
    if tv.state.terminal or report.task in view.items:
        return ev.plan  # already decided (a duplicate report); a forEach task never runs
    detail = _report_detail(report)
    if report.phase == "running":
        if tv.state == T.QUEUED:
            ev.move(report.task, T.RUNNING, tv.attempt, **detail)
        return ev.plan
    tv.exit_code, tv.result, tv.result_known = report.exit_code, report.result, True
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
        retries = view.spec(report.task).retries
        # Lost attempts re-run above spend no retries; a template that cannot render
        # would fail the same way again.
        if tv.attempt - tv.lost <= retries and report.reason != TEMPLATE_ERROR:
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
    for name, tv in list(view.tasks.items()):
        if not tv.state.terminal:
            ev.move(name, T.CANCELLED, tv.attempt, reason="Cancelled",
                    message="the run was cancelled")
    view.state = RunState.CANCELLED
    ev.plan.run_state = RunState.CANCELLED
    ev.plan.cancel_executor = True
    return ev.plan


def on_retry(view: RunView, policy: Policy) -> Plan:
    """Re-run failed, upstream-failed and cancelled tasks of a finished run. A forEach
    task re-runs only its instances that did not succeed; exit handlers run again."""
    ev = _Eval(view)
    if not view.state.terminal or view.state == RunState.SUCCEEDED:
        return ev.plan
    exits = {t.name for t in view.dag.on_exit}
    for name, tv in list(view.tasks.items()):
        inst = parse_instance(name)
        if name in exits or (inst is not None and inst[0] in exits):
            # Exit handlers (and their instances) run again, once the tasks have.
            if tv.state is not T.PENDING:
                ev.move(name, T.PENDING, tv.attempt, reason="Retried")
        elif tv.state in FAILED_STATES:
            if name in view.items:
                ev.move(name, T.RUNNING, tv.attempt, reason="Retried",
                        instances=view.maps.get(name, MapIndex(0)).count)
            else:
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
        if report.result is not None:
            detail["result"] = report.result
    return detail
