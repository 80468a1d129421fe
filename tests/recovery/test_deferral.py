"""A report ahead of the scheduler's record (Redis lost the record of its launch) is
deferred a few times, backing off, then adopted: no hot loop, no stuck run."""

from __future__ import annotations

import time

import aiohttp
import nats

from helios import subjects
from helios.bus import publish
from helios.messages import TaskReport
from helios.settings import Settings
from services.scheduler.pacing import DEFER_DELIVERIES
from tests.recovery.conftest import StartMixed
from tests.recovery.test_lost_attempts import status_until
from tests.stack import by_name, doc, sh, submit, wait_run


async def test_a_report_ahead_of_the_record_backs_off_then_is_adopted(
    mixed: StartMixed, settings: Settings, http: aiohttp.ClientSession,
) -> None:
    m = await mixed(children=("scheduler",))  # no watcher: attempt 1 stays QUEUED
    run = await submit(http, m.api, doc("ahead", sh("t", "true")))
    dag_id = run["dagId"]
    await status_until(http, m.api, dag_id, lambda s: by_name(s)["t"]["state"] == "QUEUED")

    nc = await nats.connect(settings.nats.url)
    try:
        sent = time.monotonic()
        await publish(nc.jetstream(), subjects.report(dag_id), TaskReport(
            dag_id=dag_id, task="t", attempt=3, phase="succeeded", at=time.time()))
        final = await wait_run(http, m.api, dag_id, timeout_s=60)
        took = time.monotonic() - sent
    finally:
        await nc.close()
    t = by_name(final)["t"]
    assert final["status"] == "SUCCEEDED" and (t["state"], t["attempts"]) == ("SUCCEEDED", 3)
    log = (m.children["scheduler"].log_dir / "scheduler.log").read_text()
    deferrals = [line for line in log.splitlines() if "deferring" in line]
    # Bounded and backed off: one line per deferred delivery (not 65 a second), then adopted.
    assert len(deferrals) == DEFER_DELIVERIES - 1, deferrals
    assert "adopting it" in log
    assert 7.0 <= took < 30.0, took  # 0.5 + 1 + 2 + 4 s of backoff before the adoption
