"""How the firing loops start, cancel and look at runs: thin adapters over `launch`.

Every run they start has a deterministic id (`helios.schedules.ids`) and goes through
`services.api.launch.launch`, which is idempotent for a given id: firing twice is a no-op.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import cast

from helios import keys, subjects
from helios.bus import publish
from helios.dag.parse import DagError
from helios.messages import CancelRequest
from helios.runs_view import RecordError, read_run
from helios.states import RunState
from services.api.context import ApiContext
from services.api.firing import templates_access
from services.api.launch import LaunchResult, launch
from services.api.parsing import ParserPool

log = logging.getLogger(__name__)


class LaunchRefused(Exception):
    """A run that cannot start however often it is retried (its template is gone, or
    the parameters do not fit it): the loop records the reason and moves on."""


async def start(c: ApiContext, parser: ParserPool, template: str, *, run_id: str,
                params: Mapping[str, object], logical_time: datetime | None,
                extra: Mapping[str, str]) -> LaunchResult:
    """Start the latest version of a stored DAG under `run_id` (a no-op if it exists).
    Raises LaunchRefused for permanent problems; anything else is transient."""
    stored = await templates_access.latest(c, template)
    if stored is None:
        raise LaunchRefused(f"template {template!r} does not exist")
    try:
        return await launch(c, parser, stored.document, media=stored.media, run_id=run_id,
                            params=params, logical_time=logical_time,
                            template=(template, stored.version), extra=extra)
    except DagError as exc:
        raise LaunchRefused(f"template {template!r}: {exc}"[:500]) from None


async def run_state(c: ApiContext, run_id: str) -> RunState | None:
    """The run's state (None if it does not exist, or no longer)."""
    try:
        run = await read_run(c.redis, run_id, [], detail=False)
    except RecordError:
        return None
    return None if run is None else run.state


async def cancel(c: ApiContext, run_id: str) -> bool:
    """Ask the scheduler to cancel a RUNNING run (as `POST /dags/{id}/cancel` does)."""
    state, generation = cast("list[str | None]", await c.redis.hmget(
        keys.run(run_id), "state", "generation"))
    if state != RunState.RUNNING.value:
        return False
    await publish(c.js, subjects.cancel(run_id), CancelRequest(
        dag_id=run_id, requested_at=time.time(), generation=int(generation or 0),
    ), timeout=c.settings.nats.request_timeout_s)
    return True
