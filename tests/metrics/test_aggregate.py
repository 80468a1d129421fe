"""The pure parts: event order, classification, one run's metrics, the summary."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

import pytest

from helios.messages import CacheStats, RunEvent, TaskEvent
from helios.states import RunState, TaskState
from services.metrics import records
from services.metrics.aggregate import RunMetrics, TaskTiming, classify, run_metrics, task_timings
from services.metrics.records import Snapshot
from services.metrics.summary import percentile, summarize
from tests.metrics.support import EXPECTED_SUMMARY, RunSpec, TaskSpec, run_events, summary_runs

T0 = 1_700_000_000.0
S, F, UF = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.UPSTREAM_FAILED


def snapshot_of(events: Sequence[TaskEvent | RunEvent]) -> Snapshot:
    """What the store keeps: the max-register of each task and of the run (the Python twin
    of the Lua script), plus the QUEUED marks."""
    best: dict[str, tuple[records.Order, TaskEvent | RunEvent]] = {}
    snap = Snapshot()
    for event in events:
        name, order, _ = records.encode(event)
        if records.supersedes(order, best[name][0] if name in best else None):
            best[name] = (order, event)
        if isinstance(event, TaskEvent) and event.state is TaskState.QUEUED:
            snap.queued.setdefault((event.task, event.attempt), event.at)
    for _, event in best.values():
        if isinstance(event, RunEvent):
            snap.run = event
        else:
            snap.tasks[event.task] = event
    return snap


def metrics_of(spec: RunSpec) -> RunMetrics:
    return run_metrics(spec.dag_id, snapshot_of(run_events(spec)))


def done(task: str, hits: int = 0, misses: int = 0, inputs: int = 1, use_cache: bool = True,
         memoized: bool = False) -> TaskEvent:
    return TaskEvent(dag_id="d", dag_name="n", task=task, state=S, attempt=1, at=T0,
                     inputs=inputs, useCache=use_cache, memoized=memoized,
                     cache=CacheStats(hits=hits, misses=misses))


@pytest.mark.parametrize(("enabled", "tasks", "expected"), [
    (False, [done("a", hits=2)], "N/A"),
    (True, [done("a", inputs=0)], "N/A"),
    (True, [], "N/A"),
    (True, [done("a", hits=2), done("b", hits=1)], "Hit"),
    (True, [done("a", misses=2)], "Miss"),
    (True, [done("a", hits=1, misses=1)], "Partial"),
    (True, [done("a", hits=1), done("b", misses=1)], "Partial"),
    # A task that opted out of the cache, or was memoized, does not make a hit a partial.
    (True, [done("a", hits=1), done("b", misses=1, use_cache=False)], "Hit"),
    (True, [done("a", misses=1), done("b", memoized=True, inputs=3)], "Miss"),
])
def test_classification(enabled: bool, tasks: list[TaskEvent], expected: str) -> None:
    assert classify(enabled, tasks) == expected


def test_latest_event_wins_whatever_the_delivery_order() -> None:
    ev = [
        TaskEvent(dag_id="d", dag_name="n", task="t", state=st, attempt=a, at=T0 + i)
        for i, (st, a) in enumerate([
            (TaskState.PENDING, 0), (TaskState.QUEUED, 1), (TaskState.RUNNING, 1),
            (TaskState.QUEUED, 2), (TaskState.RUNNING, 2), (TaskState.SUCCEEDED, 2),
        ])
    ]
    # A FAILED of attempt 1 that arrives last (a redelivery) must not undo the success.
    late_failure = TaskEvent(dag_id="d", dag_name="n", task="t", state=F, attempt=1, at=T0 + 2.5)
    everything = [*ev, late_failure]
    rng = random.Random(7)
    for _ in range(50):
        shuffled = everything + rng.sample(everything, 3)  # with duplicates
        rng.shuffle(shuffled)
        assert snapshot_of(shuffled).tasks["t"].state is S
        assert snapshot_of(shuffled).tasks["t"].attempt == 2


def test_run_retry_describes_the_latest_outcome() -> None:
    common: dict[str, Any] = {"dagId": "d", "dagName": "n", "useCache": True, "taskCount": 1,
                              "startedAt": T0}
    first = [RunEvent(state=RunState.RUNNING, at=T0, **common),
             RunEvent(state=RunState.FAILED, at=T0 + 5, endedAt=T0 + 5, **common)]
    retry = [RunEvent(state=RunState.RUNNING, at=T0 + 9, generation=1, **common),
             RunEvent(state=RunState.SUCCEEDED, at=T0 + 12, endedAt=T0 + 12, generation=1,
                      **common)]
    for order in itertools.permutations(first + retry[:1]):
        m = run_metrics("d", snapshot_of(list(order)))
        assert (m.status, m.end_time, m.duration_ms, m.generation) == ("RUNNING", None, None, 1)
    for order in itertools.permutations(first + retry):
        m = run_metrics("d", snapshot_of(list(order)))
        assert (m.status, m.duration_ms, m.generation) == ("SUCCEEDED", 12_000, 1)


def known_run() -> RunSpec:
    return RunSpec("run-1", start=T0, duration=7.25, state=RunState.FAILED, tasks=[
        TaskSpec("gen", inputs=0, fetched=0, node="node-a"),
        TaskSpec("proc", inputs=2, hits=2, saved=2048, node="node-b",
                 marks=(1.0, 1.5, 2.0, 2.25, 4.0)),
        TaskSpec("mix", inputs=2, hits=1, misses=1, saved=10, fetched=20, node="node-a"),
        TaskSpec("memo", inputs=1, memoized=True, node="node-a"),
        TaskSpec("bad", final=F, inputs=1, misses=1, fetched=5, attempt=3, node="node-c"),
        TaskSpec("after", final=UF),
    ])


def test_run_metrics_of_a_known_run() -> None:
    m = metrics_of(known_run())
    assert m.to_hash() == {
        "dagId": "run-1", "dagName": "pipe", "status": "FAILED", "generation": "0",
        "startTime": "2023-11-14T22:13:20.000Z", "endTime": "2023-11-14T22:13:27.250Z",
        "durationMs": "7250", "cacheEnabled": "true", "cacheHit": "Partial",
        "taskCount": "6", "taskSucceeded": "4", "taskFailed": "1",
        "taskUpstreamFailed": "1", "taskCancelled": "0", "taskSkipped": "0",
        "cacheHitTasks": "1", "cacheMissTasks": "2", "memoizedTasks": "1",
        "cacheHits": "3", "cacheMisses": "2", "bytesSaved": "2058", "bytesFetched": "25",
        "nodes": "node-a,node-b,node-c",
    }
    assert RunMetrics.from_hash(m.to_hash()) == m


def test_task_timings_break_down_each_successful_task() -> None:
    timings = task_timings(snapshot_of(run_events(known_run())))
    assert sorted(timings) == ["gen", "mix", "proc"]  # not memoized, failed or skipped
    assert timings["proc"] == TaskTiming(total_ms=3000.0, queued_ms=500.0,
                                         waiting_for_node_ms=500.0, pulling_image_ms=250.0,
                                         running_ms=1750.0)


def test_cache_off_run_is_not_applicable() -> None:
    spec = known_run()
    spec.use_cache = False
    m = metrics_of(spec)
    assert (m.cache_enabled, m.cache_hit, m.cache_hit_tasks, m.cache_miss_tasks) == (
        False, "N/A", 0, 0)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (
        10.0, 19.0, 20.0)


def test_summary_of_known_runs() -> None:
    specs = summary_runs()
    snaps = [snapshot_of(run_events(s)) for s in specs]
    runs = [run_metrics(s.dag_id, snap) for s, snap in zip(specs, snaps, strict=True)]
    summary = summarize(runs, [task_timings(snap) for snap in snaps])
    assert summary.model_dump(by_alias=True) == EXPECTED_SUMMARY


def test_summary_of_nothing() -> None:
    assert summarize([], []).model_dump(by_alias=True) == {
        "runs": 0,
        "cached": {"count": 0, "succeeded": 0, "meanMs": None, "p50Ms": None, "p95Ms": None,
                   "cacheHitRatio": None, "bytesSaved": 0, "bytesFetched": 0},
        "nonCached": {"count": 0, "succeeded": 0, "meanMs": None, "p50Ms": None,
                      "p95Ms": None, "cacheHitRatio": None, "bytesSaved": 0, "bytesFetched": 0},
        "speedup": None, "lastRun": None, "tasks": [],
    }
