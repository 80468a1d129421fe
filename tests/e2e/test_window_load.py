"""Many concurrent runs of one DAG name: the metrics window is a view, not a lifetime.

150 runs of one name from 15 concurrent clients (the window holds 100): every run must
finish SUCCEEDED and stay readable, and the window must show exactly the newest 100.
Before the window became a view, the runs that fell out of it lost their keys mid-run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.stack import Stack, doc, metrics_when, sh, submit, wait_run

RUNS = 150
CLIENTS = 15
WINDOW = 100


async def test_150_concurrent_runs_of_one_name_all_finish_and_stay(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    dag = doc("load", sh("one", "echo one > /artifacts/o.txt", outputs=["o.txt"]),
              sh("two", "cat /artifacts/i.txt", inputs=[{"fromTask": "one", "name": "i.txt"}]))
    ids: list[str] = []

    async def client() -> None:
        for _ in range(RUNS // CLIENTS):
            ids.append((await submit(http, stack.api_url, dag))["dagId"])

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    assert len(set(ids)) == RUNS

    followers = asyncio.Semaphore(30)

    async def finished(dag_id: str) -> dict[str, Any]:
        async with followers:
            return await wait_run(http, stack.api_url, dag_id, timeout_s=90)

    statuses = await asyncio.gather(*(finished(i) for i in ids))
    wrong = {s["dagId"]: s["status"] for s in statuses if s["status"] != "SUCCEEDED"}
    assert not wrong, wrong

    # Every run is still there once all of them have ended (none fell out with the window).
    async def status(dag_id: str) -> tuple[int, dict[str, Any]]:
        async with http.get(f"{stack.api_url}/api/v1/dags/{dag_id}") as resp:
            return resp.status, await resp.json()

    for code, body in await asyncio.gather(*(status(i) for i in ids)):
        assert code == 200 and body["status"] == "SUCCEEDED", body

    # The window: the newest 100 by start, newest first.
    newest = [s["dagId"] for s in sorted(statuses, key=lambda s: s["startedAt"], reverse=True)]
    body = await metrics_when(
        http, stack.api_url, "load",
        lambda b: [r["dagId"] for r in b["runs"]] == newest[:WINDOW]
        and all(r["status"] == "SUCCEEDED" for r in b["runs"]),
        timeout_s=30, limit=WINDOW,
    )
    assert body["summary"]["runs"] == WINDOW
