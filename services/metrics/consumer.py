"""From JetStream batches to the store, with explicit acks (STYLE.md #6).

A batch is split by run: one run's events are applied in delivery order and followed by
one refresh of its metrics; different runs proceed in parallel, bounded by a semaphore.
A message is acked only after its effect and the run's refreshed metrics are stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from pydantic import TypeAdapter, ValidationError

from helios.logs import log_fields
from helios.messages import Event, RunEvent, TaskEvent
from services.metrics import prom
from services.metrics.store import MetricsStore, Outcome

log = logging.getLogger(__name__)

_EVENT: TypeAdapter[TaskEvent | RunEvent] = TypeAdapter(Event)


def _redelivery_delay(msg: Msg) -> float:
    return min(30.0, 0.5 * 2 ** min(msg.metadata.num_delivered, 6))


class EventConsumer:
    def __init__(self, store: MetricsStore, concurrency: int = 32, *,
                 before_refresh: Callable[[str], Awaitable[None]] | None = None):
        self.store = store
        self._before_refresh = before_refresh
        self._slots = asyncio.Semaphore(concurrency)

    async def on_batch(self, msgs: list[Msg]) -> None:
        groups: dict[str, list[tuple[Msg, TaskEvent | RunEvent]]] = {}
        for msg in msgs:
            try:
                event = _EVENT.validate_json(msg.data)
            except ValidationError as exc:
                # Poison: no redelivery will make it valid.
                prom.INVALID.inc()
                log.error("undecodable event dropped: %s", exc,
                          extra=log_fields(subject=msg.subject))
                await msg.term()
                continue
            groups.setdefault(event.dag_id, []).append((msg, event))
        if msgs:
            prom.PENDING.set(msgs[-1].metadata.num_pending)
        async with asyncio.TaskGroup() as tg:
            for dag_id, items in groups.items():
                tg.create_task(self._run_group(dag_id, items), name=f"metrics:{dag_id}")

    async def _run_group(self, dag_id: str, items: list[tuple[Msg, TaskEvent | RunEvent]]) -> None:
        async with self._slots:
            try:
                await self._handle(dag_id, items)
            except Exception:
                # Never let one run's failure cancel the rest of the batch; unacked
                # messages come back after the ack wait.
                log.exception("metrics group failed", extra=log_fields(dagId=dag_id))

    async def _handle(self, dag_id: str, items: list[tuple[Msg, TaskEvent | RunEvent]]) -> None:
        stored: list[Msg] = []
        refresh = False
        for msg, event in items:
            extra = log_fields(dagId=dag_id, dagName=event.dag_name, subject=msg.subject,
                               msgId=event.msg_id, task=getattr(event, "task", None))
            try:
                applied = await self.store.apply(event)
            except Exception:
                log.exception("applying event failed; redelivering", extra=extra)
                await msg.nak(delay=_redelivery_delay(msg))
                continue
            prom.observe(event, applied)
            log.debug("event %s (%s)", applied.outcome, event.state, extra=extra)
            # Only run events and terminal task states change what the metrics say;
            # skipping the O(tasks) recompute for QUEUED/RUNNING keeps big runs cheap.
            refresh = refresh or (applied.outcome is not Outcome.DELETED and _decisive(event))
            stored.append(msg)
        if refresh:
            if self._before_refresh is not None:
                await self._before_refresh(dag_id)
            try:
                metrics = await self.store.refresh(dag_id)
            except Exception:
                # The events are stored; their redelivery counts as duplicates and
                # retries this refresh.
                log.exception("refreshing metrics failed; redelivering",
                              extra=log_fields(dagId=dag_id))
                for msg in stored:
                    await msg.nak(delay=_redelivery_delay(msg))
                return
            if metrics is not None:
                log.debug("metrics refreshed: %s", metrics.status, extra=log_fields(dagId=dag_id))
        for msg in stored:
            await msg.ack()


def _decisive(event: TaskEvent | RunEvent) -> bool:
    # A forEach instance's end is not: its task's own end (published after every
    # instance's) and the run's refresh the metrics. A refresh reads every task of the
    # run, so refreshing per instance would make a 10,000-instance map quadratic.
    return isinstance(event, RunEvent) or (event.state.terminal and event.map_of is None)
