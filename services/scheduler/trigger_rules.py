"""Trigger rules: given the states of a task's dependencies, may it run yet?

| rule            | runs when                                  | otherwise                               |
| --------------- | ------------------------------------------ | --------------------------------------- |
| `all_succeeded` | every dependency SUCCEEDED                 | UPSTREAM_FAILED at the first failure;   |
|  (the default)  |                                            | SKIPPED at the first skipped dependency |
| `all_done`      | every dependency is terminal, in any state | (never fails or skips on its own)       |
| `any_failed`    | a dependency failed (at once, not waiting) | SKIPPED once all are done and none failed |
| `none_failed`   | all terminal, none failed (skips are fine) | UPSTREAM_FAILED at the first failure    |

"Failed" is FAILED, UPSTREAM_FAILED or CANCELLED. SKIPPED counts as success for the run
but, under the default rule, skips the dependents (Airflow's semantics).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from helios.states import TaskState

T = TaskState
FAILED_STATES = frozenset({T.FAILED, T.UPSTREAM_FAILED, T.CANCELLED})


class Verdict(Enum):
    WAIT = "wait"
    RUN = "run"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


def verdict(rule: str, states: Iterable[TaskState]) -> Verdict:
    """What a PENDING task with this rule does now (no dependencies: it runs)."""
    seen = list(states)
    failed = any(s in FAILED_STATES for s in seen)
    done = all(s.terminal for s in seen)
    if rule == "all_succeeded":
        if failed:
            return Verdict.UPSTREAM_FAILED
        if any(s is T.SKIPPED for s in seen):
            return Verdict.SKIP
        return Verdict.RUN if done else Verdict.WAIT
    if rule == "all_done":
        return Verdict.RUN if done else Verdict.WAIT
    if rule == "any_failed":
        if failed:
            return Verdict.RUN
        return Verdict.SKIP if done and seen else (Verdict.RUN if not seen else Verdict.WAIT)
    if rule == "none_failed":
        if failed:
            return Verdict.UPSTREAM_FAILED
        return Verdict.RUN if done else Verdict.WAIT
    raise ValueError(f"unknown trigger rule {rule!r}")
