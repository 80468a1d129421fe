"""DAG documents: the seed is accepted unchanged; every rule rejects with field and reason."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from helios.dag import DagError, parse_dag, parse_dag_document

SEED = resources.files("helios").joinpath("examples/cache-test.yaml").read_bytes()


def base() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "dagName": "demo",
        "tasks": [
            {"name": "a", "image": "busybox", "command": ["true"], "outputs": ["out.txt"]},
            {"name": "b", "image": "busybox", "command": ["true"],
             "inputs": [{"fromTask": "a", "name": "in.txt"}]},
        ],
    }


def errors_of(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(DagError) as info:
        parse_dag(doc)
    return {e.loc: e.msg for e in info.value.errors}


def test_seed_example_is_accepted_unchanged() -> None:
    dag = parse_dag_document(SEED, "application/yaml")
    assert dag.dag_name == "cache-test"
    assert dag.use_cache is True
    assert dag.task("process-data").dependencies == ["generate-data"]
    assert dag.task("process-data").inputs[0].from_task == "generate-data"


def test_json_and_yaml_give_the_same_dag() -> None:
    as_json = json.dumps(base()).encode()
    assert parse_dag_document(as_json) == parse_dag(base())


def test_input_implies_dependency() -> None:
    assert parse_dag(base()).task("b").dependencies == ["a"]


@pytest.mark.parametrize(("mutate", "field", "reason"), [
    (lambda d: d.update(extra=1), "extra", "unknown key"),
    (lambda d: d["tasks"][0].update(colour="red"), "tasks[0].colour", "unknown key"),
    (lambda d: d.update(dagName="Not_A_Label"), "dagName", "DNS-1123"),
    (lambda d: d["tasks"][1].update(name="B"), "tasks[1].name", "DNS-1123"),
    (lambda d: d["tasks"][0].update(command=[]), "tasks[0].command", "must not be empty"),
    (lambda d: d["tasks"][0].update(command=[""]), "tasks[0].command", "must not be empty"),
    (lambda d: d["tasks"][0].update(outputs=["../x"]), "tasks[0].outputs", "'/'"),
    (lambda d: d["tasks"][0].update(outputs=[".."]), "tasks[0].outputs", "'..'"),
    (lambda d: d["tasks"][0].update(outputs=["-rf"]), "tasks[0].outputs", "'-'"),
    (lambda d: d["tasks"][0].update(outputs=["a\x00b"]), "tasks[0].outputs", "NUL"),
    (lambda d: d["tasks"][0].update(outputs=[""]), "tasks[0].outputs", "empty"),
    (lambda d: d["tasks"][1]["inputs"][0].update(name="dir/x"), "tasks[1].inputs[0].name", "'/'"),
    (lambda d: d["tasks"][0].update(retries=-1), "tasks[0].retries", "greater than or equal"),
    (lambda d: d["tasks"][0].update(retries=1000), "tasks[0].retries", "less than or equal"),
    (lambda d: d["tasks"][0].update(timeoutSeconds=0), "tasks[0].timeoutSeconds", "greater"),
    (lambda d: d["tasks"][1].update(depends_on=["nope"]), "tasks[1].depends_on[0]", "unknown task 'nope'"),
    (lambda d: d["tasks"][1].update(name="a"), "tasks[1].name", "duplicate task name 'a'"),
    (lambda d: d["tasks"][1]["inputs"][0].update(fromTask="zz"), "tasks[1].inputs[0].fromTask", "unknown task"),
    (lambda d: d["tasks"][1]["inputs"][0].update(artifact="other.txt"), "tasks[1].inputs[0].artifact",
     "declares no output 'other.txt'"),
    (lambda d: d["tasks"][0].update(env={"HELIOS_X": "1"}), "tasks[0].env", "reserved"),
    (lambda d: d["tasks"][0].update(env={"1BAD": "1"}), "tasks[0].env", "not a valid variable name"),
    (lambda d: d.update(apiVersion="v2"), "apiVersion", "'v1'"),
    (lambda d: d.update(tasks=[]), "tasks", "at least 1"),
    # Types are strict: a wrong type is an error, never silently converted.
    (lambda d: d["tasks"][0].update(retries=True), "tasks[0].retries", "valid integer"),
    (lambda d: d["tasks"][0].update(retries="3"), "tasks[0].retries", "valid integer"),
    (lambda d: d["tasks"][0].update(cache="yes"), "tasks[0].cache", "valid boolean"),
    (lambda d: d["tasks"][0].update(image=123), "tasks[0].image", "valid string"),
])
def test_rejections_name_field_and_reason(mutate: Any, field: str, reason: str) -> None:
    doc = copy.deepcopy(base())
    mutate(doc)
    errors = errors_of(doc)
    assert field in errors, errors
    assert reason in errors[field], errors


def test_producer_with_several_outputs_needs_artifact() -> None:
    doc = base()
    doc["tasks"][0]["outputs"] = ["x.txt", "y.txt"]
    errors = errors_of(doc)
    assert "several outputs" in errors["tasks[1].inputs[0].artifact"]
    doc["tasks"][1]["inputs"][0]["artifact"] = "y.txt"
    assert parse_dag(doc).task("b").inputs[0].artifact == "y.txt"


def test_cycle_is_named() -> None:
    doc = base()
    doc["tasks"][0]["depends_on"] = ["c"]
    doc["tasks"].append({"name": "c", "image": "i", "command": ["x"], "depends_on": ["b"]})
    errors = errors_of(doc)
    assert errors["tasks"].startswith("dependency cycle: ")
    cycle = errors["tasks"].removeprefix("dependency cycle: ").split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_self_dependency() -> None:
    doc = base()
    doc["tasks"][0]["depends_on"] = ["a"]
    assert "itself" in errors_of(doc)["tasks[0].depends_on[0]"]


def test_too_many_tasks() -> None:
    doc = base()
    doc["tasks"] = [{"name": f"t{i}", "image": "i", "command": ["x"]} for i in range(1001)]
    assert "at most 1000" in errors_of(doc)["tasks"]


def test_thousand_tasks_is_fine() -> None:
    doc = base()
    doc["tasks"] = [{"name": f"t{i}", "image": "i", "command": ["x"]} for i in range(1000)]
    assert len(parse_dag(doc).tasks) == 1000


def test_oversized_document() -> None:
    body = b" " * (1024 * 1024 + 1)
    with pytest.raises(DagError, match="too large"):
        parse_dag_document(body)


@pytest.mark.parametrize(("body", "ctype", "title"), [
    (b"{not json", "application/json", "malformed JSON"),
    (b"a: [1, 2", "application/yaml", "malformed YAML"),
    (b"a: &x [1]\nb: *x\n", "application/yaml", "malformed YAML"),
    (b"[1, 2]", "application/json", "invalid DAG"),
    (b"null", "application/json", "invalid DAG"),
])
def test_malformed_documents(body: bytes, ctype: str, title: str) -> None:
    with pytest.raises(DagError) as info:
        parse_dag_document(body, ctype)
    assert info.value.title == title


def test_every_error_is_reported_at_once() -> None:
    doc = base()
    doc["dagName"] = "BAD"
    doc["tasks"][0]["command"] = []
    doc["tasks"][0]["bogus"] = True
    assert len(errors_of(doc)) >= 3
