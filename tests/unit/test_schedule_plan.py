"""Firing plans with an injected clock: catch-up bounds, concurrency policies, start/end,
pause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from helios.schedules.cron import parse_cron
from helios.schedules.plan import Plan, Policy, Spec, backfill_times, next_times, plan_tick

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def minutes(*ms: int) -> tuple[datetime, ...]:
    return tuple(T0 + timedelta(minutes=m) for m in ms)


def spec(**kw: object) -> Spec:
    return Spec(cron=parse_cron("* * * * *"), **kw)  # type: ignore[arg-type]


def test_a_regular_tick_fires_the_one_due_time() -> None:
    plan = plan_tick(spec(), T0, T0 + timedelta(seconds=61), previous_running=False)
    assert plan == Plan(fire=minutes(1), skipped=0, cursor=T0 + timedelta(minutes=1))
    # The next tick in the same minute: nothing new.
    assert plan_tick(spec(), plan.cursor or T0, T0 + timedelta(seconds=90), False).idle


def test_catchup_fires_every_missed_time_oldest_first() -> None:
    plan = plan_tick(spec(max_catchup=10), T0, T0 + timedelta(minutes=5, seconds=3), False)
    assert plan.fire == minutes(1, 2, 3, 4, 5) and plan.skipped == 0


def test_catchup_is_bounded_by_max_catchup_keeping_the_newest() -> None:
    plan = plan_tick(spec(max_catchup=3), T0, T0 + timedelta(minutes=60), False)
    assert plan.fire == minutes(58, 59, 60)
    assert plan.skipped == 57
    assert plan.cursor == T0 + timedelta(minutes=60)


def test_without_catchup_only_the_latest_missed_time_fires() -> None:
    plan = plan_tick(spec(catchup=False), T0, T0 + timedelta(minutes=7, seconds=30), False)
    assert plan.fire == minutes(7) and plan.skipped == 6


def test_forbid_skips_while_the_previous_run_is_running() -> None:
    now = T0 + timedelta(minutes=3)
    running = plan_tick(spec(policy=Policy.FORBID), T0, now, previous_running=True)
    assert running.fire == () and running.skipped == 3 and running.cursor == now
    idle = plan_tick(spec(policy=Policy.FORBID), T0, now, previous_running=False)
    assert idle.fire == minutes(1) and idle.skipped == 2 and not idle.cancel_previous


def test_replace_cancels_the_previous_run_and_fires_the_newest() -> None:
    now = T0 + timedelta(minutes=3)
    plan = plan_tick(spec(policy=Policy.REPLACE), T0, now, previous_running=True)
    assert plan.fire == minutes(3) and plan.cancel_previous and plan.skipped == 2
    assert not plan_tick(spec(policy=Policy.REPLACE), T0, now, False).cancel_previous


def test_allow_fires_even_while_the_previous_runs() -> None:
    plan = plan_tick(spec(policy=Policy.ALLOW), T0, T0 + timedelta(minutes=2), True)
    assert plan.fire == minutes(1, 2) and not plan.cancel_previous


def test_start_and_end_bound_the_times() -> None:
    s = spec(start=T0 + timedelta(minutes=3), end=T0 + timedelta(minutes=5))
    assert plan_tick(s, T0, T0 + timedelta(minutes=2), False).idle  # not started yet
    assert plan_tick(s, T0, T0 + timedelta(minutes=10), False).fire == minutes(3, 4, 5)
    assert plan_tick(s, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10), False).idle
    assert next_times(s, T0, T0, 10) == list(minutes(3, 4, 5))
    assert next_times(s, T0, T0 + timedelta(minutes=6), 10) == []


def test_paused_fires_nothing_and_shows_no_next_times() -> None:
    s = spec(paused=True)
    assert plan_tick(s, T0, T0 + timedelta(minutes=5), False).idle
    assert next_times(s, T0, T0, 3) == []


def test_next_times_start_after_the_cursor_and_now() -> None:
    assert next_times(spec(), T0, T0 + timedelta(seconds=30), 2) == list(minutes(1, 2))
    assert next_times(spec(), T0 + timedelta(minutes=4), T0, 1) == list(minutes(5))


def test_backfill_times_include_both_ends() -> None:
    cron = parse_cron("0 * * * *")
    times = backfill_times(cron, T0, T0 + timedelta(hours=3), limit=100)
    assert times == [T0 + timedelta(hours=h) for h in range(4)]
    assert len(backfill_times(cron, T0, T0 + timedelta(days=30), limit=10)) == 11  # too many


def test_a_tick_exactly_on_a_fire_time_fires_it_once() -> None:
    at = T0 + timedelta(minutes=1)
    first = plan_tick(spec(), T0, at, False)
    assert first.fire == (at,)
    assert plan_tick(spec(), first.cursor or T0, at, False).idle
