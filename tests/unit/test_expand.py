"""forEach expansion in the decision functions, and its validation (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from helios.dag import parse_dag
from helios.dag.parse import DagError
from helios.messages import OutputArtifact, TaskReport
from helios.states import RunState, TaskState
from helios.templating import TemplateError
from services.scheduler import decide
from services.scheduler.decide import Policy, RunView, TaskView
from services.scheduler.dynamic import dispatched_task, producers, resolve_inputs
from services.scheduler.expand import ItemsError, parse_items
from services.scheduler.mapped_results import (
    MAX_MAPPED_RESULTS_BYTES,
    NeedResults,
    mapped_result,
)

T = TaskState
POLICY = Policy(retry_backoff_s=0.0)


def dag(*tasks: dict[str, Any], **top: Any) -> Any:
    return parse_dag({"apiVersion": "v1", "dagName": "d", "tasks": list(tasks), **top})


def task(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "i", "command": ["x"], "depends_on": list(deps), **extra}


def start(d: Any, params: dict[str, Any] | None = None, policy: Policy = POLICY) -> RunView:
    view = RunView(d, RunState.RUNNING, {t.name: TaskView() for t in d.all_tasks},
                   started=False, params=params or {})
    decide.on_start(view, policy)
    return view


def report(view: RunView, name: str, phase: str, policy: Policy = POLICY) -> decide.Plan:
    return decide.on_report(view, TaskReport(
        dag_id="r", task=name, attempt=view.tasks[name].attempt, phase=phase,  # type: ignore[arg-type]
        at=0.0, exit_code=0 if phase == "succeeded" else 1), policy)


MAP = dag(task("train", command=["train", "{{ item.model }}", "--lr={{ item.lr }}"],
               forEach=[{"model": "als", "lr": 0.1}, {"model": "knn", "lr": 0.2},
                        {"model": "pop", "lr": 0.3}],
               maxParallel=2, outputs=["model.bin", "score.json"], retries=1),
          task("rank", inputs=[{"fromTask": "train", "name": "models"}]))


def test_literal_list_expands_into_instances_bounded_by_max_parallel() -> None:
    view = start(MAP)
    assert view.tasks["train"].state is T.RUNNING
    assert view.items["train"][1]["model"] == "knn"
    assert sorted(n for n in view.tasks if n.startswith("train[")) == [
        "train[0]", "train[1]", "train[2]"]
    assert [n for n, _ in decide.on_start(view, POLICY).launch] == []
    assert {n: t.state.value for n, t in view.tasks.items() if t.state is T.QUEUED} == {
        "train[0]": "QUEUED", "train[1]": "QUEUED"}
    plan = report(view, "train[0]", "succeeded")
    assert plan.launch == [("train[2]", 1)]  # a slot freed: the next instance, no more
    assert view.maps["train"].active == 2


def test_instance_is_rendered_with_its_item() -> None:
    view = start(MAP)
    task1 = dispatched_task(view, "train[1]")
    assert task1.name == "train[1]"
    assert task1.command == ["train", "knn", "--lr=0.2"]
    assert task1.for_each is None  # the dispatch does not carry the whole item list
    assert dispatched_task(view, "rank").name == "rank"


@pytest.mark.parametrize("item", ["a\0b", "x" * 70_000])
def test_an_item_that_makes_the_task_invalid_is_a_template_error(item: str) -> None:
    # The engine fails the attempt on a TemplateError; anything else is redelivered for ever.
    view = start(dag(task("m", command=["echo", "{{ item }}"], forEach=[item])))
    with pytest.raises(TemplateError, match="the rendered task is invalid: command"):
        dispatched_task(view, "m[0]")


def test_one_failing_instance_retries_alone_and_the_run_retry_reruns_only_it() -> None:
    view = start(MAP)
    report(view, "train[0]", "succeeded")
    report(view, "train[2]", "succeeded")
    plan = report(view, "train[1]", "failed")  # retries: 1 -> attempt 2
    assert plan.launch == [("train[1]", 2)]
    plan = report(view, "train[1]", "failed")
    assert view.tasks["train"].state is T.FAILED
    assert view.tasks["rank"].state is T.UPSTREAM_FAILED
    assert plan.run_state is RunState.FAILED
    failed = next(t for t in plan.transitions if t.task == "train")
    assert "1 of 3 instances did not succeed: train[1]" in failed.detail["message"]
    plan = decide.on_retry(view, POLICY)
    assert plan.launch == [("train[1]", 3)]  # the succeeded instances are not re-run
    assert view.tasks["train[0]"].attempt == 1
    report(view, "train[1]", "succeeded")
    assert view.tasks["train"].state is T.SUCCEEDED
    assert [n for n, _ in report(view, "rank", "running").launch] == []


def test_fan_in_places_every_instance_output_under_its_index() -> None:
    view = start(MAP)
    for i in range(3):  # maxParallel 2: train[2] is queued when train[0] ends
        report(view, f"train[{i}]", "succeeded")
    assert view.tasks["rank"].state is T.QUEUED
    assert producers(view, ["rank"]) == {"train[0]", "train[1]", "train[2]"}
    outputs = {f"train[{i}]": {f: OutputArtifact(name=f, key=f"k{i}{f}", sha256="0" * 64, size=1)
                               for f in ("model.bin", "score.json")} for i in range(3)}
    placed = resolve_inputs(MAP, view, "rank", outputs)
    assert [p.name for p in placed][:3] == ["models/0/model.bin", "models/0/score.json",
                                            "models/1/model.bin"]
    assert len(placed) == 6 and placed[0].from_task == "train[0]"


def test_items_from_a_parameter_and_from_an_upstream_output() -> None:
    d = dag(task("ls", outputs=["shards.json"]),
            task("each", command=["p", "{{ item }}"],
                 forEach={"fromTask": "ls", "artifact": "shards.json"}),
            task("per-model", command=["m", "{{ item }}"], forEach="{{ params.models }}"),
            params=[{"name": "models", "type": "list"}])
    view = start(d, params={"models": ["a", "b"]})
    assert view.tasks["per-model"].state is T.RUNNING and len(view.items["per-model"]) == 2
    plan = report(view, "ls", "succeeded")
    assert plan.expand == ["each"] and view.tasks["each"].state is T.QUEUED
    plan = decide.on_items(view, "each", ["s0", "s1", "s2"], None, POLICY)
    assert plan.expanded == {"each": ["s0", "s1", "s2"]}
    assert ("each[2]", 1) in plan.launch
    assert dispatched_task(view, "each[2]").command == ["p", "s2"]


def test_unusable_items_fail_the_task_with_a_clear_reason() -> None:
    with pytest.raises(ItemsError, match="at most 10000 instances"):
        parse_items(b"[" + b",".join([b"1"] * 10_001) + b"]", "forEach")
    with pytest.raises(ItemsError, match="must be a JSON list"):
        parse_items(b'{"a": 1}', "forEach")
    d = dag(task("ls", outputs=["l.json"]), task("each", forEach={"fromTask": "ls"}))
    view = start(d)
    report(view, "ls", "succeeded")
    plan = decide.on_items(view, "each", None, "forEach: l.json has 10001 items", POLICY)
    assert view.tasks["each"].state is T.FAILED
    assert plan.run_state is RunState.FAILED


def test_an_empty_list_skips_the_task_and_its_dependents() -> None:
    view = start(dag(task("each", forEach=[]), task("after", "each")))
    assert view.tasks["each"].state is T.SKIPPED
    assert view.tasks["after"].state is T.SKIPPED


def test_the_run_budget_counts_instances_not_the_forEach_task() -> None:
    policy = Policy(retry_backoff_s=0.0, max_running_per_run=3)
    view = start(dag(task("each", forEach=list(range(10))), task("solo")), policy=policy)
    assert view.running_count() == 3


@pytest.mark.parametrize(("extra", "message"), [
    ({"forEach": list(range(10_001))}, "at most 10000"),
    ({"forEach": {"fromTask": "nope"}}, "unknown task 'nope'"),
    ({"forEach": "{{ params.missing }}"}, "unknown parameter 'missing'"),
    ({"maxParallel": 2}, "maxParallel applies to a forEach task only"),
    ({"forEach": "models"}, "parameter reference"),
])
def test_validation_errors(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(DagError, match=message):
        dag(task("a", **extra))


def test_ten_thousand_instances_decide_in_linear_time() -> None:
    view = start(dag(task("each", forEach=list(range(10_000)), maxParallel=64)))
    done = 0
    queued = [f"each[{i}]" for i in range(64)]
    while queued:
        name = queued.pop()
        plan = report(view, name, "succeeded")
        queued += [n for n, _ in plan.launch]
        done += 1
    assert done == 10_000
    assert view.tasks["each"].state is T.SUCCEEDED and view.state is RunState.SUCCEEDED


async def test_an_item_without_the_referenced_field_fails_its_instance_once() -> None:
    from helios.templating import TemplateError
    from services.scheduler.dynamic import dispatch_all
    from services.scheduler.engine import _merge

    view = start(dag(task("each", command=["x", "{{ item.a }}"], forEach=[{"a": 1}, {"b": 2}],
                          retries=3)))
    plan = decide.Plan(launch=[("each[0]", 1), ("each[1]", 1)])

    async def build(launch: list[tuple[str, int]], bad: list[tuple[str, int, str]]) -> list[Any]:
        out = []
        for name, attempt in launch:
            try:
                out.append(dispatched_task(view, name))
            except TemplateError as exc:
                bad.append((name, attempt, str(exc)))
        return out

    built: list[Any] = await dispatch_all("r", view, plan, POLICY, build, _merge, [])
    assert [t.command for t in built] == [["x", "1"]]
    assert plan.launch == [("each[0]", 1)]
    assert view.tasks["each[1]"].state is T.FAILED  # no retry: it would fail the same way
    failed = next(t for t in plan.transitions if t.task == "each[1]")
    assert failed.detail["reason"] == "TemplateError" and "item.a" in failed.detail["message"]


def results_report(view: RunView, name: str, result: Any) -> decide.Plan:
    return decide.on_report(view, TaskReport(
        dag_id="r", task=name, attempt=view.tasks[name].attempt, phase="succeeded", at=0.0,
        exit_code=0, result=result), POLICY)


GATED = dag(task("score", forEach=[1, 2, 3], command=["s", "{{ item }}"]),
            task("ship", "score", when="tasks.score.result.all(r, r == null || r.ok)"),
            task("count", "score", when="tasks.score.state == 'SUCCEEDED'"))


def test_a_maps_result_is_its_instances_results_in_order() -> None:
    view = start(GATED)
    results_report(view, "score[1]", {"ok": True})
    results_report(view, "score[0]", None)  # wrote none: null in the list
    results_report(view, "score[2]", {"ok": True})
    assert view.tasks["ship"].state is T.QUEUED and view.tasks["count"].state is T.QUEUED
    assert mapped_result(view, "score") == [None, {"ok": True}, {"ok": True}]


def test_results_the_view_does_not_hold_are_asked_for_once() -> None:
    view = start(GATED)
    results_report(view, "score[0]", {"ok": True})
    results_report(view, "score[1]", {"ok": False})
    view.tasks["score[0]"].result_known = False  # as after a scheduler restart
    with pytest.raises(NeedResults) as need:
        results_report(view, "score[2]", {"ok": True})
    assert need.value.tasks == {"score"}

    # Read back (as RunStore.load(results_of=...) does), the decision goes through.
    view = start(GATED)
    for i, ok in enumerate((True, False)):
        results_report(view, f"score[{i}]", {"ok": ok})
    view.results_read = frozenset({"score"})
    results_report(view, "score[2]", {"ok": True})
    assert (view.tasks["ship"].state, view.tasks["count"].state) == (T.SKIPPED, T.QUEUED)


def test_a_maps_result_past_the_size_bound_fails_the_condition() -> None:
    pad = "x" * (MAX_MAPPED_RESULTS_BYTES // 3 + 1)  # three of them: just past the bound
    view = start(GATED)
    for i in range(2):
        results_report(view, f"score[{i}]", {"ok": True, "pad": pad})
    plan = results_report(view, "score[2]", {"ok": True, "pad": pad})
    ship = next(t for t in plan.transitions if t.task == "ship")
    assert (ship.state, ship.detail["reason"]) == (T.FAILED, "ConditionError")
    assert ship.detail["message"].endswith(
        f"more than a condition may read ({MAX_MAPPED_RESULTS_BYTES})")
    assert view.tasks["count"].state is T.QUEUED  # its condition reads no result


TWO_MAPS = dag(task("a", forEach=[1, 2], command=["a", "{{ item }}"]),
               task("b", forEach=[1, 2], command=["b", "{{ item }}"]),
               task("chk"),
               task("both", "a", "b", when="size(tasks.a.result) == 2 && size(tasks.b.result) == 2"),
               task("state-only", "a", "chk",
                    when="tasks.a.state == 'SUCCEEDED' && tasks.chk.result == null"))


def test_every_missing_map_is_asked_for_at_once_and_only_maps_whose_result_is_read() -> None:
    view = start(TWO_MAPS)
    for name in ("a[0]", "a[1]", "b[0]", "chk"):
        results_report(view, name, None)
    for name in ("a[0]", "a[1]", "b[0]"):
        view.tasks[name].result_known = False  # as after a scheduler restart
    assert view.tasks["state-only"].state is T.QUEUED  # `a`'s state only: no results needed
    with pytest.raises(NeedResults) as need:
        results_report(view, "b[1]", None)
    assert need.value.tasks == {"a", "b"}
