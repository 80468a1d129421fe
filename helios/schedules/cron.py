"""Cron expressions in an IANA time zone, expanded into UTC instants.

A schedule is a wall-clock schedule: `30 2 * * *` in `Europe/Berlin` means 02:30 on
Berlin's clocks. croniter expands the expression over *naive* local times (it never
sees a time zone, so none of its own DST handling applies); this module maps each local
time to the one instant it stands for:

- a local time that exists once is that instant;
- a local time that occurs twice (clocks set back) fires once, at its FIRST occurrence:
  `30 1 * * *` fires once on the night the clocks go back, and an hourly schedule skips
  the repeated hour (as a wall clock reads it, that hour already happened);
- a local time that does not exist (clocks set forward) fires once, at the first instant
  after the gap (the moment the clocks jump): a daily 02:30 job runs at 03:00 on that
  day, as Vixie cron does. Several times inside one gap land on the same instant and fire
  once.

Expressions have 5 fields (minute resolution) or 6 with SECONDS FIRST
(`*/5 * * * * *` = every five seconds), or one of @yearly @annually @monthly @weekly
@daily @midnight @hourly. Random and hashed fields (croniter's `R`, `H`) are refused:
a schedule must expand the same way on every replica and after every restart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter  # type: ignore[import-untyped]

MAX_EXPRESSION = 120
ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                     "@hourly"})
_NON_DETERMINISTIC = re.compile(r"(?<![A-Za-z])[HhRr](?![A-Za-z])")
_ZONE = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+){0,3}")


class CronError(ValueError):
    """An expression or a time zone that cannot be a schedule (the message says why)."""


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str
    zone: ZoneInfo
    seconds: bool  # 6 fields: the first is seconds

    def _iter(self, start: datetime, backwards: bool = False) -> Iterator[datetime]:
        """Naive local times strictly after (before) the naive `start`."""
        it = croniter(self.expression, start, second_at_beginning=self.seconds,
                      is_prev=backwards, max_years_between_matches=50)
        step = it.get_prev if backwards else it.get_next
        while True:
            try:
                yield step(datetime)
            except CroniterError:  # no further match (e.g. "0 0 30 2 *")
                return

    def instant(self, local: datetime) -> datetime:
        """The UTC instant of a naive local time (see the module doc for gaps and repeats)."""
        first = local.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if _local(first, self.zone) == local:
            return first  # exists; for a repeated time fold=0 is the first occurrence
        # In a gap: fold=1 reads it with the offset after the jump (an instant before the
        # jump), fold=0 with the offset before it (an instant after). The jump lies between.
        lo = local.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        hi = first
        if lo > hi:
            lo, hi = hi, lo
        lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp()) + 1
        while lo_s < hi_s:  # the first whole second whose wall time is at or past `local`
            mid = (lo_s + hi_s) // 2
            if _local(datetime.fromtimestamp(mid, UTC), self.zone) >= local:
                hi_s = mid
            else:
                lo_s = mid + 1
        return datetime.fromtimestamp(lo_s, UTC)

    def after(self, after: datetime, until: datetime | None = None,
              limit: int = 1000) -> list[datetime]:
        """Fire instants t with after < t (<= until), oldest first, at most `limit`."""
        out: list[datetime] = []
        for local in self._iter(_local(after, self.zone)):
            at = self.instant(local)
            if until is not None and at > until:
                break
            if at > after and (not out or at > out[-1]):
                out.append(at)
                if len(out) >= limit:
                    break
        return out

    def latest(self, after: datetime, until: datetime, keep: int,
               scan: int = 1000) -> tuple[list[datetime], int]:
        """The newest `keep` fire instants in (after, until], oldest first, and how many
        older ones there are in that range (counted up to `scan`: a year of downtime of a
        per-second schedule is not enumerated)."""
        start = _local(until, self.zone)
        # During a repeated hour's second pass, local times a little past "now" already
        # happened (their first occurrence): start the backward scan past them.
        ahead = until.astimezone(self.zone)
        if ahead.fold:
            gap = (ahead.replace(fold=0).utcoffset() or timedelta()) - \
                (ahead.replace(fold=1).utcoffset() or timedelta())
            start += abs(gap)
        kept: list[datetime] = []
        older = 0
        last: datetime | None = None
        for local in self._iter(start + timedelta(seconds=1), backwards=True):
            at = self.instant(local)
            if at > until or (last is not None and at >= last):
                continue  # past "now", or the same instant again (a gap)
            if at <= after:
                break
            last = at
            if len(kept) < keep:
                kept.append(at)
            else:
                older += 1
                if older >= scan:
                    break
        kept.reverse()
        return kept, older


def _local(at: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock time of an aware instant, truncated to whole seconds."""
    return at.astimezone(zone).replace(tzinfo=None, microsecond=0, fold=0)


@lru_cache(maxsize=4096)
def parse_cron(expression: str, timezone: str = "UTC") -> Cron:
    """Validate an expression and a zone name; CronError says what is wrong. Cached: the
    firing loop reads every schedule at every tick (a Cron is immutable)."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("the cron expression is empty")
    if len(expression) > MAX_EXPRESSION or not expression.isprintable() or not expression.isascii():
        raise CronError(f"a cron expression is at most {MAX_EXPRESSION} printable ASCII characters")
    expr = " ".join(expression.split())
    fields = expr.split(" ")
    if expr.startswith("@"):
        if expr.lower() not in ALIASES:
            raise CronError(f"unknown alias {expr!r} (one of {', '.join(sorted(ALIASES))})")
        expr = expr.lower()
    elif len(fields) not in (5, 6):
        raise CronError("a cron expression has 5 fields (minute hour day month weekday) "
                        "or 6 with seconds first")
    if _NON_DETERMINISTIC.search(expr):
        raise CronError("random (R) and hashed (H) fields are not allowed: a schedule must "
                        "expand the same way everywhere")
    seconds = len(fields) == 6
    if not croniter.is_valid(expr, second_at_beginning=seconds):
        raise CronError(f"invalid cron expression {expression!r}")
    return Cron(expr, timezone, zone_of(timezone), seconds)


def zone_of(name: str) -> ZoneInfo:
    if not isinstance(name, str) or len(name) > 64 or not _ZONE.fullmatch(name) \
            or ".." in name:
        raise CronError(f"unknown time zone {str(name)[:64]!r} (an IANA name like Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {name!r} (an IANA name like Europe/Berlin)") from None


def as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC (a naive one is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(at: datetime) -> str:
    return as_utc(at).isoformat().replace("+00:00", "Z")


