"""The supervisor's view of `helios dev`'s children, shared through one Redis hash.

Written only by the supervisor (`StatusPublisher`), read by the api through
`read_processes`: one typed record per child, so neither side decodes the other's layout.
In a cluster there is no supervisor (Kubernetes restarts pods) and the hash stays absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from helios import keys
from helios.devstack.supervise import Supervisor

log = logging.getLogger(__name__)

RESYNC_S = 5.0  # rewrite everything now and then: a restarted Valkey may lag by a second


class ProcessStatus(BaseModel):
    """One supervised child as `GET /api/v1/system/status` shows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str  # server | service
    state: str  # starting | running | restarting | failed | stopped
    pid: int | None
    restarts: int
    lastExitCode: int | None
    startedAt: float


async def read_processes(redis: Any) -> list[ProcessStatus]:
    """Every child the supervisor reported (empty outside `helios dev`); a record that
    does not parse is skipped with a log line rather than breaking the status page."""
    out = []
    for field, raw in (await redis.hgetall(keys.supervisor())).items():
        try:
            out.append(ProcessStatus.model_validate_json(raw))
        except ValidationError:
            log.warning("unreadable supervisor record %r", field)
    return sorted(out, key=lambda p: (p.kind, p.name))


def snapshot(supervisor: Supervisor) -> dict[str, str]:
    return {
        name: ProcessStatus(
            name=name, kind=child.spec.kind, state=child.state,
            pid=child.proc.pid if child.proc else None, restarts=child.restarts,
            lastExitCode=child.last_exit, startedAt=child.started_at,
        ).model_dump_json()
        for name, child in supervisor.children.items()
    }


class StatusPublisher:
    """Writes the supervisor's snapshot to Redis whenever it changes (and every few
    seconds), riding out Valkey's own restarts: a failed write is simply tried again."""

    def __init__(self, redis: Any, supervisor: Supervisor):
        self.redis = redis
        self.supervisor = supervisor
        self.dirty = asyncio.Event()
        supervisor.notify(self.dirty.set)

    async def clear(self, timeout_s: float = 60.0) -> None:
        """Forget the previous run's records (the append-only file kept them). Valkey
        listens before it has loaded a large append-only file and answers LOADING
        meanwhile, so this waits for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                await asyncio.wait_for(self.redis.delete(keys.supervisor()), 5)
                return
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), RESYNC_S)
            self.dirty.clear()
            try:
                records = snapshot(self.supervisor)
                if records:
                    await asyncio.wait_for(self.redis.hset(keys.supervisor(), mapping=records), 5)
            except Exception as exc:  # Valkey restarting: the next round writes it
                log.debug("supervisor status not written: %r", exc)
                self.dirty.set()
                await asyncio.sleep(0.5)
