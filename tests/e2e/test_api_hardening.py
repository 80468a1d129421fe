"""Hardened HTTP on the real API over real sockets: stalled bodies are cut, hostile
documents cannot stall other requests, errors name no internal address or version."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bench.common import pct
from helios.dag.parse import DagError
from helios.settings import Settings
from services.api.dags import BODY_IDLE_S
from services.api.parsing import ParserPool
from services.api.service import HTTP_LIMITS
from tests.conftest import WRITE_TOKEN
from tests.e2e.apionly import api_only
from tests.stack import Stack

PROBLEM = "application/problem+json"
MIB = 1024 * 1024
SMALL_DAG = {"apiVersion": "v1", "dagName": "hard", "tasks": [
    {"name": "a", "image": "i", "command": ["true"]}]}
# The case: 1 MiB of `[` as YAML (2.4 s on the event loop before).
BRACKETS = b"[" * (MIB - 16)
# Passes the depth pre-scan and takes PyYAML about 18 s: only the time bound stops it.
FLAT_LIST = b"tasks: [" + b"a," * ((MIB - 16) // 2) + b"]\n"
# The pre-scan miscounts (an apostrophe in a plain scalar opens a "quote"); the YAML
# composer's own depth bound still refuses it.
HIDDEN_BRACKETS = b"a: b'\nc: " + b"[" * (MIB - 32) + b" '\n"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Stack]:
    async with api_only(settings) as stack:
        yield stack


def _port(stack: Stack) -> int:
    return int(stack.api_url.rsplit(":", 1)[1])


async def _stalled_post(port: int, sent: bytes = b'{"apiVersion": "v1"') -> tuple[bytes, float]:
    """POST a body that announces 1000 bytes and stops after a few: (reply, seconds until
    the server closed the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(b"POST /api/v1/dags HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + WRITE_TOKEN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + sent)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), BODY_IDLE_S + 30)  # until EOF
        return reply, time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_a_stalled_body_gets_a_408_and_the_connection_is_closed(api: Stack) -> None:
    reply, seconds = await _stalled_post(_port(api))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:300]
    assert b"application/problem+json" in head
    problem = json.loads(body)
    assert problem["status"] == 408 and "did not arrive in time" in problem["detail"]
    assert BODY_IDLE_S - 0.5 <= seconds < BODY_IDLE_S + 10


async def test_a_thousand_stalled_bodies_are_all_cut_quickly(api: Stack) -> None:
    port = _port(api)
    started = time.monotonic()
    results = await asyncio.gather(*(_stalled_post(port) for _ in range(1000)))
    elapsed = time.monotonic() - started
    statuses = [r.split(b" ", 2)[1] if r.startswith(b"HTTP/1.1") else r[:40] for r, _ in results]
    assert statuses.count(b"408") == 1000, sorted(set(statuses))
    # Before: 105 s and more. Now every one is answered and closed after the idle bound.
    assert elapsed < BODY_IDLE_S + 30, elapsed
    # The API still answers at once afterwards.
    async with aiohttp.ClientSession() as http, http.get(f"{api.api_url}/healthz") as resp:
        assert resp.status == 200


async def test_a_connection_that_never_finishes_its_headers_is_closed(api: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(api))
    started = time.monotonic()
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: never ends
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), HTTP_LIMITS["keepalive_timeout"] + 30) == b""
    finally:
        writer.close()
    assert time.monotonic() - started < HTTP_LIMITS["keepalive_timeout"] + 30


async def _healthz_latencies(url: str, done: asyncio.Event) -> list[float]:
    """Sequential GET /healthz on one kept-alive connection until `done`: milliseconds."""
    samples: list[float] = []
    async with aiohttp.ClientSession() as http:
        while not done.is_set() or len(samples) < 50:
            started = time.perf_counter()
            async with http.get(f"{url}/healthz") as resp:
                await resp.read()
                assert resp.status == 200
            samples.append((time.perf_counter() - started) * 1000)
    return samples


