"""`GET /api/v1/dags`, `GET /api/v1/dag-names` and `helios list` on the whole stack: a
run is listed the moment it is submitted, moves to its final state's filter when the
scheduler ends it, pages newest first, and bad parameters are 400 problems."""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import pytest

from helios.cli.client import Client
from helios.cli.list import run_list
from tests.conftest import READ_TOKEN
from tests.stack import Stack, doc, sh, submit, wait_run


async def get(http: aiohttp.ClientSession, url: str, params: list[tuple[str, str]] | None = None,
              ) -> tuple[int, str, Any]:
    async with http.get(f"{url}/api/v1/dags", params=params or [],
                        headers={"Authorization": f"Bearer {READ_TOKEN}"}) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def walk(http: aiohttp.ClientSession, url: str, *params: tuple[str, str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    cursor: list[tuple[str, str]] = []
    while True:
        status, _, body = await get(http, url, [("limit", "2"), *params, *cursor])
        assert status == 200, body
        assert len(body["runs"]) <= 2
        runs += body["runs"]
        if body["next"] is None:
            return runs
        cursor = [("cursor", body["next"])]


async def test_list_runs_pages_filters_and_cli(stack: Stack, http: aiohttp.ClientSession,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    url = stack.api_url
    ok, bad = doc("list-ok", sh("t", "true")), doc("list-bad", sh("t", "exit 3"))
    submitted = []
    for dag in (ok, bad, ok, bad, ok):
        run = await submit(http, url, dag)
        submitted.append(run["dagId"])
        # Listed at once: the api indexes a run in the MULTI that stores it.
        _, _, body = await get(http, url, [("limit", "1")])
        assert body["runs"][0]["dagId"] == run["dagId"] and body["runs"][0]["state"] == "RUNNING"
    for dag_id in submitted:
        await wait_run(http, url, dag_id)
    newest_first = submitted[::-1]

    everything = await walk(http, url)
    assert [r["dagId"] for r in everything] == newest_first
    first = everything[0]
    assert set(first) == {"dagId", "dagName", "state", "submittedAt", "startedAt", "endedAt",
                          "durationMs", "taskCount", "useCache"}
    assert first["dagName"] == "list-ok" and first["state"] == "SUCCEEDED"
    assert first["taskCount"] == 1 and first["useCache"] is True
    assert first["durationMs"] is not None and first["endedAt"] >= first["startedAt"]

    assert [r["dagId"] for r in await walk(http, url, ("name", "list-bad"))] == newest_first[1::2]
    failed = await walk(http, url, ("state", "FAILED"))
    assert [r["dagId"] for r in failed] == newest_first[1::2]
    assert all(r["state"] == "FAILED" for r in failed)
    both = await walk(http, url, ("state", "FAILED,CANCELLED"), ("state", "SUCCEEDED"),
                      ("name", "list-ok"))
    assert [r["dagId"] for r in both] == newest_first[0::2]
    assert await walk(http, url, ("state", "RUNNING")) == []

    for params in ([("cursor", "not-a-cursor")], [("limit", "0")], [("state", "DONE")],
                   [("name", "Bad Name")]):
        status, ctype, problem = await get(http, url, params)
        assert (status, ctype) == (400, "application/problem+json"), (params, problem)
        assert problem["status"] == 400 and problem["detail"]
    async with http.get(f"{url}/api/v1/dags") as resp:  # the write token reads too
        assert resp.status == 200
    async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{url}/api/v1/dags") as resp:
        assert resp.status == 401

    async with http.get(f"{url}/api/v1/dag-names") as resp:
        assert (await resp.json())["names"] == ["list-ok", "list-bad"]

    args = argparse.Namespace(name="list-bad", state=["FAILED"], limit=1, cursor=None,
                              all=False, json=False)
    assert await run_list(Client(url, http), args) == 0
    out = capsys.readouterr().out
    assert newest_first[1] in out and newest_first[3] not in out and "FAILED" in out
    assert "more: helios list --cursor " in out and "--name list-bad --state FAILED" in out
    args.all = True
    assert await run_list(Client(url, http), args) == 0
    out = capsys.readouterr().out
    assert newest_first[1] in out and newest_first[3] in out and "more:" not in out
