"""The engine's side of memoization: succeed a memoizable dispatch at once when its
fingerprint matches an earlier success, and record the fingerprints of those that ran.
`MemoStore` (memo.py) holds the records; this module folds hits into the plan."""

from __future__ import annotations

import time

from helios.messages import OutputArtifact, TaskDispatch, TaskReport
from helios.states import RunState, TaskState
from services.scheduler import decide, dynamic
from services.scheduler.decide import Plan, Policy, RunView
from services.scheduler.memo import MemoStore
from services.scheduler.store import RunStore


async def memoize(memo: MemoStore, store: RunStore, policy: Policy, dag_id: str, dag_name: str,
                  view: RunView, plan: Plan, dispatches: list[TaskDispatch],
                  outputs: dict[str, list[OutputArtifact]], run_changes: list[RunState],
                  build: dynamic.Build) -> list[TaskDispatch]:
    """Succeed memoizable tasks whose fingerprint matches an earlier success, and
    follow on to what that unblocks (which may be memoized in turn)."""
    keep: list[TaskDispatch] = []
    pending = list(dispatches)
    while pending:
        d = pending.pop(0)
        if not d.task.memoize:
            keep.append(d)
            continue
        fp = memo.fingerprint(d.task, d.inputs)
        found = await memo.lookup(dag_name, d.task.name, fp)
        queued = _last_transition(plan, d.task.name)
        if isinstance(found, str):
            detail = {"memoKey": fp.digest, "memoParts": fp.parts, "memoReason": f"ran: {found}"}
            if queued is not None:
                queued.detail.update(detail)
            else:  # a retry launched by its timer: no transition to carry the fingerprint
                await store.set_detail(dag_id, d.task.name, detail)
            keep.append(d)
            continue
        plan.launch.remove((d.task.name, d.attempt))
        report = TaskReport(dag_id=dag_id, task=d.task.name, attempt=d.attempt,
                            phase="succeeded", at=time.time(), outputs=found.outputs,
                            result=found.result)
        step = decide.on_report(view, report, policy)
        for t in step.transitions:
            if t.task == d.task.name and t.state == TaskState.SUCCEEDED:
                t.detail.update(memoized=True, memoReason=f"reused {found.source}",
                                message=f"memoized: outputs of {found.source}")
        outputs[d.task.name] = found.outputs
        if step.run_state is not None:
            run_changes.append(step.run_state)
        decide.merge(plan, step)
        pending += await dynamic.dispatch_all(dag_id, view, plan, policy, build, decide.merge,
                                              run_changes, step.launch)
    return keep


async def remember(memo: MemoStore, store: RunStore, dag_id: str, dag_name: str, view: RunView,
                   plan: Plan, outputs: dict[str, list[OutputArtifact]]) -> None:
    """Record the fingerprints of memoizable tasks that just ran successfully."""
    for t in plan.transitions:
        task = view.spec(t.task)
        if (t.state != TaskState.SUCCEEDED or not task.memoize or t.detail.get("memoized")
                or t.task not in outputs):
            continue
        key, parts = await store.memo_key(dag_id, t.task)
        if key:
            await memo.record(dag_name, t.task, dag_id, t.attempt, key, parts,
                              outputs[t.task], getattr(view.tasks.get(t.task), "result", None))


def _last_transition(plan: Plan, task: str) -> decide.Transition | None:
    return next((t for t in reversed(plan.transitions) if t.task == task), None)
