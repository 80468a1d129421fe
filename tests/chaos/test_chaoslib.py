"""The chaos checks themselves: each one fails on the fault it is there to catch."""

from __future__ import annotations

import random

from bench import chaoslib
from bench.chaoslib import Shape

SHAPE = Shape("s", {"dagName": "chaos-s"}, "SUCCEEDED", {"a": "SUCCEEDED", "b": "SUCCEEDED"})


def status(state: str, **tasks: str) -> dict:  # type: ignore[type-arg]
    return {"status": state, "tasks": [{"name": n, "state": s, "attempts": 1} for n, s in tasks.items()]}


def test_outcomes_tell_correct_stuck_and_wrong_apart() -> None:
    expected = {"r1": SHAPE, "r2": SHAPE, "r3": SHAPE, "r4": SHAPE}
    check = chaoslib.check_outcomes(expected, {
        "r1": status("SUCCEEDED", a="SUCCEEDED", b="SUCCEEDED"),
        "r2": status("RUNNING", a="SUCCEEDED", b="RUNNING"),
        "r3": status("FAILED", a="FAILED", b="UPSTREAM_FAILED"),
        "r4": None,  # gone: a 404
    })
    assert not check.ok and check.summary == "1 correct / 2 stuck / 1 wrong"


def test_a_second_start_of_one_attempt_is_counted_and_starts_must_be_recorded() -> None:
    statuses = {"r1": status("SUCCEEDED", a="SUCCEEDED", b="SUCCEEDED")}
    starts = [("r1", "a", 1), ("r1", "b", 1), ("r1", "b", 2), ("other", "a", 1), ("other", "a", 1)]
    assert chaoslib.check_double_starts(starts, statuses).ok
    twice = chaoslib.check_double_starts([*starts, ("r1", "a", 1)], statuses)
    assert not twice.ok and twice.summary.startswith("1 ")
    assert not chaoslib.check_double_starts([("r1", "a", 1)], statuses).ok  # b never reported


def test_feeds_lost_and_repeated_events() -> None:
    reference = {"r1": [1, 2, 5], "r2": [3, 4]}
    assert chaoslib.check_feeds({"r1": [1, 2, 5], "r2": [3, 4]}, reference, {"r1": 1}).ok
    bad = chaoslib.check_feeds({"r1": [1, 2, 2, 5], "r2": [3]}, reference, {"r1": 2, "r2": 1})
    assert not bad.ok and "1 lost / 1 seen twice" in bad.summary


def test_lost_attempts_and_their_reruns() -> None:
    def ev(task: str, attempt: int, state: str, reason: str | None = None) -> dict:  # type: ignore[type-arg]
        return {"type": "task", "task": task, "attempt": attempt, "state": state, "reason": reason}

    rerun = [ev("a", 1, "RUNNING"), ev("a", 2, "QUEUED", "ExecutorLost"), ev("a", 2, "SUCCEEDED")]
    failed = [ev("b", 1, "RUNNING"), ev("b", 1, "FAILED", "ExecutorLost")]
    assert chaoslib.lost_attempts({"r1": rerun})[:2] == (1, 1)
    assert chaoslib.lost_attempts({"r1": rerun, "r2": failed})[:2] == (2, 1)
    assert not chaoslib.check_lost({"r2": failed}).ok


def test_metrics_compare_cache_class_only_without_reruns() -> None:
    base = {"status": "SUCCEEDED", "taskCount": 2, "taskSucceeded": 2, "taskFailed": 0,
            "taskUpstreamFailed": 0, "cacheHit": "Miss"}
    hit = {**base, "cacheHit": "Hit"}
    assert chaoslib.check_metrics({"r1": SHAPE}, {"r1": hit}, {"s": base}, extra_attempts={"r1"}).ok
    assert not chaoslib.check_metrics({"r1": SHAPE}, {"r1": hit}, {"s": base}, extra_attempts=set()).ok
    assert not chaoslib.check_metrics({"r1": SHAPE}, {"r1": None}, {"s": base}, set()).ok


def test_plan_has_every_shape_once_and_one_cancel() -> None:
    shapes = chaoslib.shapes(recorder_port=1, task_s=0.1)
    plan = chaoslib.plan_runs(shapes, 50, random.Random(3))
    assert len(plan) == 50 and {s.name for s in plan} == {s.name for s in shapes}
    assert sum(s.cancel for s in plan) == 1
    assert plan == chaoslib.plan_runs(shapes, 50, random.Random(3))  # seeded


def test_a_run_standing_still_is_caught() -> None:
    events = [{"task": "a", "state": "QUEUED", "at": 0.0}, {"task": "a", "state": "RUNNING", "at": 1.0},
              {"task": "a", "state": "SUCCEEDED", "at": 31.0}]
    check = chaoslib.check_pauses({"r1": events}, limit_s=10)
    assert not check.ok and "30.0s before a SUCCEEDED" in check.details[0]
    assert chaoslib.check_pauses({"r1": events[:2]}, limit_s=10).ok
    # A kill whose process took 25 s to come back explains most of the pause.
    assert chaoslib.check_pauses({"r1": events}, limit_s=10, kills=[(5.0, "all", 25.0)]).ok


def test_a_feed_must_end_on_the_runs_own_end() -> None:
    done = {"r1": status("SUCCEEDED", a="SUCCEEDED")}
    assert chaoslib.check_terminal({"r1": {"type": "run", "state": "SUCCEEDED"}}, done).ok
    assert not chaoslib.check_terminal({"r1": {"type": "run", "state": "FAILED"}}, done).ok
    assert not chaoslib.check_terminal({"r1": {"type": "task", "task": "a", "state": "SUCCEEDED"}}, done).ok
