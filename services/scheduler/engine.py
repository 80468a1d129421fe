"""The scheduler's I/O shell: decode messages, load state, decide, store, send, ack.

A transactional outbox makes a batch's effects exactly-once in effect: the new state
and the list of effects (events to publish, attempts to launch, timers, a cancel) are
written in one Redis transaction; then the effects are sent, each idempotent
(`Nats-Msg-Id` dedupe, deterministic job names); then the outbox is cleared and the
messages acked. A crash anywhere leaves either nothing or an outbox that the next
evaluation of the run sends first. Readers (the API, SSE clients) therefore never see an
event before the state it announces.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError

from helios import keys, subjects
from helios.bus import Transient
from helios.dag.result_readers import base_name, result_readers
from helios.executors.base import Executor, job_name
from helios.logs import log_fields
from helios.messages import (
    CacheStats,
    CancelRequest,
    Command,
    Message,
    OutputArtifact,
    RetryRequest,
    RunEvent,
    Submission,
    TaskDispatch,
    TaskEvent,
    TaskReport,
    Timings,
    Wake,
)
from helios.states import RunState, TaskState
from helios.templating import TemplateError
from services.scheduler import decide, dynamic, memoizing
from services.scheduler.decide import Plan, Policy, RunView
from services.scheduler.decide import merge as _merge  # tests import it from here
from services.scheduler.mapped_results import NeedResults
from services.scheduler.memo import MemoStore
from services.scheduler.pacing import DEFER_DELIVERIES, defer_delay, deliveries, error_backoff
from services.scheduler.store import RunStore, UnknownRun

log = logging.getLogger(__name__)

COMMANDS: TypeAdapter[Command] = TypeAdapter(Command)

DECISIONS = Counter("helios_scheduler_batches_total", "Message batches evaluated", ["outcome"])
LAUNCHES = Counter("helios_scheduler_launches_total", "Task attempts launched")
DISPATCH_LATENCY = Histogram(
    "helios_dispatch_latency_seconds",
    "From a report being published to the scheduler launching what it unblocked",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5),
)


class Engine:
    def __init__(self, js: JetStreamContext, store: RunStore, executor: Executor, policy: Policy,
                 publish_timeout_s: float = 5.0, read_object: dynamic.ReadObject | None = None):
        self.js = js
        self.read_object = read_object  # forEach items an upstream task wrote
        self.store = store
        self.executor = executor
        self.policy = policy
        self.timeout = publish_timeout_s
        self.memo = MemoStore(store.redis)

    async def handle(self, dag_id: str, msgs: list[Msg]) -> None:
        """Process one run's batch and settle every message in it."""
        items: list[tuple[Msg, Command | TaskReport]] = []
        now = time.time()
        for msg in msgs:
            try:
                item = _decode(msg)
            except ValidationError as exc:
                log.error("poison message dropped: %s", exc, extra=log_fields(subject=msg.subject))
                await msg.term()
                continue
            if isinstance(item, Wake) and item.fire_at > now:
                await msg.nak(delay=item.fire_at - now)  # the timer is not due yet
                continue
            items.append((msg, item))
        if not items:
            return
        # A report still ahead of our record after several deferrals will never be caught
        # up by a redelivered command (its launch record is gone): adopt it.
        adopt = {id(item) for msg, item in items
                       if isinstance(item, TaskReport) and deliveries(msg) >= DEFER_DELIVERIES}
        try:
            await self._evaluate_or_forget(dag_id, [item for _, item in items], adopt)
        except UnknownRun:
            log.error("messages for an unknown run dropped", extra=log_fields(dagId=dag_id))
            DECISIONS.labels("unknown").inc()
            for msg, _ in items:
                await msg.term()
        except Transient as exc:
            log.info("transient: %s; retrying in %.1fs", exc, exc.delay, extra=log_fields(dagId=dag_id))
            DECISIONS.labels("transient").inc()
            for msg, _ in items:
                await msg.nak(delay=exc.delay)
        except _Deferred as exc:
            # Backed off, and bounded: past DEFER_DELIVERIES the report is adopted.
            delay = max(defer_delay(msg) for msg, _ in items)
            log.info("deferring %.1fs: %s", delay, exc, extra=log_fields(dagId=dag_id))
            DECISIONS.labels("deferred").inc()
            for msg, _ in items:
                await msg.nak(delay=delay)
        except Exception:
            log.exception("evaluation failed; redelivering", extra=log_fields(dagId=dag_id))
            DECISIONS.labels("error").inc()
            for msg, _ in items:
                await msg.nak(delay=error_backoff(msg))
        else:
            DECISIONS.labels("ok").inc()
            for msg, _ in items:
                await msg.ack()

    async def _evaluate_or_forget(self, dag_id: str, items: list[Command | TaskReport],
                                  adopt: set[int]) -> None:
        try:
            await self._evaluate(dag_id, items, adopt)
        except BaseException:
            self.store.forget(dag_id)  # the in-memory view may hold half a decision
            raise

    async def _evaluate(self, dag_id: str, items: list[Command | TaskReport],
                        adopt: set[int]) -> None:
        results_of: frozenset[str] = frozenset()
        while True:  # at most once more per forEach task a condition reads
            try:
                await self._evaluate_with(dag_id, items, adopt, results_of)
                return
            except NeedResults as need:
                # Nothing was stored: decide again on a view that holds those results.
                log.info("reading back the instance results a condition needs",
                         extra=log_fields(dagId=dag_id, tasks=sorted(need.tasks)))
                self.store.forget(dag_id)
                results_of |= need.tasks

    async def _evaluate_with(self, dag_id: str, items: list[Command | TaskReport],
                             adopt: set[int], results_of: frozenset[str] = frozenset()
                             ) -> None:
        leftover = await self.store.pending_effects(dag_id)
        if leftover:
            log.warning("sending the effects of an interrupted evaluation",
                        extra=log_fields(dagId=dag_id))
            await self._send(dag_id, leftover)
        view, run = await self._load(dag_id, results_of)
        plan = Plan()
        run_changes: list[RunState] = []
        outputs: dict[str, list[OutputArtifact]] = {}
        reports: dict[str, TaskReport] = {}
        for item in items:
            step = self._decide(view, item, id(item) in adopt)
            if isinstance(item, TaskReport):
                if item.phase == "succeeded" and any(
                    t.task == item.task and t.state == TaskState.SUCCEEDED for t in step.transitions
                ):
                    outputs[item.task] = item.outputs
                reports[item.task] = item
            if step.run_state is not None:
                run_changes.append(step.run_state)
            _merge(plan, step)
        if plan.expand:  # forEach tasks whose items an upstream task wrote
            await dynamic.expand_all(dag_id, view, plan, self.policy,
                                     dynamic.outputs_reader(self.store, dag_id, outputs),
                                     self.read_object, _merge, run_changes)
        if plan.empty:
            return
        started_at = float(run.get("startedAt") or time.time())
        use_cache = run.get("useCache", "true") == "true"
        dag_name = run.get("dagName", view.dag.dag_name)
        def build(launch: list[tuple[str, int]], bad: list[tuple[str, int, str]]
                  ) -> Awaitable[list[TaskDispatch]]:
            return self._dispatches(dag_id, dag_name, view, launch, use_cache, outputs, bad)

        dispatches = await dynamic.dispatch_all(dag_id, view, plan, self.policy, build, _merge,
                                                run_changes)
        if use_cache and any(d.task.memoize for d in dispatches):
            dispatches = await memoizing.memoize(self.memo, self.store, self.policy, dag_id,
                                                 dag_name, view, plan, dispatches, outputs,
                                                 run_changes, build)
        # Feed order: the run starts, its tasks move, the run ends.
        effects: list[dict[str, Any]] = []
        run_fields: dict[str, Any] = {}
        for state in run_changes:
            if state == RunState.RUNNING:
                started_at = self._run_effect(effects, dag_id, dag_name, view, state, run,
                                              run_fields, started_at, use_cache)
        for t in plan.transitions:
            event = _task_event(dag_id, dag_name, t, use_cache and view.spec(t.task).cache,
                                len(view.spec(t.task).inputs), view.generation)
            effects.append(_publish(subjects.task_event(dag_id, t.task), event))
        for state in run_changes:
            if state.terminal:
                self._run_effect(effects, dag_id, dag_name, view, state, run, run_fields,
                                 started_at, use_cache)
        effects += [{"kind": "launch", "dispatch": d.model_dump(mode="json", by_alias=True)}
                    for d in dispatches]
        if plan.cancel_executor:
            effects.append({"kind": "cancel"})
        for timer in plan.timers:
            effects.append(_publish(subjects.wake(dag_id), Wake(
                dag_id=dag_id, task=timer.task, attempt=timer.attempt,
                fire_at=time.time() + timer.delay_s)))
        submitted_at = float(run.get("submittedAt") or started_at)
        await self.store.store(dag_id, plan.transitions, run_fields, outputs, effects,
                               listed=(dag_name, submitted_at), items=plan.expanded)
        await self._send(dag_id, effects, reports, {d.job_name: d for d in dispatches})
        await memoizing.remember(self.memo, self.store, dag_id, dag_name, view, plan, outputs)

    async def _load(self, dag_id: str, results_of: frozenset[str] = frozenset()
                    ) -> tuple[RunView, dict[str, str]]:
        """The run's state, with each task's count of lost attempts read back from its
        stored detail (only tasks past their first attempt can have any)."""
        view, run = await self.store.load(dag_id, results_of)
        if not view.lost_known:
            names = [n for n, t in view.tasks.items() if t.attempt > 1]
            if names:
                async with self.store.redis.pipeline(transaction=False) as pipe:
                    for n in names:
                        pipe.hget(keys.task_detail(dag_id, n), "lostAttempts")
                    values = await pipe.execute()
                for n, raw in zip(names, values, strict=True):
                    view.tasks[n].lost = int(orjson.loads(raw)) if raw else 0
            view.lost_known = True
        return view, run

    async def _send(self, dag_id: str, effects: list[dict[str, Any]],
                    reports: dict[str, TaskReport] | None = None,
                    built: dict[str, TaskDispatch] | None = None) -> None:
        """Send every effect at once and wait for all of them: one round trip, not one per
        effect. Publishes keep their order (nats-py writes each PUB to the socket in call
        order, before its first suspension), which is all the feed needs; launches and
        cancels are idempotent and need no order."""
        sends: list[Any] = []
        for effect in effects:
            kind = effect["kind"]
            if kind == "publish":
                sends.append(self.js.publish(effect["subject"], effect["data"].encode(),
                                             timeout=self.timeout,
                                             headers={"Nats-Msg-Id": effect["id"]}))
            elif kind == "launch":
                # This evaluation's own dispatches are at hand; an outbox left by an
                # interrupted one is decoded from its stored form.
                dispatch = (built or {}).get(effect["dispatch"]["jobName"]) or (
                    TaskDispatch.model_validate(effect["dispatch"]))
                sends.append(self.executor.launch(dispatch))
                LAUNCHES.inc()
                if reports:
                    self._observe_latency(dispatch, reports)
            elif kind == "cancel":
                sends.append(self.executor.cancel_run(dag_id))
        if sends:
            await asyncio.gather(*sends)
        if effects:
            await self.store.effects_sent(dag_id)

    @staticmethod
    def _run_effect(effects: list[dict[str, Any]], dag_id: str, dag_name: str, view: RunView,
                    state: RunState, run: dict[str, str], run_fields: dict[str, Any],
                    started_at: float, use_cache: bool) -> float:
        """Queue one run transition and fold it into the run hash; returns startedAt."""
        now = time.time()
        run_fields.update(state=state.value, generation=view.generation)
        if "startedAt" not in run and "startedAt" not in run_fields:
            run_fields["startedAt"] = started_at = now
        ended = now if state.terminal else None
        run_fields["endedAt"] = ended if ended is not None else ""
        effects.append(_publish(subjects.run_event(dag_id), RunEvent(
            dag_id=dag_id, dag_name=dag_name, state=state, at=now, use_cache=use_cache,
            task_count=len(view.tasks), started_at=started_at, ended_at=ended,  # + instances
            generation=view.generation,
        )))
        return started_at

    def _decide(self, view: RunView, item: Command | TaskReport, adopt: bool = False) -> Plan:
        if isinstance(item, Submission):
            return decide.on_start(view, self.policy)
        if isinstance(item, TaskReport):
            current = view.tasks.get(item.task)
            if adopt:
                log.warning("report for %s attempt %d is still ahead of the recorded attempt"
                            " %d: adopting it", item.task, item.attempt,
                            current.attempt if current else 0,
                            extra=log_fields(dagId=item.dag_id, task=item.task))
            elif (current is not None and item.attempt > current.attempt
                  and not view.state.terminal):
                # The report overtook our own record of the launch (a crash between the
                # two): wait for the redelivered command to catch the state up.
                raise _Deferred(f"report for {item.task} attempt {item.attempt} is ahead")
            return decide.on_report(view, item, self.policy, adopt=adopt)
        if isinstance(item, Wake):
            return decide.on_wake(view, item.task, item.attempt)
        if isinstance(item, CancelRequest):
            return decide.on_cancel(view)
        if isinstance(item, RetryRequest):
            return decide.on_retry(view, self.policy)
        raise TypeError(type(item))

    async def _dispatches(self, dag_id: str, dag_name: str, view: RunView,
                          launch: list[tuple[str, int]], use_cache: bool,
                          fresh: dict[str, list[OutputArtifact]],
                          bad: list[tuple[str, int, str]] | None = None) -> list[TaskDispatch]:
        """`bad` collects the attempts whose run-time references cannot be rendered."""
        if not launch:
            return []
        producers = dynamic.producers(view, [name for name, _ in launch])
        stored = await self.store.outputs_of(dag_id, producers - set(fresh))
        for producer, files in fresh.items():
            stored[producer] = {o.name: o for o in files}
        now = time.time()
        out = []
        readers = result_readers(view.dag)
        for name, attempt in dict.fromkeys(launch):
            try:
                task = dynamic.dispatched_task(view, name)
            except TemplateError as exc:
                if bad is None:
                    raise
                bad.append((name, attempt, str(exc)))
                continue
            out.append(TaskDispatch(
                dag_id=dag_id, dag_name=dag_name, task=task, attempt=attempt,
                job_name=job_name(dag_id, name, attempt), use_cache=use_cache and task.cache,
                inputs=dynamic.resolve_inputs(view.dag, view, name, stored),
                dispatched_at=now, want_result=base_name(name) in readers,
            ))
        return out

    @staticmethod
    def _observe_latency(dispatch: TaskDispatch, reports: dict[str, TaskReport]) -> None:
        deps = [reports[d] for d in dispatch.task.dependencies if d in reports]
        if deps:
            DISPATCH_LATENCY.observe(max(0.0, time.time() - max(r.at for r in deps)))


def _publish(subject: str, message: Message) -> dict[str, Any]:
    return {"kind": "publish", "subject": subject, "id": message.msg_id,
            "data": message.to_bytes().decode()}


class _Deferred(Exception):
    pass


def _decode(msg: Msg) -> Command | TaskReport:
    if msg.subject.startswith(f"{subjects.PREFIX}.exec."):
        return TaskReport.model_validate_json(msg.data)
    return COMMANDS.validate_json(msg.data)


def _task_event(dag_id: str, dag_name: str, t: decide.Transition, use_cache: bool,
                inputs: int, generation: int) -> TaskEvent:
    d = t.detail
    return TaskEvent(
        dag_id=dag_id, dag_name=dag_name, task=t.task, state=t.state, attempt=t.attempt,
        at=time.time(), node=d.get("node"), exit_code=d.get("exitCode"), reason=d.get("reason"),
        message=d.get("message"), memoized=bool(d.get("memoized")), use_cache=use_cache,
        inputs=inputs, cache=CacheStats.model_validate(d.get("cache") or {}),
        timings=Timings.model_validate(d.get("timings") or {}), generation=generation,
        lost_attempts=int(d.get("lostAttempts") or 0),
        **dynamic.instance_fields(t.task),
    )
