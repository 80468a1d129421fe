"""Helpers of the metrics tests: event builders, an in-process service, condition waits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from helios import bus, subjects
from helios.health import Health
from helios.messages import CacheStats, RunEvent, TaskEvent, Timings
from helios.runtime import StopEvent
from helios.settings import HttpSettings, Settings
from helios.states import RunState, TaskState
from services.metrics.service import MetricsOptions, serve

T = TypeVar("T")

FAST = MetricsOptions(ack_wait_s=1.0, fetch_timeout_s=0.2)
T0 = 1_700_000_000.0


@dataclass
class TaskSpec:
    """One task of a synthetic run; times are offsets in seconds from the run's start."""

    name: str
    final: TaskState = TaskState.SUCCEEDED
    inputs: int = 0
    hits: int = 0
    misses: int = 0
    saved: int = 0
    fetched: int = 0
    node: str | None = "node-a"
    attempt: int = 1
    memoized: bool = False
    use_cache: bool = True
    # queued (QUEUED event), dispatched, scheduled, started, finished
    marks: tuple[float, float, float, float, float] = (0.0, 0.0, 0.1, 0.2, 1.0)


@dataclass
class RunSpec:
    dag_id: str
    start: float
    duration: float
    dag_name: str = "pipe"
    use_cache: bool = True
    state: RunState = RunState.SUCCEEDED
    tasks: list[TaskSpec] = field(default_factory=list)


def task_events(run: RunSpec, spec: TaskSpec) -> list[TaskEvent]:
    s = run.start
    queued, dispatched, scheduled, started, finished = (s + m for m in spec.marks)
    common: dict[str, Any] = {"dagId": run.dag_id, "dagName": run.dag_name, "task": spec.name,
                              "useCache": spec.use_cache and run.use_cache, "inputs": spec.inputs}
    out = [TaskEvent(state=TaskState.PENDING, attempt=0, at=s, **common)]
    if spec.final is TaskState.UPSTREAM_FAILED:
        return [*out, TaskEvent(state=spec.final, attempt=0, at=finished, **common)]
    out += [
        TaskEvent(state=TaskState.QUEUED, attempt=spec.attempt, at=queued, **common),
        TaskEvent(state=TaskState.RUNNING, attempt=spec.attempt, at=started, node=spec.node,
                  **common),
        TaskEvent(
            state=spec.final, attempt=spec.attempt, at=finished, node=spec.node,
            memoized=spec.memoized,
            cache=CacheStats(hits=spec.hits, misses=spec.misses, bytesSaved=spec.saved,
                             bytesFetched=spec.fetched),
            timings=Timings(queuedAt=dispatched, scheduledAt=scheduled, startedAt=started,
                            finishedAt=finished),
            **common,
        ),
    ]
    return out


def run_events(run: RunSpec) -> list[TaskEvent | RunEvent]:
    """A run's events in the order the scheduler publishes them."""
    common: dict[str, Any] = {"dagId": run.dag_id, "dagName": run.dag_name,
                              "useCache": run.use_cache, "taskCount": len(run.tasks),
                              "startedAt": run.start}
    events: list[TaskEvent | RunEvent] = [RunEvent(state=RunState.RUNNING, at=run.start, **common)]
    for spec in run.tasks:
        events += task_events(run, spec)
    end = run.start + run.duration
    events.append(RunEvent(state=run.state, at=end, endedAt=end, **common))
    return events


async def publish_raw(js: JetStreamContext, event: TaskEvent | RunEvent, msg_id: str) -> None:
    """Publish under a chosen `Nats-Msg-Id`: a duplicate JetStream will not drop."""
    subject = (subjects.run_event(event.dag_id) if isinstance(event, RunEvent)
               else subjects.task_event(event.dag_id, event.task))
    await js.publish(subject, event.to_bytes(), headers={"Nats-Msg-Id": msg_id})


async def publish_all(js: JetStreamContext, events: list[TaskEvent | RunEvent]) -> None:
    for event in events:
        subject = (subjects.run_event(event.dag_id) if isinstance(event, RunEvent)
                   else subjects.task_event(event.dag_id, event.task))
        await bus.publish(js, subject, event)


def all_events(specs: list[RunSpec]) -> list[TaskEvent | RunEvent]:
    return [e for spec in reversed(specs) for e in run_events(spec)]  # oldest run first


def metrics_path(name: str = "pipe", limit: int | None = None) -> str:
    query = "" if limit is None else f"?limit={limit}"
    return f"/api/v1/dags/{name}/metrics{query}"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def wait_until(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout_s: float = 15.0,
    what: str = "condition",
) -> T:
    """Poll `probe` until `ok(value)`; fail with the last value after the deadline."""
    deadline = time.monotonic() + timeout_s
    value = await probe()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")
        await asyncio.sleep(0.05)
        value = await probe()
    return value


