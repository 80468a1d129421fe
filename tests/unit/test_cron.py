"""Cron expansion in time zones: DST gaps fire once after the jump, repeats fire once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from helios.schedules import ids
from helios.schedules.cron import CronError, parse_cron, rfc3339


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(times: list[datetime], zone: str) -> list[str]:
    cron = parse_cron("* * * * *", zone)
    return [t.astimezone(cron.zone).isoformat() for t in times]


def test_daily_in_a_zone_is_wall_clock_time() -> None:
    cron = parse_cron("0 9 * * *", "Europe/Berlin")
    times = cron.after(utc(2026, 3, 27), limit=4)
    # 09:00 Berlin is 08:00Z in winter, 07:00Z from March 29 (summer time).
    assert times == [utc(2026, 3, 27, 8), utc(2026, 3, 28, 8), utc(2026, 3, 29, 7),
                     utc(2026, 3, 30, 7)]


def test_a_time_in_the_spring_gap_fires_once_at_the_jump() -> None:
    cron = parse_cron("30 2 * * *", "America/New_York")
    times = cron.after(utc(2026, 3, 7), limit=3)
    assert local(times, "America/New_York") == [
        "2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]


def test_several_times_in_one_gap_fire_once() -> None:
    cron = parse_cron("*/15 * * * *", "America/New_York")
    times = cron.after(utc(2026, 3, 8, 6, 40), limit=4)  # 01:40 EST
    assert local(times, "America/New_York") == [
        "2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00",
        "2026-03-08T03:15:00-04:00", "2026-03-08T03:30:00-04:00"]
    assert len(set(times)) == len(times)


def test_a_repeated_time_fires_once_at_its_first_occurrence() -> None:
    cron = parse_cron("30 1 * * *", "America/New_York")
    times = cron.after(utc(2026, 10, 31), limit=3)
    assert local(times, "America/New_York") == [
        "2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_the_repeated_hour_is_not_fired_again() -> None:
    cron = parse_cron("*/30 * * * *", "America/New_York")
    times = cron.after(utc(2026, 11, 1, 4, 45), limit=5)  # 00:45 EDT
    assert local(times, "America/New_York") == [
        "2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00",
        "2026-11-01T02:00:00-05:00", "2026-11-01T02:30:00-05:00", "2026-11-01T03:00:00-05:00"]
    # Asked from inside the second pass of 01:xx, nothing of that hour comes again.
    assert cron.after(utc(2026, 11, 1, 6, 10), limit=1) == [utc(2026, 11, 1, 7)]


def test_latest_inside_the_repeated_hour_does_not_see_the_first_pass_as_new() -> None:
    cron = parse_cron("*/30 * * * *", "America/New_York")
    # now = 01:50 EST (second pass); 01:30 EDT fired at 05:30Z, before the cursor.
    kept, older = cron.latest(utc(2026, 11, 1, 5, 40), utc(2026, 11, 1, 6, 50), keep=5)
    assert kept == [] and older == 0
    # A cursor before it: 01:30 EDT is due (once), nothing else.
    kept, _ = cron.latest(utc(2026, 11, 1, 5, 10), utc(2026, 11, 1, 6, 50), keep=5)
    assert kept == [utc(2026, 11, 1, 5, 30)]


def test_latest_keeps_the_newest_and_counts_the_rest() -> None:
    cron = parse_cron("* * * * * *")  # every second
    kept, older = cron.latest(utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 30), keep=3)
    assert kept == [utc(2026, 1, 1, 0, 0, s) for s in (28, 29, 30)]
    assert older == 27
    # A year of downtime is not enumerated: the count stops at the scan bound.
    kept, older = cron.latest(utc(2025, 1, 1), utc(2026, 1, 1), keep=2, scan=50)
    assert kept == [utc(2025, 12, 31, 23, 59, 59), utc(2026, 1, 1)] and older == 50


def test_six_fields_put_seconds_first() -> None:
    cron = parse_cron("*/20 * * * * *")
    assert cron.after(utc(2026, 1, 1, 0, 0, 5), limit=3) == [
        utc(2026, 1, 1, 0, 0, 20), utc(2026, 1, 1, 0, 0, 40), utc(2026, 1, 1, 0, 1)]


def test_aliases_and_bounds() -> None:
    assert parse_cron("@daily", "UTC").after(utc(2026, 1, 1, 5), limit=1) == [utc(2026, 1, 2)]
    assert parse_cron("0 0 30 2 *").after(utc(2026, 1, 1), limit=3) == []  # never
    times = parse_cron("0 * * * *").after(utc(2026, 1, 1), until=utc(2026, 1, 1, 3), limit=99)
    assert times == [utc(2026, 1, 1, h) for h in (1, 2, 3)]


@pytest.mark.parametrize(("expr", "zone", "reason"), [
    ("", "UTC", "empty"),
    ("* * * *", "UTC", "5 fields"),
    ("* * * * * * *", "UTC", "5 fields"),
    ("61 * * * *", "UTC", "invalid"),
    ("H * * * *", "UTC", "hashed"),
    ("R * * * *", "UTC", "random"),
    ("@reboot", "UTC", "unknown alias"),
    ("* * * * *\x00", "UTC", "printable"),
    ("* * * * *", "Mars/Olympus", "time zone"),
    ("* * * * *", "../../etc/passwd", "time zone"),
    ("* * * * *", "", "time zone"),
])
def test_invalid_expressions_say_why(expr: str, zone: str, reason: str) -> None:
    with pytest.raises(CronError, match=reason):
        parse_cron(expr, zone)


def test_weekday_names_are_not_mistaken_for_hashes() -> None:
    assert parse_cron("0 9 * * THU", "UTC").after(utc(2026, 1, 1), limit=1) == [utc(2026, 1, 1, 9)]


def test_run_ids_are_stable_and_distinct() -> None:
    at = utc(2026, 1, 1, 12)
    first = ids.scheduled("nightly", at)
    assert first == ids.scheduled("nightly", at + timedelta(microseconds=5))  # whole seconds
    assert len(first) == 32 and int(first, 16) >= 0
    assert first != ids.scheduled("nightly", at + timedelta(seconds=1))
    assert first != ids.scheduled("other", at)
    assert ids.object_run("t", "b", "k", "e1") != ids.object_run("t", "b", "k", "e2")
    assert rfc3339(at) == "2026-01-01T12:00:00Z"
