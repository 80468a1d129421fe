"""Declared parameters, reference checks at parse time, and rendering a run's definition."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from helios.artifacts.memo import fingerprint
from helios.dag.parse import DagError, parse_dag, parse_dag_document
from helios.instantiate import RunSpec, instantiate, rfc3339
from helios.params import ParamError, ParamSpec, parse_assignments, resolve
from helios.templating import render

RUN_ID = "0123456789abcdef0123456789abcdef"


def spec(**fields: Any) -> ParamSpec:
    return ParamSpec.model_validate(fields)


def problems(specs: list[ParamSpec], supplied: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ParamError) as info:
        resolve(specs, supplied)
    return {p.name: p.reason for p in info.value.problems}


def test_defaults_required_and_unknown_names() -> None:
    specs = [spec(name="model"), spec(name="epochs", type="int", default=3)]
    assert resolve(specs, {"model": "als"}) == {"model": "als", "epochs": 3}
    assert problems(specs, {"epochs": 1, "typo": 2}) == {
        "model": "required parameter has no value",
        "typo": "no such parameter (declared: model, epochs)"}


@pytest.mark.parametrize("kind,given,value", [
    ("int", 5, 5), ("int", 5.0, 5), ("int", "-12", -12), ("number", 0.5, 0.5),
    ("number", "2", 2), ("number", "1e3", 1000.0), ("bool", True, True), ("bool", "false", False),
    ("list", ["a", 1], ["a", 1]), ("list", '["x", {"k": 1}]', ["x", {"k": 1}]),
    ("list", "als, bpr", ["als", "bpr"]), ("list", "", []), ("string", "5", "5"),
])
def test_values_and_their_text_forms(kind: str, given: Any, value: Any) -> None:
    got = resolve([spec(name="p", type=kind)], {"p": given})["p"]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("kind,given,reason", [
    ("int", "many", "must be an integer, not 'many'"),
    ("int", 1.5, "must be an integer (64-bit), not a number"),
    ("int", True, "must be an integer (64-bit), not a boolean"),  # JSON tells them apart
    ("int", 2**63, "must be an integer (64-bit), not a number"),
    ("number", "nan", "must be a finite number, not 'nan'"),
    ("bool", 1, "must be true or false, not a number"),
    ("bool", "yes", "must be true or false, not 'yes'"),
    ("string", 5, "must be a string, not a number"),
    ("string", "a\x00b", "must not contain NUL"),
    ("list", {"a": 1}, "must be a list, not an object"),
    ("list", "[1,", "is not a JSON list: '[1,'"),
])
def test_ill_typed_values_name_the_parameter(kind: str, given: Any, reason: str) -> None:
    assert problems([spec(name="p", type=kind)], {"p": given}) == {"p": reason}


def test_enum_and_pattern() -> None:
    specs = [spec(name="m", enum=["als", "bpr"]), spec(name="n", type="int", enum=[1, 2]),
             spec(name="tag", pattern="[a-z]+(-[a-z]+)*")]
    assert resolve(specs, {"m": "bpr", "n": "2", "tag": "a-b"}) == {"m": "bpr", "n": 2, "tag": "a-b"}
    assert problems(specs, {"m": "xgb", "n": True, "tag": "a-b\n"}) == {
        "m": 'must be one of "als", "bpr"',
        "n": "must be an integer (64-bit), not a boolean",
        "tag": "does not match the pattern '[a-z]+(-[a-z]+)*'"}  # whole value, no "$\n" loophole


def test_pattern_runs_in_linear_time() -> None:
    # Catastrophic for a backtracking engine; the Rust engine answers at once.
    evil = spec(name="p", pattern="(a+)+b")
    started = time.process_time()  # CPU time: a busy machine does not stretch it
    assert problems([evil], {"p": "a" * 50_000 + "c"})
    assert time.process_time() - started < 1.0


@pytest.mark.parametrize("fields,message", [
    ({"name": "p", "type": "int", "default": "x"}, "default: must be an integer"),
    ({"name": "p", "type": "int", "pattern": "[0-9]+"}, "pattern applies to string parameters"),
    ({"name": "p", "pattern": "(?<=a)b"}, "pattern does not compile"),
    ({"name": "p", "type": "bool", "enum": [True, "no"]}, "enum[1] must be true or false"),
    ({"name": "p", "enum": ["a"], "default": "b"}, "default: must be one of"),
    ({"name": "1p"}, "String should match pattern"),
    ({"name": "p", "kind": "x"}, "unknown key"),
])
def test_bad_declarations_are_located(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(DagError) as info:
        parse_dag(doc(params=[fields]))
    assert any(e.loc.startswith("params[0]") and message in e.msg for e in info.value.errors), \
        info.value.errors


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", "b=x=y", "c=", "a=2"]) == {"a": "2", "b": "x=y", "c": ""}
    for bad in ("novalue", "=x", "1a=2", "a-b=1"):
        with pytest.raises(ValueError, match="is not NAME=VALUE"):
            parse_assignments([bad])


# --------------------------------------------------------------------------- documents


def task(name: str, *command: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "debian:12", "command": list(command), **extra}


def doc(*tasks: dict[str, Any], params: list[dict[str, Any]] | None = None,
        **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "dagName": "p", "params": params or [],
            "tasks": list(tasks) or [task("a", "true")], **extra}


def parse(document: dict[str, Any]) -> Any:
    return parse_dag_document(json.dumps(document).encode())


PARAMS: list[dict[str, Any]] = [
    {"name": "model", "enum": ["als", "bpr"]}, {"name": "epochs", "type": "int", "default": 3},
    {"name": "models", "type": "list", "default": ["als", "bpr"]}]


def test_unknown_references_are_400s_naming_the_field() -> None:
    bad = doc(task("a", "echo", "{{ params.model }}"),
              task("b", "echo", args=["{{ params.epoch }}"], env={"X": "{{ run.when }}"}),
              task("c", "echo", "{{ item }}", "{{7*7}}"), params=PARAMS)
    with pytest.raises(DagError) as info:
        parse(bad)
    errors = {e.loc: e.msg for e in info.value.errors}
    assert set(errors) == {"tasks[1].args[0]", "tasks[1].env.X", "tasks[2].command[1]",
                           "tasks[2].command[2]"}
    assert errors["tasks[1].args[0]"].startswith("unknown reference 'params.epoch' (known: ")
    assert errors["tasks[2].command[1]"].startswith("unknown reference 'item'")
    assert "malformed template expression" in errors["tasks[2].command[2]"]


def test_run_time_references_only_where_they_have_a_value() -> None:
    ok = doc(task("fan", "echo", "{{ item }}", "{{ item.name }}", forEach=[{"name": "x"}]),
             onExit=[task("report", "echo", "{{ run.status }}", "{{ run.failedTasks }}")])
    parse(ok)
    with pytest.raises(DagError, match=r"unknown reference 'run\.status'"):
        parse(doc(task("a", "echo", "{{ run.status }}")))


def test_rendering_into_argv_env_and_strings() -> None:
    dag = parse(doc(
        task("train", "python", "train.py", "{{ params.model }}", "--epochs={{params.epochs}}",
             args=["{{ params.models }}", '{{ "{{" }}literal'],
             env={"RUN": "{{ run.id }}", "AT": "{{ run.logicalTime }}"}),
        task("fan", "echo", "{{ params.model }}", "{{ item }}", '{{ "{{" }}', forEach=["a"]),
        params=PARAMS))
    inst = instantiate(dag, RunSpec(RUN_ID, "2026-12-01T00:00:00Z", {"model": "bpr"}))
    assert inst.templated and inst.params == {"model": "bpr", "epochs": 3, "models": ["als", "bpr"]}
    train = inst.dag.task("train")
    assert train.command == ["python", "train.py", "bpr", "--epochs=3"]
    # Stored as a template: escapes stay until the scheduler's render at dispatch.
    assert train.args == ['["als","bpr"]', '{{ "{{" }}literal']
    assert [render(a, {}) for a in train.args] == ['["als","bpr"]', "{{literal"]
    assert train.env == {"RUN": RUN_ID, "AT": "2026-12-01T00:00:00Z"}
    # A forEach task keeps {{ item }} (and its escapes) for the scheduler's render.
    assert inst.dag.task("fan").command == ["echo", "bpr", "{{ item }}", '{{ "{{" }}']
    # A rendered definition re-parses as stored (no template check on stored definitions).
    assert parse_dag(inst.dag.to_document()) == inst.dag


def test_a_value_holding_braces_reaches_the_task_unchanged() -> None:
    dag = parse(doc(task("plain", "echo", "{{ params.s }}"),
                    task("fan", "echo", "{{ params.s }}/{{ item }}", forEach=["i"]),
                    params=[{"name": "s"}]))
    stored = instantiate(dag, RunSpec(RUN_ID, "t", {"s": "a{{ item }}b{{"})).dag
    # What the scheduler dispatches: each task rendered once with the run-time values.
    assert render(stored.task("plain").command[1], {}) == "a{{ item }}b{{"
    assert render(stored.task("fan").command[1], {"item": "i"}) == "a{{ item }}b{{/i"


def test_values_that_break_the_document_are_refused_at_submit() -> None:
    dag = parse(doc(task("a", "echo", "{{ params.s }}{{ params.s }}"),
                    params=[{"name": "s"}]))
    with pytest.raises(DagError) as info:
        instantiate(dag, RunSpec(RUN_ID, "t", {"s": "x" * 40_000}))
    assert info.value.errors[0].loc == "tasks[0].command[1]"
    with pytest.raises(DagError) as info:
        instantiate(dag, RunSpec(RUN_ID, "t", {}))
    assert [(e.loc, e.msg) for e in info.value.errors] == [
        ("params.s", "required parameter has no value")]


def test_untemplated_documents_are_unchanged() -> None:
    dag = parse(doc(task("a", "echo", "{ not } a template")))
    inst = instantiate(dag, RunSpec(RUN_ID, "t", {}))
    assert inst.dag is dag and not inst.templated and inst.params == {}


def test_parameters_are_part_of_the_memo_fingerprint() -> None:
    dag = parse(doc(task("a", "train", "{{ params.model }}", memoize=True),
                    task("b", "prep", env={"E": "{{ params.epochs }}"}, memoize=True),
                    params=PARAMS))

    def prints(**values: object) -> tuple[str, str]:
        d = instantiate(dag, RunSpec(RUN_ID, "t", values)).dag
        return fingerprint(d.task("a"), {}).digest, fingerprint(d.task("b"), {}).digest

    base = prints(model="als")
    assert prints(model="als") == base  # the same values: the same fingerprints
    changed_model, changed_epochs = prints(model="bpr"), prints(model="als", epochs=4)
    assert changed_model[0] != base[0] and changed_model[1] == base[1]
    assert changed_epochs[0] == base[0] and changed_epochs[1] != base[1]


def test_rfc3339() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    assert rfc3339(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == "2026-03-29T01:00:00Z"
    assert rfc3339(datetime(2026, 3, 29, 1, 0, 0, 250_000)) == "2026-03-29T01:00:00.250Z"
    paris = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 3, 29, 3, 0, tzinfo=paris)) == "2026-03-29T03:00:00+02:00"
