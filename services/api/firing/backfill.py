"""One pass over every active backfill: refresh its runs' states, start more (at most
`maxParallel` RUNNING), or cancel it as a whole.

An item is marked RUNNING with its run id BEFORE its run is started: after a crash in
between, the next pass finds a RUNNING item without a run and starts it (same id, so at
most once). An item still PENDING whose run already exists ran before (the schedule, or
an earlier backfill of the same time) and is SKIPPED, unless the backfill reruns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from helios.schedules.records import DONE_ITEMS, BackfillItem, ItemState
from helios.states import RunState
from services.api.firing import launching, store
from services.api.firing.context import FiringContext

log = logging.getLogger(__name__)

_ENDED: dict[RunState, ItemState] = {RunState.SUCCEEDED: "SUCCEEDED", RunState.FAILED: "FAILED",
          RunState.CANCELLED: "CANCELLED"}


async def backfills_pass(f: FiringContext) -> None:
    for backfill_id in await store.active_backfills(f.c.redis):
        try:
            await drive(f, backfill_id)
        except store.StoredRecordError as exc:
            log.error("backfill not driven: %s", exc, extra={"backfill": backfill_id})


async def drive(f: FiringContext, backfill_id: str) -> str:
    """One step of one backfill; returns its state after the step."""
    stored = await store.get_backfill(f.c.redis, backfill_id)
    if stored is None:
        await store.forget_backfill(f.c.redis, backfill_id)
        return "GONE"
    spec, items = stored.spec, stored.items
    fields = {"backfill": backfill_id, "template": spec.template}
    changed = False
    for item in items:  # the runs in flight: have they ended?
        if item.state != "RUNNING":
            continue
        run = await launching.run_state(f.c, item.run_id)
        if run is None and not stored.cancel:
            await _start(f, spec.template, item, spec.body.params, fields)  # lost start
        elif run is not None and run in _ENDED:
            item.state = _ENDED[run]
            changed = True
    if stored.cancel:
        for item in items:
            if item.state == "RUNNING":
                await launching.cancel(f.c, item.run_id)
            elif item.state == "PENDING":
                item.state, changed = "CANCELLED", True
        in_flight = any(i.state == "RUNNING" for i in items)
        state: str = "CANCELLING" if in_flight else "CANCELLED"
        if changed or state != stored.state:
            await store.save_backfill_progress(f.c.redis, backfill_id, items, state)
        return state
    running = sum(1 for i in items if i.state == "RUNNING")
    for item in items:
        if running >= spec.body.max_parallel:
            break
        if item.state != "PENDING":
            continue
        if not spec.body.rerun and await launching.run_state(f.c, item.run_id) is not None:
            item.state, changed = "SKIPPED", True  # this time ran already
            continue
        item.state, changed = "RUNNING", True
        # Recorded before the start (see the module doc).
        await store.save_backfill_progress(f.c.redis, backfill_id, items, "RUNNING")
        await _start(f, spec.template, item, spec.body.params, fields)
        running += 1
    if all(i.state in DONE_ITEMS for i in items):
        state = "FAILED" if any(i.state in ("FAILED", "CANCELLED") for i in items) \
            else "SUCCEEDED"
        log.info("backfill ended %s", state, extra=fields)
    else:
        state = "RUNNING"
    if changed or state != stored.state:
        await store.save_backfill_progress(f.c.redis, backfill_id, items, state)
    return state


async def _start(f: FiringContext, template: str, item: BackfillItem,
                 params: Mapping[str, object], fields: dict[str, str]) -> None:
    try:
        await launching.start(f.c, f.parser, template, run_id=item.run_id, params=params,
                              logical_time=item.time, extra={"backfill": fields["backfill"]})
    except launching.LaunchRefused as exc:
        item.state = "FAILED"
        log.warning("backfill run refused: %s", exc, extra={**fields, "dagId": item.run_id})