@pytest.mark.timeout(240)
async def test_pathological_documents_do_not_stall_other_requests(
    api: Stack, http: aiohttp.ClientSession
) -> None:
    """/healthz p99 stays under 250 ms while 4 hostile documents of each kind are posted.
    Parsed on the loop they stalled it 2.3 s on a quiet machine; in the parser pool p99
    stayed under 50 ms even at load 13, so the bound has room for a busy machine."""
    done = asyncio.Event()
    probe = asyncio.create_task(_healthz_latencies(api.api_url, done))

    async def post(body: bytes) -> tuple[int, dict[str, Any]]:
        async with http.post(f"{api.api_url}/api/v1/dags", data=body,
                             headers={"Content-Type": "application/yaml"}) as resp:
            return resp.status, await resp.json(content_type=None)

    try:
        started = time.monotonic()
        answers = [await asyncio.gather(*(post(body) for _ in range(4)))
                   for body in (BRACKETS, FLAT_LIST, HIDDEN_BRACKETS)]
        elapsed = time.monotonic() - started
    finally:
        done.set()
        samples = await probe
    # Each is refused by its bound; on a crowded machine (workers are niced) the time
    # bound may also be the first to stop the cheap ones, which is just as bounded. The
    # pre-scan and the composer's depth bound are pinned in tests/unit/test_dag_fuzz.py.
    too_complex = (400, "document too complex")
    titles = [{(status, body["title"]) for status, body in batch} for batch in answers]
    assert titles[0] <= {(400, "document too deeply nested"), too_complex}, titles
    assert titles[1] == {too_complex}, titles
    assert titles[2] <= {(400, "malformed YAML"), too_complex}, titles
    p99 = pct(samples, 99)
    print(f"healthz while posting: {len(samples)} samples over {elapsed:.1f} s, "
          f"p50 {pct(samples, 50):.1f} ms, p99 {p99:.1f} ms, max {max(samples):.1f} ms")
    assert p99 < 250, (p99, sorted(samples)[-10:])
    # The pool recovered: an ordinary document is accepted right after.
    async with http.post(f"{api.api_url}/api/v1/dags", json=SMALL_DAG) as resp:
        assert resp.status == 201, await resp.text()


async def test_the_parse_time_bound_kills_the_worker_and_the_pool_goes_on() -> None:
    async with ParserPool(workers=1, timeout_s=0.5) as pool:
        with pytest.raises(DagError) as info:
            await pool.parse(FLAT_LIST, "application/yaml")
        assert info.value.title == "document too complex"  # cut by the bound, not finished
        parsed = await pool.parse(json.dumps(SMALL_DAG).encode(), "application/json", False)
        assert (parsed.dag_name, parsed.use_cache, parsed.task_count) == ("hard", False, 1)


async def test_a_client_that_leaves_does_not_lose_a_worker() -> None:
    async with ParserPool(workers=1, timeout_s=10) as pool:
        slow = asyncio.create_task(pool.parse(FLAT_LIST[: MIB // 8], "application/yaml"))
        await asyncio.sleep(0)  # the job is sent
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError, DagError):
            await slow
        parsed = await pool.parse(json.dumps(SMALL_DAG).encode(), "application/json")
        assert parsed.task_count == 1


async def test_no_versions_in_the_server_header(api: Stack, http: aiohttp.ClientSession) -> None:
    for path in ("/healthz", "/api/v1/openapi.json", "/api/v1/nowhere", "/api/v1/system/status"):
        async with http.get(f"{api.api_url}{path}") as resp:
            server = resp.headers.get("Server", "")
            assert "Python" not in server and "aiohttp" not in server, (path, server)
            assert not any(ch.isdigit() for ch in server), (path, server)


async def test_no_versions_even_for_a_request_aiohttp_cannot_parse(api: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(api))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head = reply.partition(b"\r\n\r\n")[0].decode()
    assert head.split()[1] == "400", head
    assert "Server: helios" in head and "aiohttp" not in head and "Python" not in head


async def test_405_carries_allow(api: Stack, http: aiohttp.ClientSession) -> None:
    async with http.delete(f"{api.api_url}/api/v1/dags") as resp:
        assert resp.status == 405 and resp.content_type == PROBLEM
        assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}
    async with http.put(f"{api.api_url}/api/v1/dags/{'0' * 32}") as resp:
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}


async def test_errors_name_the_dependency_never_an_address(
    api: Stack, http: aiohttp.ClientSession
) -> None:
    await api.stop("metrics")
    async with http.get(f"{api.api_url}/api/v1/dags/cache-test/metrics") as resp:
        body = await resp.text()
        assert resp.status == 503 and resp.content_type == PROBLEM
    assert "metrics service unavailable" in body
    assert "127.0.0.1" not in body and api.metrics_url.rsplit(":", 1)[1] not in body
    async with http.get(f"{api.api_url}/api/v1/system/status") as resp:
        text = await resp.text()
    assert "127.0.0.1" not in text and "Cannot connect" not in text
