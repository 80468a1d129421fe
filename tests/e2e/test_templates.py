"""Stored DAGs, parameters and resubmit, end to end on the embedded stack.

One stack, one test of several points (the suite's time budget): versions, runs of the
latest and of an older version, parameter errors naming the parameter, values reaching
argv and env, resubmit with memoization running only what changed, the CLI's `-p`, and
`launch` with a given run id starting one run however often it is called.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from helios.bus import close as close_nats
from helios.bus import connect
from helios.definitions import Definitions
from helios.health import Health
from helios.store import open_redis
from helios.submissions import read_submission
from services.api.context import ApiContext
from services.api.launch import launch
from services.api.parsing import ParserPool
from tests.conftest import WRITE_TOKEN
from tests.stack import Stack, by_name, task_logs, wait_run

TEMPLATE_V1 = """
apiVersion: v1
dagName: train-daily
params:
  - {name: model, type: string, enum: [als, bpr], description: which model}
  - {name: epochs, type: int, default: 3}
  - {name: tag, default: base, pattern: "[a-z]+"}
tasks:
  - name: prepare
    image: python:3.11
    memoize: true
    command: ["/bin/sh", "-c", "echo prepared-$TAG > /artifacts/data.txt"]
    env: {TAG: "{{ params.tag }}"}
    outputs: [data.txt]
  - name: train
    image: python:3.11
    memoize: true
    command: ["/bin/echo", "{{ params.model }}", "epochs={{params.epochs}}", "{{ '{{' }}lit}}",
              "{{ run.id }}"]
    env: {WHEN: "{{ run.logicalTime }}"}
    inputs: [{fromTask: prepare, name: data.txt}]
