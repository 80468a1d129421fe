"""Statistics over a window of runs: what the metrics endpoint's `summary` says.

Durations are taken from SUCCEEDED runs only: a run that failed or was cancelled half-way
says nothing about how fast the DAG runs with or without the cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from services.metrics.aggregate import Camel, RunMetrics, TaskTiming

_SUCCEEDED = "SUCCEEDED"


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile: always a value that was observed (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


class GroupStats(Camel):
    """Runs with the cache on (or off) among the runs summarised."""

    count: int = 0
    succeeded: int = 0
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    cache_hit_ratio: float | None = None
    bytes_saved: int = 0
    bytes_fetched: int = 0


class LastRun(Camel):
    dag_id: str
    status: str
    load: str
    succeeded: int
    total: int
    failed: int
    upstream_failed: int


class TaskStats(Camel):
    """Mean durations of one task over the successful attempts in the window."""

    task: str
    samples: int
    mean_ms: float | None
    queued_ms: float | None
    waiting_for_node_ms: float | None
    pulling_image_ms: float | None
    running_ms: float | None


class Summary(Camel):
    runs: int = 0
    cached: GroupStats = GroupStats()
    non_cached: GroupStats = GroupStats()
    speedup: float | None = None
    last_run: LastRun | None = None
    tasks: list[TaskStats] = []


def group_stats(runs: Sequence[RunMetrics]) -> GroupStats:
    durations = [
        float(r.duration_ms) for r in runs if r.status == _SUCCEEDED and r.duration_ms is not None
    ]
    hits = sum(r.cache_hits for r in runs)
    lookups = hits + sum(r.cache_misses for r in runs)
    return GroupStats(
        count=len(runs),
        succeeded=len(durations),
        mean_ms=mean(durations),
        p50_ms=percentile(durations, 50),
        p95_ms=percentile(durations, 95),
        cache_hit_ratio=round(hits / lookups, 4) if lookups else None,
        bytes_saved=sum(r.bytes_saved for r in runs),
        bytes_fetched=sum(r.bytes_fetched for r in runs),
    )


def last_run(run: RunMetrics) -> LastRun:
    return LastRun(
        dag_id=run.dag_id,
        status=run.status,
        load=f"{run.task_succeeded}/{run.task_count}",
        succeeded=run.task_succeeded,
        total=run.task_count,
        failed=run.task_failed,
        upstream_failed=run.task_upstream_failed,
    )


def task_stats(timings: Sequence[dict[str, TaskTiming]]) -> list[TaskStats]:
    """Per task name; the slowest first, so the answer to "where does time go" leads."""
    by_task: dict[str, list[TaskTiming]] = {}
    for run in timings:
        for task, timing in run.items():
            by_task.setdefault(task, []).append(timing)

    def phase(samples: list[TaskTiming], attr: str) -> float | None:
        values = [v for s in samples if (v := getattr(s, attr)) is not None]
        return mean(values)

    stats = [
        TaskStats(
            task=task,
            samples=len(samples),
            mean_ms=phase(samples, "total_ms"),
            queued_ms=phase(samples, "queued_ms"),
            waiting_for_node_ms=phase(samples, "waiting_for_node_ms"),
            pulling_image_ms=phase(samples, "pulling_image_ms"),
            running_ms=phase(samples, "running_ms"),
        )
        for task, samples in by_task.items()
    ]
    stats.sort(key=lambda s: (-(s.mean_ms or 0.0), s.task))
    return stats


def summarize(runs: Sequence[RunMetrics], timings: Sequence[dict[str, TaskTiming]]) -> Summary:
    """`runs` newest first; `timings` the per-task timings of the same runs."""
    cached = group_stats([r for r in runs if r.cache_enabled])
    non_cached = group_stats([r for r in runs if not r.cache_enabled])
    speedup = None
    if cached.mean_ms and non_cached.mean_ms is not None:
        speedup = round(non_cached.mean_ms / cached.mean_ms, 3)
    return Summary(
        runs=len(runs),
        cached=cached,
        non_cached=non_cached,
        speedup=speedup,
        last_run=last_run(runs[0]) if runs else None,
        tasks=task_stats(timings),
    )
