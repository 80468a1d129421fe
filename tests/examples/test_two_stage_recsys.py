"""examples/two-stage-recsys on the embedded stack, one test of several points.

The stored DAG with its daily schedule; one run maps the first stage over the three
models of the `models` parameter, the ranker and the evaluation read every instance's
candidates (fan-in), and the exit handler writes the report (the failure alert is
skipped); an unknown model fails its instance and the alert names it; then a backfill
of a week runs one run per day, each on its own day's data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp

from helios import objects
from helios.s3 import open_s3
from helios.settings import FiringSettings, Settings
from tests.examples.helpers import call, put_template, tasks_of, until
from tests.stack import running_stack, task_logs, wait_run

NAME = "two-stage-recsys"
MODELS = ["popular", "item-knn", "user-history"]


async def test_fan_in_report_schedule_and_week_backfill(settings: Settings,
                                                        http: aiohttp.ClientSession) -> None:
    settings = settings.model_copy(update={"firing": FiringSettings(tick_s=0.2, lease_ttl_s=5.0)})
    bucket = settings.s3.bucket
    async with running_stack(settings) as stack, open_s3(settings.s3) as s3:
        api = f"{stack.api_url}/api/v1"
        await put_template(http, stack.api_url, NAME)
        status, body = await call(http, "PUT", f"{api}/templates/{NAME}/schedule",
                                  json={"cron": "0 3 * * *", "timezone": "UTC"})
        assert status == 201, body
        assert all(t.endswith("T03:00:00Z") or "T03:00:00+00:00" in t
                   for t in body["nextFireTimes"]), body

        # One run: three candidate models, their fan-in, the report.
        status, body = await call(http, "POST", f"{api}/templates/{NAME}/runs", json={})
        assert status == 201, body
        run = await wait_run(http, stack.api_url, body["dagId"], timeout_s=90)
        assert run["status"] == "SUCCEEDED", run
        tasks = tasks_of(run)
        assert tasks["candidates"]["instances"] == 3, tasks["candidates"]
        assert [tasks[f"candidates[{i}]"]["result"]["model"] for i in range(3)] == MODELS
        assert (tasks["report"]["state"], tasks["alert"]["state"]) == ("SUCCEEDED", "SKIPPED")
        recall = tasks["evaluate"]["result"]["recall"]
        assert set(recall) == {*MODELS, "ranker"} and recall["ranker"] > recall["popular"], recall
        got = await s3.get_object(Bucket=bucket, Key=objects.output(run["dagId"], "report",
                                                                     "report.md"))
        report = (await got["Body"].read()).decode()
        for model in [*MODELS, "ranker"]:
            assert f"| {model} | {recall[model]:.4f} |" in report, report
        assert "ranked 150 users over 3 models" in await task_logs(
            http, stack.api_url, run["dagId"], "ranker")

        # An unknown model fails its instance; the alert handler names it.
        status, body = await call(http, "POST", f"{api}/templates/{NAME}/runs", json={
            "params": {"models": ["popular", "bogus"], "users": 20}})
        assert status == 201, body
        failed = await wait_run(http, stack.api_url, body["dagId"], timeout_s=90)
        tasks = tasks_of(failed)
        assert failed["status"] == "FAILED", failed
        assert (tasks["candidates[1]"]["state"], tasks["ranker"]["state"]) == (
            "FAILED", "UPSTREAM_FAILED"), tasks
        assert (tasks["report"]["state"], tasks["alert"]["state"]) == ("SKIPPED", "SUCCEEDED")
        alert = await task_logs(http, stack.api_url, body["dagId"], "alert")
        assert any(line.startswith("failed tasks: ") and "candidates[1]" in line
                   for line in alert), alert

        # A week of days, at most 4 runs at once, on a smaller setting to stay quick.
        status, body = await call(http, "POST", f"{api}/templates/{NAME}/backfills", json={
            "from": "2026-11-01T00:00:00Z", "to": "2026-11-07T23:59:59Z", "maxParallel": 4,
            "params": {"models": ["item-knn"], "users": 40}})
        assert status == 201, body
        backfill = await until(lambda: _ended(http, api, body["id"]), "the backfill ended",
                               deadline_s=100)
        assert backfill["state"] == "SUCCEEDED", backfill
        assert backfill["progress"]["succeeded"] == 7, backfill
        days = sorted(datetime.fromisoformat(r["time"]).astimezone(UTC) for r in backfill["runs"])
        assert [d.day for d in days] == list(range(1, 8)) and {d.hour for d in days} == {3}
        last = backfill["runs"][-1]["runId"]
        status_, run = await call(http, "GET", f"{api}/dags/{last}")
        assert status_ == 200 and run["status"] == "SUCCEEDED", run
        assert tasks_of(run)["candidates"]["instances"] == 1
        lines = await task_logs(http, stack.api_url, last, "report")
        assert "# two-stage-recsys 2026-11-07" in lines, lines


async def _ended(http: aiohttp.ClientSession, api: str, backfill_id: str
                 ) -> dict[str, Any] | None:
    _, body = await call(http, "GET", f"{api}/backfills/{backfill_id}")
    return body if body["state"] not in ("RUNNING", "CANCELLING") else None
