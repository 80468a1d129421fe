"""A restart of `helios dev` on the same data dir keeps every run, log, metric and
artifact; a `kill -9` of the whole stack mid-run loses nothing and the run finishes."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from helios.devstack.status import ProcessStatus
from helios.s3 import open_s3
from helios.settings import S3Settings
from tests.devstack.devproc import Dev, env_of, eventually, gone

SEED = {
    "apiVersion": "v1", "dagName": "durable-seed",
    "tasks": [
        {"name": "generate-data", "image": "ubuntu:latest", "outputs": ["output.txt"],
         "command": ["/bin/bash", "-c", "echo 'test data' > /artifacts/output.txt"]},
        {"name": "process-data", "image": "ubuntu:latest", "depends_on": ["generate-data"],
         "command": ["/bin/bash", "-c", "cat /artifacts/input.txt"],
         "inputs": [{"fromTask": "generate-data", "name": "input.txt"}]},
    ],
}


async def submit(dev: Dev, http: aiohttp.ClientSession, doc: dict[str, Any]) -> str:
    async with http.post(f"{dev.api}/api/v1/dags", json=doc, headers=dev.headers) as resp:
        body = await resp.json()
        assert resp.status == 201, body
        return str(body["dagId"])


async def run_state(dev: Dev, http: aiohttp.ClientSession, dag_id: str) -> dict[str, Any] | None:
    status, body = await dev.get(http, f"/dags/{dag_id}")
    return body if status == 200 else None


async def ended(dev: Dev, http: aiohttp.ClientSession, dag_id: str, timeout_s: float = 120.0
                ) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body = await run_state(dev, http, dag_id)
        return body if body and body["status"] != "RUNNING" else None

    return await eventually(probe, timeout_s, f"run {dag_id} ended")


async def artifact(dev: Dev, key: str) -> bytes:
    """Read an object with the credentials of this start (taken from a service's env)."""
    env = env_of(dev.children()["api"])
    settings = S3Settings(endpoint_url=env["HELIOS_S3_ENDPOINT_URL"], bucket=env["HELIOS_S3_BUCKET"],
                          access_key_id=env["HELIOS_S3_ACCESS_KEY_ID"],  # type: ignore[arg-type]
                          secret_access_key=env["HELIOS_S3_SECRET_ACCESS_KEY"])  # type: ignore[arg-type]
    async with open_s3(settings) as s3:
        obj = await s3.get_object(Bucket=settings.bucket, Key=key)
        return bytes(await obj["Body"].read())


async def everything_of(dev: Dev, http: aiohttp.ClientSession, dag_id: str) -> dict[str, Any]:
    run = await run_state(dev, http, dag_id)
    assert run is not None, f"run {dag_id} lost"
    _, logs = await dev.get(http, f"/dags/{dag_id}/tasks/process-data/logs")

    async def settled() -> dict[str, Any] | None:
        status, body = await dev.get(http, "/dags/durable-seed/metrics?limit=10")
        ids = {r["dagId"]: r for r in body.get("runs", [])} if status == 200 else {}
        return body if ids.get(dag_id, {}).get("endTime") else None

    metrics = await eventually(settled, 60, "metrics of the run")
    data = await artifact(dev, f"dags/{dag_id}/tasks/generate-data/outputs/output.txt")
    return {"status": run["status"], "tasks": {t["name"]: t["state"] for t in run["tasks"]},
            "logs": logs["lines"], "metrics": [r for r in metrics["runs"] if r["dagId"] == dag_id],
            "artifact": data}


async def test_stop_and_start_on_the_same_data_dir_keeps_runs(dev: Dev, http: aiohttp.ClientSession) -> None:
    await dev.start()
    dag_id = await submit(dev, http, SEED)
    assert (await ended(dev, http, dag_id))["status"] == "SUCCEEDED"
    before = await everything_of(dev, http, dag_id)
    assert "test data" in before["logs"] and before["artifact"] == b"test data\n"

    assert await dev.stop() == 0
    await dev.start()
    after = await everything_of(dev, http, dag_id)
    assert after == before
    # A new run on the restarted stack works too, and both are in the window.
    again = await submit(dev, http, SEED)
    assert (await ended(dev, http, again))["status"] == "SUCCEEDED"


@pytest.mark.parametrize("how", ["kill -9 of every process", "SIGTERM"])
async def test_a_stack_stopped_mid_run_finishes_the_run_after_a_restart(
        dev: Dev, http: aiohttp.ClientSession, how: str) -> None:
    await dev.start()
    doc = {
        "apiVersion": "v1", "dagName": "durable-kill",
        "tasks": [
            {"name": "slow", "image": "debian:12", "outputs": ["out.txt"],
             "command": ["/bin/sh", "-c", "sleep 3; echo slow-done > /artifacts/out.txt"]},
            {"name": "after", "image": "debian:12", "depends_on": ["slow"],
             "command": ["/bin/sh", "-c", "cat /artifacts/in.txt"],
             "inputs": [{"fromTask": "slow", "name": "in.txt"}]},
        ],
    }
    dag_id = await submit(dev, http, doc)

    async def slow_running() -> bool:
        body = await run_state(dev, http, dag_id)
        return bool(body) and {t["name"]: t["state"] for t in body["tasks"]}["slow"] == "RUNNING"  # type: ignore[index]

    await eventually(slow_running, 60, "task slow running")
    if how == "SIGTERM":
        assert await dev.stop() == 0
    else:
        await dev.kill_all()

    await dev.start()
    final = await ended(dev, http, dag_id, timeout_s=180)
    assert final["status"] == "SUCCEEDED", final["tasks"]
    _, logs = await dev.get(http, f"/dags/{dag_id}/tasks/after/logs")
    assert "slow-done" in logs["lines"]


def test_process_status_round_trips() -> None:
    record = ProcessStatus(name="nats", kind="server", state="running", pid=1, restarts=2,
                           lastExitCode=-9, startedAt=1.0)
    assert ProcessStatus.model_validate_json(record.model_dump_json()) == record


async def test_kill_9_of_helios_dev_alone_stops_its_children_and_a_new_one_takes_over(
        dev: Dev, http: aiohttp.ClientSession) -> None:
    await dev.start()
    dag_id = await submit(dev, http, SEED)
    assert (await ended(dev, http, dag_id))["status"] == "SUCCEEDED"
    assert dev.proc
    orphans = list(dev.children().values())
    dev.proc.kill()
    await dev.proc.wait()
    for pid in orphans:  # the parent-death signal drains and stops each of them
        await eventually(lambda p=pid: gone(p), 90, f"orphan {pid} gone")  # type: ignore[misc]
    await dev.start()
    assert (await run_state(dev, http, dag_id) or {}).get("status") == "SUCCEEDED"
