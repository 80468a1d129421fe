"""Attempts lost with their executor are re-run as new attempts, not failed (real servers,
the watcher and scheduler as child processes killed with -9)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import nats
import redis.asyncio as aioredis

from helios import keys, objects, subjects
from helios.bus import publish
from helios.messages import TaskDispatch, TaskReport
from helios.settings import Settings
from tests.recovery.conftest import StartMixed
from tests.recovery.procs import archived
from tests.stack import by_name, doc, follow, sh, submit, task_logs, wait_run


async def status_until(http: aiohttp.ClientSession, api: str, dag_id: str,
                       ok: Callable[[dict[str, Any]], bool], timeout_s: float = 90.0
                       ) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            async with http.get(f"{api}/api/v1/dags/{dag_id}") as resp:
                body = await resp.json()
            if resp.status == 200 and ok(body):
                return body
            await asyncio.sleep(0.1)


def task_events(events: list[dict[str, Any]], task: str, state: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("task") == task and e.get("state") == state]


async def test_attempt_lost_with_its_runner_is_rerun_without_spending_retries(
    mixed: StartMixed, settings: Settings, http: aiohttp.ClientSession,
) -> None:
    m = await mixed()
    # Attempt 1 would run for a minute; any later attempt ends at once. No retries.
    script = ('if [ "$HELIOS_ATTEMPT" = 1 ]; then echo first; sleep 60; fi; '
              'echo "ran attempt $HELIOS_ATTEMPT"')
    run = await submit(http, m.api, doc("lost", sh("slow", script), sh("after", "true",
                                                                      depends_on=["slow"])))
    dag_id = run["dagId"]
    await status_until(http, m.api, dag_id, lambda s: by_name(s)["slow"]["state"] == "RUNNING")
    # RUNNING means spawned, not that the shell printed yet (a busy machine can take
    # seconds): the kill must come after "first" reached the attempt's spool.
    async with asyncio.timeout(60):
        while True:
            if any("first" in line for line in await task_logs(http, m.api, dag_id, "slow")):
                break
            await asyncio.sleep(0.1)

    watcher = m.children["watcher"]
    await watcher.kill()  # the attempt's sandbox dies with it (bwrap --die-with-parent)
    await watcher.start()

    final = await wait_run(http, m.api, dag_id, timeout_s=90)
    slow = by_name(final)["slow"]
    assert final["status"] == "SUCCEEDED", final
    assert (slow["attempts"], slow["lostAttempts"]) == (2, 1)
    assert by_name(final)["after"]["lostAttempts"] == 0

    events = await follow(http, m.api, dag_id)
    queued = task_events(events, "slow", "QUEUED")
    assert [(e["attempt"], e["reason"]) for e in queued] == [(1, None), (2, "ExecutorLost")]
    assert queued[1]["lostAttempts"] == 1 and "attempt 1 was lost" in queued[1]["message"]
    # Each attempt number started once; attempt 1's claim stays, so it never runs again.
    assert [e["attempt"] for e in task_events(events, "slow", "RUNNING")] == [1, 2]
    redis = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
    try:
        assert await redis.exists(keys.attempt_claim(dag_id, "slow", 1))
    finally:
        await redis.aclose()
    assert "ran attempt 2" in await task_logs(http, m.api, dag_id, "slow")
    # The lost attempt's log, up to the kill, was archived from its spool by the successor.
    assert b"first" in await archived(settings, objects.log(dag_id, "slow", 1))


async def test_a_task_that_keeps_getting_lost_fails_after_the_max(
    mixed: StartMixed, settings: Settings, http: aiohttp.ClientSession,
) -> None:
    """The test is the executor here: every attempt it is handed is reported lost."""
    m = await mixed(env={"HELIOS_SCHED_LOST_ATTEMPTS_MAX": "2"}, children=("scheduler",))
    nc = await nats.connect(settings.nats.url)
    js = nc.jetstream()
    seen: list[int] = []

    async def lose(msg: Any) -> None:
        d = TaskDispatch.model_validate_json(msg.data)
        seen.append(d.attempt)
        for phase in ("running", "failed"):
            await publish(js, subjects.report(d.dag_id), TaskReport(
                dag_id=d.dag_id, task=d.task.name, attempt=d.attempt, phase=phase,  # type: ignore[arg-type]
                at=0.0, reason="ExecutorLost" if phase == "failed" else None,
                message="node gone" if phase == "failed" else None))

    sub = await nc.subscribe(f"{subjects.PREFIX}.dispatch.>", cb=lose)
    try:
        run = await submit(http, m.api, doc("lost-max", sh("flaky", "true", retries=0),
                                            sh("after", "true", depends_on=["flaky"])))
        final = await wait_run(http, m.api, run["dagId"], timeout_s=60)
    finally:
        await sub.unsubscribe()
        await nc.close()
    flaky = by_name(final)["flaky"]
    assert final["status"] == "FAILED"
    assert (flaky["state"], flaky["reason"]) == ("FAILED", "ExecutorLost")
    assert (flaky["attempts"], flaky["lostAttempts"]) == (3, 2)
    assert sorted(seen) == [1, 2, 3]  # each attempt handed out once
    assert by_name(final)["after"]["state"] == "UPSTREAM_FAILED"
