"""Prometheus instruments of the metrics service (served by `helios.health` at /metrics).

Names carry the `helios_metrics_` prefix: several services may share one process in
`helios dev`, and the default registry refuses a name registered twice. Everything here
moves only when an event is applied for the first time, never on a redelivery.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from helios.messages import RunEvent, TaskEvent
from services.metrics.store import Applied, Outcome

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)

EVENTS = Counter(
    "helios_metrics_events_total", "Run/task events consumed, by outcome.", ["outcome"]
)
INVALID = Counter("helios_metrics_invalid_events_total", "Undecodable events dropped.")
RUN_DURATION = Histogram(
    "helios_metrics_run_duration_seconds", "Duration of finished runs.",
    ["status", "cache"], buckets=_SECONDS,
)
TASK_DURATION = Histogram(
    "helios_metrics_task_duration_seconds",
    "Duration of finished task attempts (start to finish, else queued to finish).",
    ["status"], buckets=_SECONDS,
)
CACHE_HITS = Counter("helios_metrics_cache_hits_total", "Task inputs served from the cache.")
CACHE_MISSES = Counter("helios_metrics_cache_misses_total", "Task inputs the cache lacked.")
BYTES_SAVED = Counter(
    "helios_metrics_cache_saved_bytes_total", "Bytes not fetched thanks to the cache."
)
BYTES_FETCHED = Counter(
    "helios_metrics_cache_fetched_bytes_total", "Bytes fetched from object storage."
)
MEMOIZED = Counter("helios_metrics_memoized_tasks_total", "Tasks skipped by memoization.")
PENDING = Gauge(
    "helios_metrics_consumer_pending", "Events in the stream not yet delivered to us."
)


def observe(event: TaskEvent | RunEvent, applied: Applied) -> None:
    EVENTS.labels(applied.outcome.value).inc()
    if applied.outcome is not Outcome.APPLIED or not event.state.terminal:
        return
    if isinstance(event, RunEvent):
        if event.ended_at is not None:
            RUN_DURATION.labels(event.state.value, str(event.use_cache).lower()).observe(
                max(0.0, event.ended_at - event.started_at)
            )
        return
    t = event.timings
    begin = t.started_at if t.started_at is not None else t.queued_at
    if begin is not None and t.finished_at is not None:
        TASK_DURATION.labels(event.state.value).observe(max(0.0, t.finished_at - begin))
    if event.use_cache:
        CACHE_HITS.inc(event.cache.hits)
        CACHE_MISSES.inc(event.cache.misses)
    BYTES_SAVED.inc(event.cache.bytes_saved)
    BYTES_FETCHED.inc(event.cache.bytes_fetched)
    if event.memoized:
        MEMOIZED.inc()
