"""Exit handlers and conditions' safety, in the decision functions (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from helios.dag import parse_dag
from helios.dag.conditions import ConditionError, evaluate, references
from helios.dag.parse import DagError
from helios.messages import TaskReport
from helios.states import RunState, TaskState
from services.scheduler import decide
from services.scheduler.decide import Policy, RunView, TaskView
from services.scheduler.dynamic import dispatched_task

T = TaskState
POLICY = Policy(retry_backoff_s=0.0)


def dag(*tasks: dict[str, Any], **top: Any) -> Any:
    return parse_dag({"apiVersion": "v1", "dagName": "d", "tasks": list(tasks), **top})


def task(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "i", "command": ["x"], "depends_on": list(deps), **extra}


def start(d: Any) -> RunView:
    view = RunView(d, RunState.RUNNING, {t.name: TaskView() for t in d.all_tasks}, started=False)
    decide.on_start(view, POLICY)
    return view


def finish(view: RunView, name: str, ok: bool = True) -> decide.Plan:
    return decide.on_report(view, TaskReport(
        dag_id="r", task=name, attempt=view.tasks[name].attempt,
        phase="succeeded" if ok else "failed", at=0.0), POLICY)


EXIT = dag(task("a"), task("b", "a"), task("c"),
           onExit=[task("notify", command=["n", "{{ run.status }}", "{{ run.failedTasks }}"]),
                   task("cleanup", "notify", trigger="all_done"),
                   task("page", when="run.status == 'FAILED'")])


def test_exit_handlers_wait_for_every_task_then_see_the_failure() -> None:
    view = start(EXIT)
    assert view.tasks["notify"].state is T.PENDING
    finish(view, "a", ok=False)  # b is upstream-failed at once; c still runs
    assert view.tasks["notify"].state is T.PENDING
    plan = finish(view, "c")
    assert [n for n, _ in plan.launch] == ["notify", "page"]
    assert plan.run_state is None
    notify = dispatched_task(view, "notify")
    assert notify.command == ["n", "FAILED", '["a"]']
    finish(view, "page")
    plan = finish(view, "notify", ok=False)
    assert [n for n, _ in plan.launch] == ["cleanup"]
    plan = finish(view, "cleanup")
    assert plan.run_state is RunState.FAILED
    assert view.tasks["a"].state is T.FAILED  # the original failure stays as it was


def test_a_failing_exit_handler_fails_a_run_that_had_succeeded() -> None:
    view = start(EXIT)
    finish(view, "a")
    finish(view, "b")
    plan = finish(view, "c")
    assert dispatched_task(view, "notify").command == ["n", "SUCCEEDED", "[]"]
    assert view.tasks["page"].state is T.SKIPPED
    finish(view, "notify", ok=False)
    plan = finish(view, "cleanup")
    assert plan.run_state is RunState.FAILED


def test_retry_runs_the_exit_handlers_again() -> None:
    view = start(EXIT)
    finish(view, "a", ok=False)
    finish(view, "c")
    for name in ("notify", "page"):
        finish(view, name)
    assert finish(view, "cleanup").run_state is RunState.FAILED
    plan = decide.on_retry(view, POLICY)
    assert plan.launch == [("a", 2)]
    assert view.tasks["notify"].state is T.PENDING
    finish(view, "a")
    plan = finish(view, "b")
    assert [n for n, _ in plan.launch] == ["notify"]
    assert view.tasks["page"].state is T.SKIPPED  # the run has not failed this time
    assert dispatched_task(view, "notify").command == ["n", "SUCCEEDED", "[]"]


MAPPED_EXIT = dag(task("a"), task("b"),
                  onExit=[task("notify", forEach=["ops", "dev"],
                               command=["n", "{{ item }}", "{{ run.status }}"]),
                          task("after", "notify")])


def test_an_exit_handler_maps_over_a_list_and_runs_again_after_a_retry() -> None:
    view = start(MAPPED_EXIT)
    finish(view, "b")
    plan = finish(view, "a", ok=False)
    assert [n for n, _ in plan.launch] == ["notify[0]", "notify[1]"]
    assert dispatched_task(view, "notify[1]").command == ["n", "dev", "FAILED"]
    finish(view, "notify[0]")
    plan = finish(view, "notify[1]", ok=False)  # an instance fails: the run fails too
    assert plan.launch == [] and view.tasks["after"].state is T.UPSTREAM_FAILED
    assert view.state is RunState.FAILED and view.failed_tasks() == ["a"]

    # Retry: `a` runs again first; the handler's instances wait, then all run again with
    # new attempt numbers and see the new status.
    plan = decide.on_retry(view, POLICY)
    assert [n for n, _ in plan.launch] == ["a"]
    assert {view.tasks[f"notify[{i}]"].state for i in (0, 1)} == {T.PENDING}
    plan = finish(view, "a")
    assert plan.launch == [("notify[0]", 2), ("notify[1]", 2)]
    assert dispatched_task(view, "notify[0]").command == ["n", "ops", "SUCCEEDED"]
    finish(view, "notify[0]")
    plan = finish(view, "notify[1]")
    assert plan.launch == [("after", 1)]
    plan = finish(view, "after")
    assert plan.run_state is RunState.SUCCEEDED


def test_a_mapped_exit_handler_that_does_not_run_again_ends_its_instances() -> None:
    d = dag(task("a"), onExit=[task("notify", forEach=["ops", "dev"], when="run.status == 'FAILED'",
                                    command=["n", "{{ item }}"])])
    view = start(d)
    plan = finish(view, "a", ok=False)
    assert [n for n, _ in plan.launch] == ["notify[0]", "notify[1]"]
    finish(view, "notify[0]")
    finish(view, "notify[1]", ok=False)
    assert view.state is RunState.FAILED
    decide.on_retry(view, POLICY)
    plan = finish(view, "a")  # succeeds now: the handler's condition is false
    assert view.tasks["notify"].state is T.SKIPPED
    assert {view.tasks[f"notify[{i}]"].state for i in (0, 1)} == {T.SKIPPED}
    assert plan.run_state is RunState.SUCCEEDED and view.state is RunState.SUCCEEDED


@pytest.mark.parametrize(("doc", "message"), [
    ({"tasks": [task("a", "h")], "onExit": [task("h")]}, "is an exit handler"),
    ({"tasks": [task("a")], "onExit": [task("a")]}, "duplicate task name 'a'"),
    ({"tasks": [task("a", when="run.status == 'x'")]}, "in onExit tasks only"),
    ({"tasks": [task("a"), task("b", when="tasks.a.state == 'x'")]}, "not upstream of 'b'"),
    ({"tasks": [task("a", when="tasks.a.state ==")]}, "Syntax error"),
    ({"tasks": [task("a", outputs=["l.json"])],
      "onExit": [task("h", forEach={"fromTask": "a"})]}, "not over a task's output"),
    ({"tasks": [task("a", when="item.id > 2", forEach=[{"id": 1}])]}, "unknown name 'item'"),
])
def test_validation(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(DagError, match=message):
        dag(**doc)


def test_conditions_cannot_run_code_and_stay_linear() -> None:
    with pytest.raises(ConditionError):
        evaluate("__import__('os')", {})
    with pytest.raises(ConditionError, match="at most 1 macro"):
        references("params.l.map(x, params.l.map(y, x + y)).size() > 0")
    with pytest.raises(ConditionError, match="not true or false"):
        evaluate("1 + 1", {})
    assert references("tasks['list-shards'].state == 'SUCCEEDED'").tasks == {"list-shards"}
    assert references("params.l.exists(x, x == 'a')").params == {"l"}  # x is bound


# Two macros over a 64 KiB result are quadratic and evaluation blocks the scheduler.
NESTED = "params.l.map(run, params.l.exists(params, params == -1)).size() > 0"


@pytest.mark.parametrize("text", [
    "params.l.map(x, params.l.//\nexists(x, x == -1)).size() > 0",  # a comment before a macro
    f"r'\\' != '' && {NESTED} && '' == '\\''",  # a raw string ends at its first quote
    f"'''\\'''' != '' && {NESTED} && '' == ''",  # an escaped quote in a triple-quoted string
])
def test_a_second_macro_cannot_hide_from_the_count(text: str) -> None:
    with pytest.raises(ConditionError, match="at most 1 macro"):
        references(text)


def test_a_macro_walks_a_bounded_number_of_items() -> None:
    """`l.map(x, l)` is cubic: over 1,000 items it held the scheduler's loop for 30 s."""
    def ctx(n: int) -> dict[str, object]:
        return {"params": {}, "tasks": {"a": {"state": "SUCCEEDED", "exitCode": 0,
                                              "result": {"rows": list(range(n))}}}}
    walk = "tasks.a.result.rows.map(x, tasks.a.result.rows).size() > 0"
    assert evaluate(walk, ctx(100)) is True
    with pytest.raises(ConditionError, match="at most 256 list items"):
        evaluate(walk, ctx(257))
    # Without a macro, size and indexing stay linear: any 64 KiB result is fine.
    assert evaluate("tasks.a.result.rows.size() > 3", ctx(30_000)) is True