async def consumer_drained(js: JetStreamContext, durable: str = "metrics",
                           timeout_s: float = 20.0) -> None:
    """Every message of the run stream was delivered to `durable` and acknowledged (acks
    follow the stored effect, so Redis is final by then)."""

    async def probe() -> tuple[int, int, int, int]:
        stream = await js.stream_info(subjects.STREAMS.runs)
        info = await js.consumer_info(subjects.STREAMS.runs, durable)
        return (info.num_pending or 0, info.num_ack_pending or 0,
                info.ack_floor.stream_seq if info.ack_floor else 0, stream.state.last_seq)

    await wait_until(probe, lambda v: v[0] == 0 and v[1] == 0 and v[2] >= v[3],
                     timeout_s, "the metrics consumer to drain")


@dataclass
class Service:
    task: asyncio.Task[None]
    stop: StopEvent
    health: Health
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def shutdown(self) -> None:
        """SIGTERM: stop, drain, return."""
        self.stop.set()
        await asyncio.wait_for(self.task, 15)
        assert self.stop.failure is None, self.stop.failure

    async def kill(self) -> None:
        """A crash: the in-flight batch is abandoned unacknowledged."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def start_service(settings: Settings, options: MetricsOptions = FAST) -> Service:
    settings = settings.model_copy(update={"http": HttpSettings(host="127.0.0.1", port=0)})
    stop, health = StopEvent(), Health("metrics")
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop, health, options=options, port=port),
                               name="metrics-under-test")
    ready = asyncio.ensure_future(health.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
        raise RuntimeError("metrics service exited during startup")
    assert ready in done, "metrics service not ready after 15s"
    return Service(task, stop, health, port.result())


@contextlib.asynccontextmanager
async def running(settings: Settings, options: MetricsOptions = FAST) -> AsyncIterator[Service]:
    service = await start_service(settings, options)
    try:
        yield service
    finally:
        if not service.task.done():
            await service.shutdown()


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, str, Any]:
    async with session.get(url) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


def summary_runs() -> list[RunSpec]:
    """Newest first: two cached successes, a cached failure, two uncached successes."""
    def spec(i: int, duration: float, cache: bool, state: RunState = RunState.SUCCEEDED,
             hits: int = 0, misses: int = 0) -> RunSpec:
        return RunSpec(f"r{i}", start=T0 + 1000 - i * 100, duration=duration, use_cache=cache,
                       state=state, tasks=[
                           TaskSpec("a", marks=(0.0, 0.0, 1.0, 2.0, 4.0)),
                           TaskSpec("b", inputs=2, hits=hits, misses=misses,
                                    final=TaskState.SUCCEEDED if state is RunState.SUCCEEDED
                                    else TaskState.FAILED,
                                    marks=(4.0, 4.0, 4.5, 5.0, 6.0)),
                       ])
    return [
        spec(1, 10.0, True, hits=2),
        spec(2, 20.0, True, hits=1, misses=1),
        spec(3, 5.0, True, RunState.FAILED, misses=2),
        spec(4, 40.0, False, misses=2),
        spec(5, 60.0, False, misses=2),
    ]


EXPECTED_SUMMARY: dict[str, Any] = {
    "runs": 5,
    "cached": {"count": 3, "succeeded": 2, "meanMs": 15000.0, "p50Ms": 10000.0,
               "p95Ms": 20000.0, "cacheHitRatio": 0.5, "bytesSaved": 0, "bytesFetched": 0},
    "nonCached": {"count": 2, "succeeded": 2, "meanMs": 50000.0, "p50Ms": 40000.0,
                  "p95Ms": 60000.0, "cacheHitRatio": None, "bytesSaved": 0,
                  "bytesFetched": 0},
    "speedup": 3.333,
    "lastRun": {"dagId": "r1", "status": "SUCCEEDED", "load": "2/2", "succeeded": 2,
                "total": 2, "failed": 0, "upstreamFailed": 0},
    "tasks": [
        {"task": "a", "samples": 5, "meanMs": 4000.0, "queuedMs": 0.0,
         "waitingForNodeMs": 1000.0, "pullingImageMs": 1000.0, "runningMs": 2000.0},
        {"task": "b", "samples": 4, "meanMs": 2000.0, "queuedMs": 0.0,
         "waitingForNodeMs": 500.0, "pullingImageMs": 500.0, "runningMs": 1000.0},
    ],
}
