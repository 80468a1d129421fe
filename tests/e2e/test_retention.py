"""Retention on the real servers: exactly the old ended runs go, with their keys, logs
and objects; runs in flight, recent runs and objects a live memo entry points to stay.

Time is driven by the `now` given to `Retention.pass_once`, never by sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from helios import keys, objects
from helios.s3 import open_s3
from helios.settings import RetentionSettings, Settings
from helios.states import RunState, TaskState
from helios.store import open_redis
from services.scheduler.decide import Transition
from services.scheduler.retention import DAY_S, Retention
from services.scheduler.store import RunStore
from tests.metrics.support import wait_until
from tests.stack import Stack, doc, metrics_when, sh, submit, task_logs, wait_run

DAYS = 30.0


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = open_redis(settings.redis)
    yield client
    await client.aclose()


def aging() -> dict[str, Any]:
    return doc("aging", sh("make", "echo made > /artifacts/m.txt", outputs=["m.txt"]),
               sh("use", "cat /artifacts/in.txt", inputs=[{"fromTask": "make", "name": "in.txt"}]))


def memo_pipeline() -> dict[str, Any]:
    return doc("memo-aging",
               sh("gen", "echo rules-v1 > /artifacts/rules.txt", outputs=["rules.txt"],
                  memoize=True),
               sh("serve", "cat /artifacts/rules.txt",
                  inputs=[{"fromTask": "gen", "name": "rules.txt"}]))


async def finished(http: aiohttp.ClientSession, stack: Stack, dag: dict[str, Any]
                   ) -> dict[str, Any]:
    status = await wait_run(http, stack.api_url, (await submit(http, stack.api_url, dag))["dagId"])
    assert status["status"] == "SUCCEEDED", status
    return status


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


async def run_keys(redis: aioredis.Redis, dag_id: str) -> list[str]:
    # The test may scan; retention never does (it enumerates `keys.run_keys`).
    return sorted([k async for k in redis.scan_iter(match=f"dag:{dag_id}:*", count=1000)])


async def test_retention_deletes_exactly_the_old_ended_runs(
    stack: Stack, http: aiohttp.ClientSession, settings: Settings, redis: aioredis.Redis,
) -> None:
    api = stack.api_url
    async with open_s3(settings.s3) as s3:
        bucket = settings.s3.bucket

        async def stored(dag_id: str) -> set[str]:
            listing = await s3.list_objects_v2(Bucket=bucket, Prefix=objects.run_prefix(dag_id))
            return {o["Key"] for o in listing.get("Contents", [])}

        old = [(await finished(http, stack, aging()))["dagId"] for _ in range(3)]
        memo_run = (await finished(http, stack, memo_pipeline()))["dagId"]
        expected_objects = {
            **{d: {objects.output(d, "make", "m.txt"), objects.log(d, "make", 1),
                   objects.log(d, "use", 1)} for d in old},
            memo_run: {objects.output(memo_run, "gen", "rules.txt"),
                       objects.log(memo_run, "gen", 1), objects.log(memo_run, "serve", 1)},
        }
        async def everything() -> dict[str, set[str]]:
            return {d: await stored(d) for d in expected_objects}

        # Logs are archived in the background, a moment after each attempt.
        await wait_until(everything, lambda got: got == expected_objects, what="the objects")
        ends = [(await get(http, f"{api}/api/v1/dags/{d}"))[1]["endedAt"]
                for d in [*old, memo_run]]
        recent = await finished(http, stack, aging())
        assert recent["endedAt"] > max(ends)
        inflight = (await submit(http, api, doc("aging", sh("slow", "sleep 120"))))["dagId"]
        try:
            await wait_until(lambda: get(http, f"{api}/api/v1/dags/{inflight}"),
                             lambda r: r[1]["tasks"][0]["state"] == "RUNNING",
                             timeout_s=30, what="the slow task to run")
            assert (await redis.zscore(keys.RUNS_ENDED, inflight)) is None

            # "Now" is 30 days after a moment between the old runs' ends and the recent one's.
            now = (max(ends) + recent["endedAt"]) / 2 + DAYS * DAY_S
            retention = Retention(redis, s3, bucket, RetentionSettings(days=DAYS, batch=2))
            assert await retention.delete_run(inflight, now + 365 * DAY_S) is False
            report = await retention.pass_once(now)
            assert sorted(report.runs_deleted) == sorted([*old, memo_run])

            for dag_id in old:
                assert await run_keys(redis, dag_id) == []
                assert await stored(dag_id) == set()
                assert (await get(http, f"{api}/api/v1/dags/{dag_id}"))[0] == 404
                assert (await get(http, f"{api}/api/v1/dags/{dag_id}/tasks/use/logs"))[0] == 404
            # The memoized output stays while its memo entry lives; the rest of the run goes.
            assert await run_keys(redis, memo_run) == []
            kept = objects.output(memo_run, "gen", "rules.txt")
            assert await stored(memo_run) == {kept}
            assert report.objects_kept == 1 and report.objects_deleted == 3 * 3 + 2
            due = await redis.zscore(keys.RETENTION_OBJECTS, memo_run)
            assert due is not None and due > now

            # Recent and in-flight runs are untouched; the window shows what exists.
            assert (await get(http, f"{api}/api/v1/dags/{recent['dagId']}"))[0] == 200
            assert await stored(recent["dagId"]) != set()
            code, body = await get(http, f"{api}/api/v1/dags/{inflight}")
            assert code == 200 and body["status"] == "RUNNING"
            await metrics_when(http, api, "aging", lambda b: [r["dagId"] for r in b["runs"]]
                               == [inflight, recent["dagId"]], limit=100)
            await metrics_when(http, api, "memo-aging", lambda b: b["runs"] == [], limit=100)

            # The kept object still serves memoization.
            again = await finished(http, stack, memo_pipeline())
            gen = next(t for t in again["tasks"] if t["name"] == "gen")
            assert gen["memoized"] and memo_run in gen["memoReason"]
            assert "rules-v1" in await task_logs(http, api, again["dagId"], "serve")

            # Once the memo entry is gone (expired), the next due pass removes the object.
            for fp in await redis.smembers(keys.memo_refs(memo_run)):
                await redis.delete(keys.memo(str(fp)))
            later = await retention.pass_once(due + 1)
            assert await stored(memo_run) == set()
            assert await redis.exists(keys.memo_refs(memo_run)) == 0
            assert await redis.zcard(keys.RETENTION_OBJECTS) == 0
            # By then the recent runs have aged too; the one in flight still has not.
            assert sorted(later.runs_deleted) == sorted([recent["dagId"], again["dagId"]])
            assert (await get(http, f"{api}/api/v1/dags/{inflight}"))[0] == 200
        finally:
            async with http.post(f"{api}/api/v1/dags/{inflight}/cancel") as resp:
                assert resp.status in (202, 409)
            await wait_run(http, api, inflight)


async def test_runs_ended_index_follows_the_run_state(settings: Settings,
                                                      redis: aioredis.Redis) -> None:
    """Written in the MULTI of the terminal state, removed when a retry restarts the run."""
    store = RunStore(redis)
    done = [Transition("t", TaskState.FAILED, 1)]
    await store.store("r1", done, {"state": RunState.FAILED.value, "endedAt": 123.5}, {}, [])
    assert await redis.zscore(keys.RUNS_ENDED, "r1") == 123.5
    await store.store("r1", [Transition("t", TaskState.PENDING, 1)],
                      {"state": RunState.RUNNING.value, "endedAt": ""}, {}, [])
    assert await redis.zscore(keys.RUNS_ENDED, "r1") is None
    await store.store("r1", [], {"state": RunState.SUCCEEDED.value, "endedAt": 200.0}, {}, [])
    assert await redis.zscore(keys.RUNS_ENDED, "r1") == 200.0


async def test_one_unreadable_run_does_not_stall_retention(settings: Settings,
                                                            redis: aioredis.Redis) -> None:
    for dag_id, definition, ended in (("bad", b"{not json", 50.0),
                                      ("good", orjson.dumps(doc("x", sh("t", "true"))), 100.0)):
        await redis.set(keys.definition(dag_id), definition)
        await redis.hset(keys.run(dag_id), mapping={"dagName": "x", "state": "SUCCEEDED",
                                                    "endedAt": str(ended)})
        await redis.set(keys.task_status(dag_id, "t"), "SUCCEEDED")
        await redis.zadd(keys.RUNS_ENDED, {dag_id: ended})
    async with open_s3(settings.s3) as s3:
        retention = Retention(redis, s3, settings.s3.bucket, RetentionSettings(batch=1))
        report = await retention.pass_once(1000.0 + DAYS * DAY_S)
    assert report.runs_deleted == ["good"] and report.runs_kept == ["bad"]
    assert await run_keys(redis, "good") == []
    assert await redis.zrange(keys.RUNS_ENDED, 0, -1) == ["bad"]
    # The metrics service hears of the deletion.
    entries: Any = await redis.xrange(keys.RUNS_DELETED)
    assert [e[1] for e in entries] == [{"dagId": "good", "dagName": "x"}]
