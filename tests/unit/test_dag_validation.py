"""DAG documents: the seed is accepted unchanged; every rule rejects with field and reason."""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from importlib import resources
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from helios.dag import Dag, DagError, parse_dag, parse_dag_document
from helios.dag.model import ENV_NAME, FILE_NAME, HIDDEN_CHARS, NO_NUL, PROGRAM, check_file_name

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
    (lambda d: d["tasks"][0].update(command=[""]), "tasks[0].command[0]", "must not be empty"),
    (lambda d: d["tasks"][0].update(command=[" \t"]), "tasks[0].command", "must not be empty"),
    (lambda d: d["tasks"][0].update(command=["echo", ""]), "tasks[0].command[1]", "must not be empty"),
    (lambda d: d["tasks"][0].update(outputs=["../x"]), "tasks[0].outputs[0]", "'/'"),
    (lambda d: d["tasks"][0].update(outputs=[".."]), "tasks[0].outputs[0]", "'..'"),
    (lambda d: d["tasks"][0].update(outputs=["-rf"]), "tasks[0].outputs[0]", "'-'"),
    (lambda d: d["tasks"][0].update(outputs=["a\x00b"]), "tasks[0].outputs[0]", "NUL"),
    (lambda d: d["tasks"][0].update(outputs=[""]), "tasks[0].outputs[0]", "empty"),
    # A newline would let a task forge `[HELIOS]` log lines; bidi controls disguise names.
    (lambda d: d["tasks"][0].update(outputs=["a\n[HELIOS] Cache hit"]), "tasks[0].outputs[0]",
     "U+000A"),
    (lambda d: d["tasks"][0].update(outputs=["x\u202egpj.exe"]), "tasks[0].outputs[0]", "U+202E"),
    (lambda d: d["tasks"][0].update(outputs=["x\u2066y"]), "tasks[0].outputs[0]", "U+2066"),
    (lambda d: d["tasks"][0].update(outputs=["zero\u200bwidth"]), "tasks[0].outputs[0]", "U+200B"),
    (lambda d: d["tasks"][0].update(outputs=["tag\U000e0041"]), "tasks[0].outputs[0]", "U+E0041"),
    (lambda d: d["tasks"][1]["inputs"][0].update(name="in\rput"), "tasks[1].inputs[0].name",
     "U+000D"),
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
    # `$` matches before a trailing newline: names are checked with full matches.
    (lambda d: d["tasks"][0].update(env={"FOO\n": "1"}), "tasks[0].env", "not a valid variable name"),
    (lambda d: d["tasks"][0].update(env={"F\u202eOO": "1"}), "tasks[0].env",
     "not a valid variable name"),
    (lambda d: d["tasks"][0].update(env={"FOO": "a\x00"}), "tasks[0].env", "NUL"),
    (lambda d: d.update(dagName="abc\n"), "dagName", "DNS-1123"),
    (lambda d: d.update(apiVersion="v2"), "apiVersion", "'v1'"),
    (lambda d: d.update(tasks=[]), "tasks", "at least 1"),
    # Types are strict: a wrong type is an error, never silently converted.
    (lambda d: d["tasks"][0].update(retries=True), "tasks[0].retries", "valid integer"),
    (lambda d: d["tasks"][0].update(retries="3"), "tasks[0].retries", "valid integer"),
    (lambda d: d["tasks"][0].update(cache="yes"), "tasks[0].cache", "valid boolean"),
    (lambda d: d["tasks"][0].update(image=123), "tasks[0].image", "valid string"),
    (lambda d: d["tasks"][0].update(image="busy box"), "tasks[0].image", "image reference"),
    (lambda d: d["tasks"][0].update(image="busybox\u2028"), "tasks[0].image", "image reference"),
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


# ------------------------------------------------------- the schema states the same rules