"""
# Version 2 differs by one argument: `train` no longer sees the run id, so it memoizes.
TEMPLATE_V2 = TEMPLATE_V1.replace('\n              "{{ run.id }}"]', '\n              "v2"]')


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
               ) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


def fields(problem: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in problem.get("errors", [])}


async def cli(stack: Stack, *argv: str) -> tuple[int, str]:
    env = {**os.environ, "HELIOS_TOKEN": WRITE_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "helios.cli.main", "--api", stack.api_url, "--json", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_templates_params_and_resubmit(stack: Stack, http: aiohttp.ClientSession,
                                             tmp_path: Path) -> None:
    api = f"{stack.api_url}/api/v1"
    yaml = {"Content-Type": "application/yaml"}

    # --- versions: a change makes a version; the same document again does not.
    status, body = await call(http, "PUT", f"{api}/templates/train", data=TEMPLATE_V1, headers=yaml)
    assert (status, body["version"], body["created"]) == (201, 1, True), body
    status, body = await call(http, "PUT", f"{api}/templates/train", data=TEMPLATE_V2, headers=yaml)
    assert (status, body["version"]) == (201, 2), body
    status, body = await call(http, "PUT", f"{api}/templates/train", data=TEMPLATE_V2, headers=yaml)
    assert (status, body["version"], body["created"]) == (200, 2, False), body
    code, out = await cli(stack, "templates")
    assert code == 0, out
    assert [(t["name"], t["latest"]) for t in json.loads(out)["templates"]] == [("train", 2)]
    status, shown = await call(http, "GET", f"{api}/templates/train", params={"version": "1"})
    assert status == 200 and shown["version"] == 1 and shown["latest"] == 2
    assert [p["name"] for p in shown["params"]] == ["model", "epochs", "tag"]
    assert [v["version"] for v in shown["versions"]] == [1, 2]

    # --- validation: an unknown reference at PUT, named by its field path.
    bad = TEMPLATE_V1.replace("{{params.epochs}}", "{{ params.epoch }}")
    status, problem = await call(http, "PUT", f"{api}/templates/bad", data=bad, headers=yaml)
    assert status == 400 and "unknown reference 'params.epoch'" in fields(problem)[
        "tasks[1].command[2]"], problem
    # ... and missing, ill-typed, out-of-enum and unknown values, each named.
    status, problem = await call(http, "POST", f"{api}/templates/train/runs", json={
        "params": {"epochs": "many", "tag": "UPPER", "nope": 1}})
    assert status == 400, problem
    reasons = fields(problem)
    assert reasons["params.model"] == "required parameter has no value (which model)"
    assert reasons["params.epochs"] == "must be an integer, not 'many'"
    assert "does not match the pattern" in reasons["params.tag"]
    assert "no such parameter" in reasons["params.nope"]
    status, problem = await call(http, "POST", f"{api}/templates/train/runs",
                                 json={"params": {"model": "xgb"}})
    assert status == 400 and fields(problem)["params.model"] == 'must be one of "als", "bpr"'
    status, _ = await call(http, "POST", f"{api}/templates/train/runs", json={"version": 9})
    assert status == 404

    # --- version 1, with values: they reach argv and env; the run records its origin.
    status, v1 = await call(http, "POST", f"{api}/templates/train/runs",
                            json={"params": {"model": "als", "epochs": 5}, "version": 1})
    assert status == 201 and v1["template"] == {"name": "train", "version": 1}, v1
    run1 = await wait_run(http, stack.api_url, v1["dagId"])
    assert run1["status"] == "SUCCEEDED", run1
    assert run1["template"] == {"name": "train", "version": 1}
    assert run1["params"] == {"model": "als", "epochs": 5, "tag": "base"}
    assert f"als epochs=5 {{{{lit}}}} {v1['dagId']}" in await task_logs(http, stack.api_url, v1["dagId"], "train")

    # --- the latest version (2) through the CLI's -p, then resubmitted with a change.
    code, out = await cli(stack, "run", "train", "-p", "model=bpr", "-p", "epochs=2")
    assert code == 0, out
    latest = json.loads(out)
    first = await wait_run(http, stack.api_url, latest["dagId"])
    assert first["template"] == {"name": "train", "version": 2}, first
    assert "bpr epochs=2 {{lit}} v2" in await task_logs(http, stack.api_url, latest["dagId"], "train")
    code, out = await cli(stack, "resubmit", latest["dagId"], "-p", "epochs=7")
    assert code == 0, out
    again = json.loads(out)
    assert again["resubmitOf"] == latest["dagId"], again
    second = await wait_run(http, stack.api_url, again["dagId"])
    tasks = by_name(second)
    assert tasks["prepare"]["memoized"], tasks["prepare"]  # unchanged: reused
    assert not tasks["train"]["memoized"] and tasks["train"]["memoReason"] == "ran: changed: command"
    assert second["params"] == {"model": "bpr", "epochs": 7, "tag": "base"}
    assert second["template"] == {"name": "train", "version": 2}
    assert second["logicalTime"] == first["logicalTime"]  # the same logical run, again

    # --- POST /dags takes parameters too (the CLI's submit -p), typed from text.
    path = tmp_path / "dag.yaml"
    path.write_text(TEMPLATE_V2.replace("train-daily", "adhoc"))
    code, out = await cli(stack, "submit", str(path), "-p", "model=als", "-p", "tag=x", "--wait")
    assert code == 0, out
    status, problem = await call(http, "POST", f"{api}/dags", data=TEMPLATE_V2, headers=yaml,
                                 params=[("param", "model=als"), ("param", "epochs=1.5")])
    assert status == 400 and fields(problem) == {"params.epochs": "must be an integer, not '1.5'"}

    # --- delete: the stored DAG goes, its runs stay.
    status, _ = await call(http, "DELETE", f"{api}/templates/train")
    assert status == 204
    assert (await call(http, "GET", f"{api}/templates/train"))[0] == 404
    assert (await call(http, "GET", f"{api}/dags/{v1['dagId']}"))[0] == 200
    # Stored again, it never reuses a version number that a run has recorded.
    status, body = await call(http, "PUT", f"{api}/templates/train", data=TEMPLATE_V1, headers=yaml)
    assert (status, body["version"]) == (201, 3), body
    assert (await call(http, "GET", f"{api}/templates/train", params={"version": "1"}))[0] == 404

    # --- launch() itself, as the schedules call it (same stack: one start-up for both).
    await check_launch_with_a_given_run_id_is_idempotent(stack, http)


async def check_launch_with_a_given_run_id_is_idempotent(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    """What the schedules rely on: a second launch of a run id (a duplicate firing, a
    restarted replica) stores nothing, starts nothing, and returns the existing run."""
    settings = stack.settings
    nc = await connect(settings.nats, "test-launch")
    redis = open_redis(settings.redis)
    try:
        js = nc.jetstream(timeout=settings.nats.request_timeout_s)
        c = ApiContext(settings, nc, js, redis, None, None, Health("test"),  # type: ignore[arg-type]
                       Definitions(redis))
        run_id = "5" * 32
        document = json.dumps({"apiVersion": "v1", "dagName": "fired", "params": [
            {"name": "n", "type": "int"}], "tasks": [
            {"name": "once", "image": "x", "command": ["/bin/echo", "n={{ params.n }}"]}]}).encode()
        async with ParserPool(workers=1) as parser:
            first = await launch(c, parser, document, run_id=run_id, params={"n": "1"},
                                 logical_time="2026-12-01T00:00:00Z", extra={"schedule": "s"})
            again = await asyncio.gather(*(
                launch(c, parser, document, run_id=run_id, params={"n": 2}) for _ in range(3)))
        assert first.created and first.dag_id == run_id and first.params == {"n": 1}
        assert [(r.created, r.dag_id) for r in again] == [(False, run_id)] * 3
        status = await wait_run(http, stack.api_url, run_id)
        assert status["status"] == "SUCCEEDED" and by_name(status)["once"]["attempts"] == 1
        assert status["params"] == {"n": 1} and status["logicalTime"] == "2026-12-01T00:00:00Z"
        assert await task_logs(http, stack.api_url, run_id, "once") == ["n=1"]
        assert (await read_submission(redis, run_id)).extra == {"schedule": "s"}  # type: ignore[union-attr]
    finally:
        await close_nats(nc)
        await redis.aclose()
