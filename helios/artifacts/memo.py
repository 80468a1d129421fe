"""Task fingerprints for memoization (pure: no I/O, stable across processes and hosts).

A fingerprint is a sha256 over named parts, each itself a sha256 of canonical JSON
(sorted keys, no whitespace, UTF-8), so the scheduler can store the parts of every
successful attempt and later say which part changed, not just that something did.

Parts: `image`, `command` (command and args), `env`, `outputs` (the declared names: an
attempt that wrote fewer files cannot stand in for a task that now declares more),
`cacheVersion`, and `input:{name}` per input with the sha256 of the bytes placed there.
Scheduling-only fields (resources, retries, timeouts, node selectors, ...) do not change
what a task computes and are left out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from helios.dag.model import Task

VERSION = "helios-memo-v1"  # bump when the parts or their encoding change
_INPUT = "input:"
_ORDER = ("image", "command", "env", "outputs", "cacheVersion")


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    parts: dict[str, str] = field(hash=False)


def fingerprint(task: Task, input_digests: dict[str, str]) -> Fingerprint:
    """`input_digests` maps each input's name (its file under /artifacts) to its sha256."""
    parts = {
        "image": _hash("image", task.image),
        "command": _hash("command", {"command": task.command, "args": task.args}),
        "env": _hash("env", task.env),
        "outputs": _hash("outputs", sorted(task.outputs)),
        "cacheVersion": _hash("cacheVersion", task.cache_version),
    }
    for name, digest in input_digests.items():
        parts[_INPUT + name] = _hash("input", {"name": name, "sha256": digest})
    return Fingerprint(digest=_hash(VERSION, parts), parts=parts)


def explain_change(previous: dict[str, str] | None, current: dict[str, str]) -> str:
    """Why a memoizable task runs: "no earlier successful attempt" or "changed: ..."."""
    if previous is None:
        return "no earlier successful attempt"
    changed = [key for key in _ordered(previous.keys() | current.keys())
               if previous.get(key) != current.get(key)]
    if not changed:
        return "fingerprint unchanged (earlier outputs unavailable)"
    labels = []
    for key in changed:
        label = f"input {key[len(_INPUT):]}" if key.startswith(_INPUT) else key
        if key not in current:
            label += " (removed)"
        elif key not in previous:
            label += " (new)"
        labels.append(label)
    return "changed: " + ", ".join(labels)


def _ordered(keys: set[str]) -> list[str]:
    known = [k for k in _ORDER if k in keys]
    return known + sorted(k for k in keys if k not in _ORDER)


def _hash(kind: str, value: object) -> str:
    # The part's name is hashed with its value: equal values of two parts stay distinct.
    text = json.dumps([kind, value], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
