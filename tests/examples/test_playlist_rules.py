"""examples/playlist-rules on the embedded stack, one test of several points.

The stored DAG and its object trigger as the example's README sets them up: a dataset
landing under `datasets/playlists/` starts one retrain; the model is published as
`model.json` of task `publish`; a second dataset retrains once, reusing the unchanged
catalogue (memoized); a resubmit of the same data reuses every step; a noisy dataset
mines too few rules, so the `when` gate skips the validation and the publication, and
the run still succeeds.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from helios import objects
from helios.s3 import open_s3
from helios.schedules import ids
from helios.settings import FiringSettings, Settings
from tests.examples.helpers import call, example, put_template, runs_named, tasks_of, until
from tests.stack import running_stack, wait_run

NAME = "playlist-rules"
PREFIX = "datasets/playlists/"


async def test_rules_mined_gated_published_and_retrained(settings: Settings,
                                                         http: aiohttp.ClientSession) -> None:
    fast = FiringSettings(tick_s=0.2, objects_poll_s=0.2, lease_ttl_s=5.0)
    settings = settings.model_copy(update={"firing": fast})
    bucket = settings.s3.bucket
    redis = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
    async with running_stack(settings) as stack, open_s3(settings.s3) as s3:
        api = stack.api_url
        await put_template(http, api, NAME)
        status, body = await call(http, "PUT", f"{api}/api/v1/triggers/playlist-datasets",
                                  json=json.loads(example(NAME, "trigger.json")))
        assert status == 201, body

        async def land(key: str, body: bytes) -> tuple[str, dict[str, Any]]:
            await s3.put_object(Bucket=bucket, Key=key, Body=body)
            etag = (await s3.head_object(Bucket=bucket, Key=key))["ETag"].strip('"')
            run_id = ids.object_run("playlist-datasets", bucket, key, etag)
            await until(lambda: _has_run(redis, run_id), f"the run of {key}")
            run = await wait_run(http, api, run_id, timeout_s=90)
            assert run["status"] == "SUCCEEDED", run
            return etag, run

        async def model_of(run_id: str) -> dict[str, Any]:
            got = await s3.get_object(Bucket=bucket, Key=objects.output(run_id, "publish",
                                                                         "model.json"))
            return dict(json.loads(await got["Body"].read()))

        # The first dataset: every step runs, the model is published.
        etag1, first = await land(f"{PREFIX}ds1.csv", b"playlists, week 1\n")
        tasks = tasks_of(first)
        assert all(t["state"] == "SUCCEEDED" for t in tasks.values()), tasks
        mined = tasks["mine"]["result"]
        assert mined["playlists"] == 500 and mined["rules"] >= 20, mined
        model = await model_of(first["dagId"])
        assert model["dataset"] == f"{PREFIX}ds1.csv" and model["datasetVersion"] == etag1
        assert len(model["rules"]) == mined["rules"] and model["validation"]["hitRate"] > 0.1
        assert all(r["confidence"] >= 0.5 for r in model["rules"])

        # A new dataset: one retrain; the unchanged catalogue is reused, the rest reruns.
        etag2, second = await land(f"{PREFIX}ds2.csv", b"playlists, week 2\n")
        tasks = tasks_of(second)
        assert tasks["catalog"]["memoized"] is True, tasks["catalog"]
        assert [n for n, t in tasks.items() if t.get("memoized")] == ["catalog"], tasks
        assert tasks["publish"]["state"] == "SUCCEEDED"
        model2 = await model_of(second["dagId"])
        assert model2["datasetVersion"] == etag2 and model2["modelVersion"] != model["modelVersion"]

        # The same dataset again (resubmit): nothing runs, every step is reused.
        status, again = await call(http, "POST", f"{api}/api/v1/dags/{first['dagId']}/resubmit",
                                   json={})
        assert status == 201, again
        again = await wait_run(http, api, again["dagId"], timeout_s=90)
        assert again["status"] == "SUCCEEDED", again
        assert all(t["memoized"] for t in again["tasks"]), again["tasks"]

        # Noise: too few rules, the gate skips validation and publication.
        status, body = await call(http, "POST", f"{api}/api/v1/templates/{NAME}/runs",
                                  json={"params": {"structure": 0, "version": "noise"}})
        assert status == 201, body
        noisy = await wait_run(http, api, body["dagId"], timeout_s=90)
        tasks = tasks_of(noisy)
        assert noisy["status"] == "SUCCEEDED", noisy
        assert tasks["mine"]["result"]["rules"] < 20, tasks["mine"]
        assert (tasks["validate"]["state"], tasks["validate"]["reason"]) == (
            "SKIPPED", "ConditionFalse"), tasks["validate"]
        assert tasks["publish"]["state"] == "SKIPPED", tasks["publish"]
        assert tasks["catalog"]["memoized"] is True

        # Each dataset trained once (the trigger polled many times meanwhile).
        triggered = {ids.object_run("playlist-datasets", bucket, f"{PREFIX}ds{n}.csv", e)
                     for n, e in ((1, etag1), (2, etag2))}
        assert set(await runs_named(redis, NAME)) == triggered | {body["dagId"], again["dagId"]}
    await redis.aclose()


async def _has_run(redis: aioredis.Redis, run_id: str) -> bool:
    return run_id in await runs_named(redis, NAME)
