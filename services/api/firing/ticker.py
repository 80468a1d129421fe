"""One pass over every schedule: plan (pure), cancel/start runs, store the progress.

A crash anywhere is harmless: the cursor is stored after the runs are started, and the
runs' ids are derived from (template, time), so the next pass plans the same times and
starting them again is a no-op.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from helios.schedules import ids
from helios.schedules.plan import Policy, plan_tick
from helios.schedules.records import ScheduleRecord
from helios.states import RunState
from services.api.firing import launching, store
from services.api.firing.context import FiringContext

log = logging.getLogger(__name__)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def schedules_pass(f: FiringContext, now: datetime) -> int:
    """Fire what is due on every schedule; returns how many runs were started."""
    started = 0
    for record in await store.all_schedules(f.c.redis):
        try:
            started += await fire_schedule(f, record, now)
        except store.StoredRecordError as exc:
            log.error("schedule not fired: %s", exc, extra={"template": record.template})
    return started


async def fire_schedule(f: FiringContext, record: ScheduleRecord, now: datetime) -> int:
    template = record.template
    state = await store.get_state(f.c.redis, template)
    spec = record.body.spec()
    previous_running = False
    if state.last_run_id and spec.policy is not Policy.ALLOW and not spec.paused:
        previous_running = await launching.run_state(f.c, state.last_run_id) is RunState.RUNNING
    plan = plan_tick(spec, _at(state.cursor), now, previous_running)
    if plan.idle:
        return 0
    fields = {"template": template}
    if plan.cancel_previous and state.last_run_id:
        await launching.cancel(f.c, state.last_run_id)
        log.info("previous run cancelled (Replace)", extra={**fields, "dagId": state.last_run_id})
    started = 0
    try:
        for at in plan.fire:
            run_id = ids.scheduled(template, at)
            try:
                result = await launching.start(
                    f.c, f.parser, template, run_id=run_id, params=record.body.params,
                    logical_time=at, extra={"schedule": template})
            except launching.LaunchRefused as exc:
                # The template was deleted or no longer takes these params: this time is
                # skipped (recorded), the schedule goes on.
                state.last_error = str(exc)
                state.skipped += 1
                log.warning("scheduled run refused: %s", exc, extra=fields)
            else:
                started += result.created
                state.fired += result.created
                state.last_run_id, state.last_error = run_id, None
                state.last_time = at.timestamp()
                log.info("scheduled run started" if result.created else "scheduled run existed",
                         extra={**fields, "dagId": run_id, "logicalTime": at.isoformat()})
            state.cursor = at.timestamp()
        if plan.cursor is not None:
            state.cursor = max(state.cursor, plan.cursor.timestamp())
        state.skipped += plan.skipped
    finally:
        # What was started is recorded even if a later start failed (transient): the
        # next pass begins after it.
        await store.save_state(f.c.redis, template, state)
    return started
