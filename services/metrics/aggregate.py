"""One run's metrics and per-task phase durations, computed from its latest events.

Pure functions: the store reads a `Snapshot`, these decide, the store writes the result.
Only the current (latest) event of each task counts, so a task that failed and then
succeeded on retry counts as succeeded.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

from helios.instances import parse_instance
from helios.messages import TaskEvent
from helios.states import TaskState
from services.metrics.records import Snapshot

CacheClass = Literal["Hit", "Partial", "Miss", "N/A"]

NOT_STARTED = "PENDING"
"""Status of a run whose RUNNING event has not arrived yet (its tasks' PENDING did)."""


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class RunMetrics(Camel):
    """The `dag:{dagId}:metrics` hash (ARCHITECTURE.md) plus a few fields of our own."""

    dag_id: str
    dag_name: str
    status: str
    generation: int = 0
    start_time: str | None = None
    end_time: str | None = None
    duration_ms: int | None = None
    cache_enabled: bool
    cache_hit: CacheClass
    task_count: int
    task_succeeded: int = 0
    task_failed: int = 0
    task_upstream_failed: int = 0
    task_cancelled: int = 0
    task_skipped: int = 0
    cache_hit_tasks: int = 0
    cache_miss_tasks: int = 0
    memoized_tasks: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    bytes_saved: int = 0
    bytes_fetched: int = 0
    nodes: list[str] = []

    @field_validator("nodes", mode="before")
    @classmethod
    def _split_nodes(cls, value: object) -> object:
        # Stored as "a,b" so the hash stays readable in redis-cli; node names hold no comma.
        if isinstance(value, str):
            return [n for n in value.split(",") if n]
        return value

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump(by_alias=True).items():
            if value is None:
                continue  # absent field = unknown (e.g. endTime of a running run)
            if isinstance(value, bool):
                out[name] = "true" if value else "false"
            elif isinstance(value, list):
                out[name] = ",".join(value)
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> RunMetrics:
        return cls.model_validate(fields)


class TaskTiming(Camel):
    """Where one successful task attempt spent its time, in milliseconds (None: unknown).

    queued: QUEUED transition -> Job created / dispatched; waiting_for_node: -> pod bound
    (or process slot); pulling_image: -> container running (image pull, start);
    running: -> finished; total: first known milestone -> finished.
    """

    total_ms: float | None = None
    queued_ms: float | None = None
    waiting_for_node_ms: float | None = None
    pulling_image_ms: float | None = None
    running_ms: float | None = None


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _cache_tasks(tasks: Iterable[TaskEvent]) -> list[TaskEvent]:
    """Finished tasks whose inputs went through the cache: memoized tasks fetched
    nothing, and a task with `cache: false` bypassed it on purpose."""
    return [
        t for t in tasks
        if t.state.terminal and t.use_cache and not t.memoized and t.inputs > 0
    ]


def classify(cache_enabled: bool, tasks: Iterable[TaskEvent]) -> CacheClass:
    """Hit: every input was a hit; Miss: none was; Partial: some; N/A: cache off or no
    input went through the cache."""
    if not cache_enabled:
        return "N/A"
    eligible = _cache_tasks(tasks)
    hits = sum(t.cache.hits for t in eligible)
    misses = sum(t.cache.misses for t in eligible)
    if hits + misses == 0:
        return "N/A"
    if misses == 0:
        return "Hit"
    return "Miss" if hits == 0 else "Partial"


def run_metrics(dag_id: str, snap: Snapshot) -> RunMetrics:
    run = snap.run
    tasks = list(snap.tasks.values())
    done = [t for t in tasks if t.state.terminal]
    if run is not None:
        dag_name, status, cache_enabled = run.dag_name, str(run.state), run.use_cache
    else:
        dag_name = tasks[0].dag_name if tasks else ""
        status = NOT_STARTED
        cache_enabled = any(t.use_cache for t in tasks) if tasks else True
    ended = run.ended_at if run is not None and run.state.terminal else None
    started = run.started_at if run is not None else None
    duration = None
    if started is not None and ended is not None:
        duration = max(0, round((ended - started) * 1000))
    eligible = _cache_tasks(done) if cache_enabled else []

    def count(state: TaskState) -> int:
        return sum(1 for t in done if t.state is state)

    return RunMetrics(
        dag_id=dag_id,
        dag_name=dag_name,
        status=status,
        generation=run.generation if run is not None else 0,
        start_time=iso(started),
        end_time=iso(ended),
        duration_ms=duration,
        cache_enabled=cache_enabled,
        cache_hit=classify(cache_enabled, done),
        task_count=run.task_count if run is not None else len(tasks),
        task_succeeded=count(TaskState.SUCCEEDED),
        task_failed=count(TaskState.FAILED),
        task_upstream_failed=count(TaskState.UPSTREAM_FAILED),
        task_cancelled=count(TaskState.CANCELLED),
        task_skipped=count(TaskState.SKIPPED),
        # A task with one missed input among hits counts as a miss task: it waited on S3.
        cache_hit_tasks=sum(1 for t in eligible if t.cache.hits > 0 and t.cache.misses == 0),
        cache_miss_tasks=sum(1 for t in eligible if t.cache.misses > 0),
        memoized_tasks=sum(1 for t in done if t.memoized and t.state is TaskState.SUCCEEDED),
        cache_hits=sum(t.cache.hits for t in eligible),
        cache_misses=sum(t.cache.misses for t in eligible),
        bytes_saved=sum(t.cache.bytes_saved for t in done),
        bytes_fetched=sum(t.cache.bytes_fetched for t in done),
        nodes=sorted({t.node for t in done if t.node}),
    )


def _span_ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    # Milestones come from different clocks (scheduler, kubelet); skew must not go negative.
    return round(max(0.0, end - start) * 1000, 3)


def task_timings(snap: Snapshot) -> dict[str, TaskTiming]:
    """Phase durations of every task that ran to success (memoized ones did not run)."""
    out: dict[str, TaskTiming] = {}
    for name, ev in sorted(snap.tasks.items()):
        if ev.state is not TaskState.SUCCEEDED or ev.memoized:
            continue
        t = ev.timings
        marked = snap.queued.get((name, ev.attempt))
        first = next(
            (m for m in (marked, t.queued_at, t.scheduled_at, t.started_at) if m is not None),
            None,
        )
        out[name] = TaskTiming(
            total_ms=_span_ms(first, t.finished_at),
            queued_ms=_span_ms(marked, t.queued_at),
            waiting_for_node_ms=_span_ms(t.queued_at, t.scheduled_at),
            pulling_image_ms=_span_ms(t.scheduled_at, t.started_at),
            running_ms=_span_ms(t.started_at, t.finished_at),
        )
    return _group_instances(out)


def _group_instances(timings: dict[str, TaskTiming]) -> dict[str, TaskTiming]:
    """A forEach task's instances (`train[3]`) count as one entry under their task: the
    mean of each phase over the instances that succeeded (a breakdown of 10,000 rows
    per run would say less and weigh more)."""
    groups: dict[str, list[TaskTiming]] = {}
    out: dict[str, TaskTiming] = {}
    for name, timing in timings.items():
        inst = parse_instance(name)
        if inst is None:
            out[name] = timing
        else:
            groups.setdefault(inst[0], []).append(timing)
    for name, rows in groups.items():
        fields: dict[str, float | None] = {}
        for field in TaskTiming.model_fields:
            values = [v for r in rows if (v := getattr(r, field)) is not None]
            fields[field] = round(sum(values) / len(values), 3) if values else None
        out[name] = TaskTiming(**fields)
    return dict(sorted(out.items()))