def test_hidden_characters_match_unicodedata() -> None:
    """HIDDEN_CHARS is every Cc, Cf, Zl and Zp code point this Python knows."""
    listed = {cp for lo, hi in HIDDEN_CHARS for cp in range(lo, hi + 1)}
    wanted = {cp for cp in range(0x110000)
              if unicodedata.category(chr(cp)) in ("Cc", "Cf", "Zl", "Zp")}
    assert listed == wanted


def test_published_patterns_compile_in_a_rust_validator() -> None:
    """Schema-driven tools (schemathesis, jsonschema-rs) drop a pattern they cannot compile."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    for pattern in (FILE_NAME, ENV_NAME, PROGRAM, NO_NUL):
        jsonschema_rs.Draft202012Validator({"pattern": pattern})


def test_lone_surrogates_never_reach_the_name_checks() -> None:
    doc = base()
    doc["tasks"][0]["outputs"] = ["a\ud800"]
    assert "tasks[0].outputs[0]" in errors_of(doc)


def _file_name_ok(value: str) -> bool:
    try:
        check_file_name(value)
    except ValueError:
        return False
    return True


file_name_chars = st.sampled_from(["a", "Z", "0", ".", "-", "/", "\\", "\x00", "\n", "\x7f",
                                   "\u202e", "\u2066", "\u200b", "\ufeff", "é", " ", "_",
                                   "\U000e0041", "\U0001f600"])


@settings(max_examples=2000, deadline=None)
@given(st.text(file_name_chars, max_size=8) | st.text(max_size=8))
def test_file_name_check_is_the_published_pattern(value: str) -> None:
    by_pattern = re.fullmatch(FILE_NAME, value) is not None and len(value) <= 255
    assert _file_name_ok(value) == by_pattern, repr(value)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(FILE_NAME, fullmatch=True))
def test_names_drawn_from_the_published_pattern_are_accepted(value: str) -> None:
    assume(len(value) <= 255)
    assert _file_name_ok(value)


@settings(max_examples=1000, deadline=None)
@given(st.text(st.sampled_from(["A", "z", "_", "0", "\n", "-", " ", "\u202e"]), max_size=6))
def test_env_names_follow_the_published_pattern(name: str) -> None:
    doc = base()
    doc["tasks"][0]["env"] = {name: "v"}
    expect = re.fullmatch(ENV_NAME, name) is not None
    try:
        parse_dag(doc)
        accepted = True
    except DagError:
        accepted = False
    assert accepted == expect, repr(name)


def test_schema_states_the_validator_rules() -> None:
    task = Dag.model_json_schema(by_alias=True)["$defs"]["Task"]["properties"]
    assert task["command"]["items"]["minLength"] == 1
    assert task["command"]["prefixItems"][0]["pattern"] == PROGRAM
    assert task["env"]["propertyNames"]["pattern"] == ENV_NAME
    assert task["env"]["propertyNames"]["not"]["pattern"] == "^HELIOS_"
    assert task["outputs"]["items"]["pattern"] == FILE_NAME
    assert task["outputs"]["uniqueItems"] is True
    assert re.fullmatch(PROGRAM, " \t") is None and re.fullmatch(PROGRAM, " x ")
    assert task["retries"]["maximum"] == 20
    # Only JSON Schema keywords: pydantic's own names (ge, le) would be ignored by clients.
    text = json.dumps(Dag.model_json_schema(by_alias=True))
    assert not re.search(r'"(ge|le|gt|lt)":', text)


def test_integral_numbers_are_integers() -> None:
    """JSON Schema's integer includes 15.0; strings, booleans and fractions stay errors."""
    doc = base()
    doc["tasks"][0].update(retries=3.0, timeoutSeconds=60.0)
    task = parse_dag(doc).tasks[0]
    assert (task.retries, task.timeout_seconds) == (3, 60)
    assert type(task.retries) is int
    for bad in (2.5, "3", True, float("nan")):
        doc["tasks"][0]["retries"] = bad
        assert "tasks[0].retries" in errors_of(doc), bad
