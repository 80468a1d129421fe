"""Scheduler side of the local backend: attempts go onto a JetStream work queue."""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from helios import subjects
from helios.bus import publish
from helios.messages import CancelRun, TaskDispatch
from helios.settings import Settings


class LocalDispatcher:
    """`launch` publishes with the job name as `Nats-Msg-Id`; the runner's claim in
    Redis makes a redelivery past the dedupe window a no-op as well."""

    def __init__(self, nc: NATS, js: JetStreamContext, settings: Settings):
        self.nc = nc
        self.js = js
        self.timeout = settings.nats.request_timeout_s

    async def launch(self, dispatch: TaskDispatch) -> None:
        await publish(self.js, subjects.dispatch(dispatch.dag_id), dispatch, timeout=self.timeout)

    async def cancel_run(self, dag_id: str) -> None:
        await self.nc.publish(subjects.cancel_run(dag_id), CancelRun(dag_id=dag_id).to_bytes())

    async def close(self) -> None:
        return None
