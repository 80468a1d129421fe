"""The examples' documents without the stack: each DAG passes the API's validation, each
step's Python compiles (on the host's 3.11), and the playlist trigger is a valid body."""

from __future__ import annotations

import json

import pytest

from helios.dag.parse import parse_dag_document
from helios.schedules.records import TriggerBody
from tests.examples.helpers import EXAMPLES, example

NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "dag.yaml").is_file())


def test_every_example_is_listed() -> None:
    assert NAMES == ["dagster-steps", "playlist-rules", "two-stage-recsys"]
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"## {name}:" in readme for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_dag_valid_and_code_compiles(name: str) -> None:
    dag = parse_dag_document(example(name).encode(), "application/yaml")
    assert dag.dag_name == name
    for task in dag.all_tasks:
        assert task.image == "python:3.11-slim"
        assert task.command[:2] == ["python3", "-c"], task.name
        compile(task.command[2], f"{name}/{task.name}", "exec")


def test_playlist_trigger_body() -> None:
    body = TriggerBody.model_validate(json.loads(example("playlist-rules", "trigger.json")))
    assert body.template == "playlist-rules"
    assert set(body.params) == {"dataset", "version"}
