"""What a schedule does at a tick: which times fire, which are skipped, whether the
previous run is cancelled. Pure: the clock and the previous run's state are arguments.

The cursor is the newest scheduled time already handled (fired or skipped). A tick at
`now` looks at the times in (cursor, now] (and within start/end):

- catchup true: the newest `maxCatchup` of them are kept and fire oldest first, older
  ones are skipped (a week of downtime does not start a week of runs);
  catchup false: only the newest is kept;
- concurrencyPolicy, as Kubernetes CronJobs:
  Allow: every kept time fires;
  Forbid: never two runs at once: while the previous run is RUNNING every due time is
  skipped; otherwise the OLDEST kept time fires and the others are skipped (they would
  overlap it);
  Replace: the previous run, if RUNNING, is cancelled and the NEWEST kept time fires
  (older ones would only be replaced at once);
- paused: nothing fires and the cursor stays; resuming moves the cursor to "now", so the
  times of a pause are never caught up (a backfill runs them on purpose).

Creating a schedule sets its cursor to the creation time: catch-up repairs downtime, it
does not replay history before the schedule existed (that is what a backfill is for).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from helios.schedules.cron import Cron, as_utc

MAX_CATCHUP = 1000


class Policy(StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


@dataclass(frozen=True)
class Spec:
    cron: Cron
    catchup: bool = True
    max_catchup: int = 10
    policy: Policy = Policy.ALLOW
    start: datetime | None = None
    end: datetime | None = None
    paused: bool = False


@dataclass(frozen=True)
class Plan:
    fire: tuple[datetime, ...] = ()
    skipped: int = 0  # due times not fired (bounded count: see Cron.latest)
    cancel_previous: bool = False
    cursor: datetime | None = None  # the new cursor; None: unchanged

    @property
    def idle(self) -> bool:
        return not self.fire and not self.skipped and self.cursor is None


def window(spec: Spec, cursor: datetime, now: datetime) -> tuple[datetime, datetime] | None:
    """The (after, until] range of due times, or None when nothing can be due."""
    after, until = as_utc(cursor), as_utc(now)
    if spec.start is not None:
        after = max(after, as_utc(spec.start) - timedelta(microseconds=1))
    if spec.end is not None:
        until = min(until, as_utc(spec.end))
    return (after, until) if until > after else None


def plan_tick(spec: Spec, cursor: datetime, now: datetime, previous_running: bool) -> Plan:
    if spec.paused:
        return Plan()
    span = window(spec, cursor, now)
    if span is None:
        return Plan()
    keep = max(1, min(spec.max_catchup, MAX_CATCHUP)) if spec.catchup else 1
    kept, older = spec.cron.latest(span[0], span[1], keep)
    if not kept:
        return Plan()
    newest = kept[-1]
    if spec.policy is Policy.ALLOW:
        return Plan(tuple(kept), older, False, newest)
    if spec.policy is Policy.FORBID:
        if previous_running:
            return Plan((), older + len(kept), False, newest)
        return Plan((kept[0],), older + len(kept) - 1, False, newest)
    return Plan((newest,), older + len(kept) - 1, previous_running, newest)


def next_times(spec: Spec, cursor: datetime, now: datetime, count: int) -> list[datetime]:
    """The next `count` fire times after both the cursor and `now` (none while paused
    or past the end)."""
    if spec.paused:
        return []
    after = max(as_utc(cursor), as_utc(now))
    if spec.start is not None:
        after = max(after, as_utc(spec.start) - timedelta(microseconds=1))
    until = as_utc(spec.end) if spec.end is not None else None
    return spec.cron.after(after, until, limit=count)


def backfill_times(cron: Cron, start: datetime, end: datetime, limit: int) -> list[datetime]:
    """Every fire time in [start, end], oldest first; at most `limit` + 1 (so a caller
    can tell "too many")."""
    return cron.after(as_utc(start) - timedelta(microseconds=1), as_utc(end), limit=limit + 1)
