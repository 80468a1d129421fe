"""Chained runs: a run of a stored DAG that SUCCEEDS starts the stored DAGs whose
`runSucceeded` triggers name it.

A durable JetStream consumer of the runs' terminal events (`helios.run.*.run`), shared by
the api replicas (each event goes to one of them). The started run's id is derived from
(upstream run, trigger): a redelivered event, a retried upstream run that succeeds
again, or a second replica start nothing twice. A trigger fires only for runs that ended
after it was created: a new durable replays the stream's history, which must not start
runs for successes of last week.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from pydantic import ValidationError

from helios.messages import RunEvent
from helios.schedules import ids
from helios.states import RunState
from helios.submissions import read_submission
from services.api.firing import launching, store
from services.api.firing.context import FiringContext
from services.api.firing.params import render_params
from services.api.problems import BACKEND_DOWN

log = logging.getLogger(__name__)

DURABLE = "helios-api-chains"
FILTER = "helios.run.*.run"


class ChainConsumer:
    def __init__(self, f: FiringContext):
        self.f = f

    async def on_batch(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            try:
                event = RunEvent.model_validate_json(msg.data)
            except ValidationError as exc:
                log.error("undecodable run event dropped: %s", str(exc)[:300],
                          extra={"subject": msg.subject})
                await msg.term()
                continue
            try:
                await self.handle(event)
            except store.StoredRecordError as exc:
                log.warning("chained run refused: %s", exc, extra={"dagId": event.dag_id})
            except (*BACKEND_DOWN, OSError) as exc:
                log.warning("chained runs delayed: %s", exc, extra={"dagId": event.dag_id})
                await msg.nak(delay=2.0)
                continue
            await msg.ack()

    async def handle(self, event: RunEvent) -> int:
        if event.state is not RunState.SUCCEEDED:
            return 0
        triggers = [t for t in await store.all_triggers(self.f.c.redis)
                    if t.body.source.kind == "runSucceeded"]
        if not triggers:
            return 0
        submission = await read_submission(self.f.c.redis, event.dag_id)
        upstream = submission.template if submission else None
        if upstream is None:
            return 0
        ended = event.ended_at or event.at
        started = 0
        for trigger in triggers:
            if getattr(trigger.body.source, "template", None) != upstream \
                    or ended < trigger.created_at:
                continue
            values = {"runId": event.dag_id, "template": upstream,
                      "logicalTime": (submission.logical_time if submission else None) or ""}
            try:
                params = render_params(trigger.body.params, values)
            except ValueError as exc:
                log.warning("chained run refused: %s", exc, extra={"trigger": trigger.name})
                continue
            try:
                result = await launching.start(
                    self.f.c, self.f.parser, trigger.body.template,
                    run_id=ids.chained(event.dag_id, trigger.name), params=params,
                    logical_time=None, extra={"trigger": trigger.name, "upstream": event.dag_id})
            except launching.LaunchRefused as exc:
                log.warning("chained run refused: %s", exc, extra={"trigger": trigger.name})
                continue
            started += int(result.created)
            log.info("chained run started", extra={"trigger": trigger.name,
                                                   "upstream": event.dag_id,
                                                   "dagId": result.dag_id})
        return started
