"""Schedules, backfills and triggers end to end, on one stack (the suite's time budget).

One test of several points: a per-second schedule fires every second exactly once across
an api restart (its downtime caught up, no time missed, none twice: the run ids are the
derived ones, one per second); a backfill of 10 times with maxParallel 3 never has more
than 3 runs at once and ends SUCCEEDED; a webhook starts one run per Idempotency-Key; an
object trigger starts one run per new object version, also for an object that arrived
while the api was down, and never again for the same bytes; each of those runs' success
starts a chained run with the upstream's id as a parameter.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import redis.asyncio as aioredis

from helios import keys
from helios.runs_view import read_run
from helios.s3 import open_s3
from helios.schedules import ids
from helios.settings import FiringSettings, Settings
from helios.states import RunState
from helios.submissions import read_submission
from services.api.firing import store
from tests.conftest import WRITE_TOKEN
from tests.stack import (
    Stack,
    call,
    doc,
    running_stack,
    runs_named,
    sh,
    task_logs,
    until,
    wait_run,
)

T = TypeVar("T")
DEADLINE_S = 60.0








async def all_ended(redis: aioredis.Redis, run_ids: list[str]) -> bool:
    for run_id in run_ids:
        run = await read_run(redis, run_id, [], detail=False)
        if run is None or run.state is RunState.RUNNING:
            return False
    return True


def with_param(document: dict[str, Any], *names: str) -> dict[str, Any]:
    return {**document, "params": [{"name": n, "type": "string"} for n in names]}


async def test_schedules_backfill_and_triggers(settings: Settings, http: aiohttp.ClientSession
                                               ) -> None:
    fast = FiringSettings(tick_s=0.2, objects_poll_s=0.3, lease_ttl_s=5.0,
                          objects_clock_skew_s=1.0)
    settings = settings.model_copy(update={"firing": fast})
    prefix = f"incoming-{uuid.uuid4().hex[:8]}/"
    redis = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
    async with running_stack(settings) as stack, open_s3(settings.s3) as s3:
        api = f"{stack.api_url}/api/v1"
        templates = {
            "tick": doc("tick", sh("t", "true")),
            "slow": doc("slow", sh("s", "sleep 0.2")),
            "sleepy": doc("sleepy", sh("z", "sleep 60")),
            "ingest": with_param(doc("ingest", sh(
                "i", "echo got {{ params.key }} {{ params.digest }}")), "key", "digest"),
            "report": with_param(doc("report", sh("r", "echo after {{ params.upstream }}")),
                                 "upstream"),
            "hook": with_param(doc("hook", sh("h", "echo hello {{ params.who }}")), "who"),
        }
        for name, document in templates.items():
            status, body = await call(http, "PUT", f"{api}/templates/{name}", json=document)
            assert status == 201, body

        # Validation: problems name the field, never a 500.
        status, body = await call(http, "PUT", f"{api}/templates/tick/schedule",
                                  json={"cron": "61 * * * *"})
        assert status == 400 and "cron" in body["detail"], body
        status, body = await call(http, "PUT", f"{api}/templates/tick/schedule",
                                  json={"cron": "* * * * *", "timezone": "Mars/Base"})
        assert status == 400 and "time zone" in body["detail"], body
        status, body = await call(http, "PUT", f"{api}/templates/nope/schedule",
                                  json={"cron": "* * * * *"})
        assert status == 404, body
        status, body = await call(http, "PUT", f"{api}/triggers/bad", json={
            "template": "ingest", "source": {"kind": "objects", "prefix": prefix},
            "params": {"key": "{{ trigger.nope }}"}})
        assert status == 400 and "trigger.nope" in body["detail"], body

        # Objects there before a trigger start runs only where it says `existing: true`.
        backlog = f"backlog-{uuid.uuid4().hex[:8]}/"
        for key in (f"{prefix}old", f"{backlog}old"):
            await s3.put_object(Bucket=settings.s3.bucket, Key=key, Body=b"old")
        await asyncio.sleep(2.5)  # beyond the clock skew allowed (1 s here)
        status, body = await call(http, "PUT", f"{api}/triggers/backlog", json={
            "template": "hook", "source": {"kind": "objects", "prefix": backlog, "existing": True},
            "params": {"who": "{{ trigger.key }}"}})
        assert status == 201, body

        # Triggers first: every ingest run (object or not) chains a report run.
        status, body = await call(http, "PUT", f"{api}/triggers/incoming", json={
            "template": "ingest", "source": {"kind": "objects", "prefix": prefix},
            "params": {"key": "{{ trigger.key }}", "digest": "{{ trigger.digest }}"}})
        assert status == 201, body
        status, body = await call(http, "PUT", f"{api}/triggers/after-ingest", json={
            "template": "report", "source": {"kind": "runSucceeded", "template": "ingest"},
            "params": {"upstream": "{{ trigger.runId }}"}})
        assert status == 201, body
        status, body = await call(http, "PUT", f"{api}/triggers/back", json={
            "template": "ingest", "source": {"kind": "runSucceeded", "template": "report"}})
        assert status == 400 and "close a loop" in body["detail"], body  # runs for ever

        for n in (1, 2):
            await s3.put_object(Bucket=settings.s3.bucket, Key=f"{prefix}obj{n}", Body=b"v%d" % n)

        # The CLI's backfill: progress until done, through the api restart below.
        backfill_cli = asyncio.create_task(cli(
            stack, "backfill", "slow", "--from", "2026-01-01", "--to", "2026-01-01T09:00:00Z",
            "--cron", "0 * * * *", "--max-parallel", "3"))

        headers = {"Idempotency-Key": "delivery-1"}
        status, first = await call(http, "POST", f"{api}/templates/hook/trigger",
                                   json={"who": "webhook"}, headers=headers)
        assert status == 201, first
        status, again = await call(http, "POST", f"{api}/templates/hook/trigger",
                                   json={"who": "webhook"}, headers=headers)
        assert status == 200 and again["dagId"] == first["dagId"], again
        assert again["params"] == first["params"] == {"who": "webhook"}, again  # same answer
        status, body = await call(http, "POST", f"{api}/templates/hook/trigger", json={"x": 1})
        assert status == 400 and "x" in json.dumps(body), body
        hooked = await wait_run(http, stack.api_url, first["dagId"])
        assert hooked["status"] == "SUCCEEDED", hooked
        assert "hello webhook" in await task_logs(http, stack.api_url, first["dagId"], "h")

        async def fired(n: int) -> dict[str, Any] | None:
            _, body = await call(http, "GET", f"{api}/templates/tick/schedule")
            return body if body["state"]["fired"] >= n else None

        await until(lambda: _len_at_least(redis, "ingest", 2), "two objects, two runs")

        # Every second, catching up to 100 missed times (last: it adds a run a second).
        code, out = await cli(stack, "--json", "schedule", "tick", "--cron", "* * * * * *",
                              "--max-catchup", "100", "--timezone", "Europe/Berlin")
        assert code == 0, out
        body = json.loads(out)
        assert body["maxCatchup"] == 100 and len(body["nextFireTimes"]) == 5, body
        await until(lambda: fired(2), "the schedule fired twice")
        code, out = await cli(stack, "schedules", "--next", "2")
        assert code == 0 and "tick" in out and out.count("next 20") == 2, out
        # A pass that plans fired times again (a stale replica, a lost cursor write) starts
        # nothing new: their derived ids exist. The checks below count every run.
        first = min([await _logical(redis, r) for r in await runs_named(redis, "tick")])
        await redis.hset(keys.schedule_state("tick"), "cursor", repr(first.timestamp() - 0.5))
        rewound = datetime.now(UTC)
        await until(lambda: _cursor_past(http, api, rewound), "the rewound cursor caught up")

        # The api goes away across several fire times; an object arrives meanwhile, and
        # the same bytes are uploaded again as obj1 (same ETag: not a new version).
        await stack.stop("api")
        down_at = datetime.now(UTC)
        await s3.put_object(Bucket=settings.s3.bucket, Key=f"{prefix}obj3", Body=b"v3")
        await s3.put_object(Bucket=settings.s3.bucket, Key=f"{prefix}obj1", Body=b"v1")
        await asyncio.sleep(2.5)  # wall-clock time must pass: the fire times to miss
        await stack.start("api")
        up_at = datetime.now(UTC)
        await s3.put_object(Bucket=settings.s3.bucket, Key=f"{prefix}obj4", Body=b"v4")

        await until(lambda: _cursor_past(http, api, up_at + timedelta(seconds=1)),
                    "the schedule fired after the restart")
        status, _ = await call(http, "DELETE", f"{api}/templates/tick/schedule")
        assert status == 204

        # Ticks: one run per second, no gap (the downtime was caught up), none twice.
        tick_runs = await runs_named(redis, "tick")
        times = []
        for run_id in tick_runs:
            at = await _logical(redis, run_id)
            assert run_id == ids.scheduled("tick", at)
            times.append(at)
        times.sort()
        assert len(set(times)) == len(times) == len(tick_runs)
        assert times[-1] - times[0] == timedelta(seconds=len(times) - 1), times
        assert times[0] < down_at and times[-1] > up_at

        # Objects: obj1..obj4 once each (the poll that saw obj4 saw the re-upload too).
        ingest = await until(lambda: _len_at_least(redis, "ingest", 4), "four objects")
        assert len(ingest) == 4
        etags = {}
        for n in range(1, 5):
            head = await s3.head_object(Bucket=settings.s3.bucket, Key=f"{prefix}obj{n}")
            etags[n] = head["ETag"].strip('"')
        expected = {ids.object_run("incoming", settings.s3.bucket, f"{prefix}obj{n}", etags[n])
                    for n in range(1, 5)}
        assert set(ingest) == expected  # and not `old`, there before the trigger
        head = await s3.head_object(Bucket=settings.s3.bucket, Key=f"{backlog}old")
        backlog_run = ids.object_run("backlog", settings.s3.bucket, f"{backlog}old",
                                     head["ETag"].strip('"'))
        assert backlog_run in await runs_named(redis, "hook")
        run_of_obj2 = ids.object_run("incoming", settings.s3.bucket, f"{prefix}obj2", etags[2])
        await wait_run(http, stack.api_url, run_of_obj2)
        assert f"got {prefix}obj2 etag:{etags[2]}" in await task_logs(
            http, stack.api_url, run_of_obj2, "i")

        # Chained: one report per successful ingest, its id derived from the upstream's.
        reports = {ids.chained(run_id, "after-ingest"): run_id for run_id in ingest}
        await until(lambda: all_ended(redis, [*ingest, *reports]), "ingest and reports ended")
        assert set(await runs_named(redis, "report")) == set(reports)
        for report, upstream in reports.items():
            assert f"after {upstream}" in await task_logs(http, stack.api_url, report, "r")
        for run_id in ingest:
            assert (await read_run(redis, run_id, [], detail=False)).state is RunState.SUCCEEDED  # type: ignore[union-attr]

        # Backfill: all 10 done, never more than 3 at once.
        code, out = await backfill_cli
        assert code == 0 and "10/10 done (10 ok" in out, out
        backfill_id = out.split()[1].rstrip(":")
        ended = await _backfill_ended(http, api, backfill_id)
        assert ended is not None
        assert ended["state"] == "SUCCEEDED" and ended["progress"]["succeeded"] == 10, ended
        spans = []
        for item in ended["runs"]:
            run = await read_run(redis, item["runId"], [], detail=False)
            assert run is not None and run.submitted_at and run.ended_at
            spans.append((run.submitted_at, run.ended_at))
        assert _max_overlap(spans) <= 3, spans
        # A second backfill of the same times skips them all (they ran), unless rerun.
        status, again = await call(http, "POST", f"{api}/templates/slow/backfills", json={
            "from": "2026-01-01T00:00:00Z", "to": "2026-01-01T01:00:00Z", "cron": "0 * * * *"})
        assert status == 201, again
        again = await until(lambda: _backfill_ended(http, api, again["id"]), "skipped backfill")
        assert again["progress"]["skipped"] == 2 and again["state"] == "SUCCEEDED", again

        # Ctrl-C on `helios backfill` cancels it as a whole: its running run is cancelled,
        # the others never start.
        env = {**os.environ, "HELIOS_TOKEN": WRITE_TOKEN}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "helios.cli.main", "--api", stack.api_url, "backfill",
            "sleepy", "--from", "2026-01-01", "--to", "2026-01-01T02:00:00Z", "--cron",
            "0 * * * *", "--rerun", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env)
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), DEADLINE_S)).decode()
        backfill_id = line.split()[1].rstrip(":")
        first_run = ids.backfill_rerun(backfill_id, "sleepy", datetime(2026, 1, 1, tzinfo=UTC))
        await until(lambda: _run_in(redis, first_run, RunState.RUNNING), "the first run started")
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
        assert proc.returncode == 130 and b"cancelled" in rest, (line, rest)
        cancelled = await until(lambda: _backfill_ended(http, api, backfill_id), "cancelled")
        assert cancelled["state"] == "CANCELLED", cancelled
        assert [r["state"] for r in cancelled["runs"]] == ["CANCELLED"] * 3, cancelled
        assert await _run_in(redis, first_run, RunState.CANCELLED)
        for later in cancelled["runs"][1:]:  # never started
            assert await read_run(redis, later["runId"], [], detail=False) is None
        status, _ = await call(http, "POST", f"{api}/backfills/{backfill_id}/cancel")
        assert status == 409
    await redis.aclose()


async def _logical(redis: aioredis.Redis, run_id: str) -> datetime:
    record = await read_submission(redis, run_id)
    assert record is not None and record.logical_time is not None
    return datetime.fromisoformat(record.logical_time.replace("Z", "+00:00"))


async def _run_in(redis: aioredis.Redis, run_id: str, state: RunState) -> bool:
    run = await read_run(redis, run_id, [], detail=False)
    return run is not None and run.state is state


async def _len_at_least(redis: aioredis.Redis, name: str, n: int) -> list[str] | None:
    found = await runs_named(redis, name)
    return found if len(found) >= n else None


async def _cursor_past(http: aiohttp.ClientSession, api: str, at: datetime) -> bool:
    _, body = await call(http, "GET", f"{api}/templates/tick/schedule")
    cursor = body["state"]["cursor"]
    return bool(cursor) and datetime.fromisoformat(cursor.replace("Z", "+00:00")) >= at


async def _backfill_ended(http: aiohttp.ClientSession, api: str, backfill_id: str
                          ) -> dict[str, Any] | None:
    _, body = await call(http, "GET", f"{api}/backfills/{backfill_id}")
    return body if body["state"] not in ("RUNNING", "CANCELLING") else None


async def cli(stack: Stack, *argv: str) -> tuple[int, str]:
    env = {**os.environ, "HELIOS_TOKEN": WRITE_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "helios.cli.main", "--api", stack.api_url, *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
    return proc.returncode or 0, out.decode()


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                   key=lambda x: (x[0], x[1]))
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most



async def test_one_instance_holds_the_firing_lease(settings: Settings) -> None:
    """Several api replicas: one runs the firing loops; the lease moves at once when its
    holder leaves (and after its TTL when it dies)."""
    redis = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
    try:
        assert await store.hold_lease(redis, "a", 5.0)
        assert not await store.hold_lease(redis, "b", 5.0)
        assert await store.hold_lease(redis, "a", 5.0)  # renewed
        await store.release_lease(redis, "b")  # not b's to release
        assert not await store.hold_lease(redis, "b", 5.0)
        await store.release_lease(redis, "a")
        assert await store.hold_lease(redis, "b", 0.05)
        await asyncio.sleep(0.1)  # the TTL itself is what is tested: "a" takes over after it
        assert await store.hold_lease(redis, "a", 5.0)
    finally:
        await redis.aclose()
