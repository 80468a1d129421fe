"""Memoization fingerprints: stable, sensitive to what matters, and explainable."""

from __future__ import annotations

from typing import Any

from helios.artifacts.memo import explain_change, fingerprint
from helios.dag.model import Task

INPUT = "a" * 64


def task(**fields: Any) -> Task:
    base: dict[str, Any] = {
        "name": "train", "image": "python:3.11", "command": ["python", "train.py"],
        "args": ["--epochs", "3"], "env": {"A": "1", "B": "2"}, "outputs": ["model.bin"],
        "memoize": True,
    }
    return Task.model_validate({**base, **fields})


def test_the_digest_is_stable_across_processes() -> None:
    # A literal: any change of encoding (or dependence on hash seeds, dict order...)
    # would silently invalidate every stored fingerprint, so it must be deliberate.
    fp = fingerprint(task(), {"input.txt": INPUT})
    assert fp.digest == "2342cc8224edce057e51235baed1aa28f8f340b8e954b8fb5ada9902415e625d"
    assert set(fp.parts) == {
        "image", "command", "env", "outputs", "cacheVersion", "input:input.txt"
    }
    assert fingerprint(task(env={"B": "2", "A": "1"}), {"input.txt": INPUT}) == fp


def test_scheduling_fields_do_not_matter() -> None:
    fp = fingerprint(task(), {})
    assert fingerprint(task(retries=3, timeoutSeconds=60, nodeSelector={"gpu": "yes"}), {}) == fp


def test_explain_change() -> None:
    before = fingerprint(task(), {"input.txt": INPUT})
    assert explain_change(None, before.parts) == "no earlier successful attempt"

    cases = [
        (task(command=["python", "train2.py"]), {"input.txt": INPUT}, "changed: command"),
        (task(args=["--epochs", "4"]), {"input.txt": INPUT}, "changed: command"),
        (task(), {"input.txt": "b" * 64}, "changed: input input.txt"),
        (task(cacheVersion="2"), {"input.txt": INPUT}, "changed: cacheVersion"),
        (task(image="python:3.12", env={"A": "2"}), {"input.txt": INPUT}, "changed: image, env"),
        (task(command=["x"]), {"input.txt": "b" * 64}, "changed: command, input input.txt"),
        (task(), {"input.txt": INPUT, "extra.csv": INPUT},
         "changed: input extra.csv (new)"),
        (task(), {}, "changed: input input.txt (removed)"),
    ]
    for changed_task, inputs, expected in cases:
        after = fingerprint(changed_task, inputs)
        assert after.digest != before.digest
        assert explain_change(before.parts, after.parts) == expected
    assert explain_change(before.parts, before.parts).startswith("fingerprint unchanged")
