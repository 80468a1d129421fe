"""Hostile requests against the whole running stack: never a 5xx, every error a precise
problem+json, nothing stored for a rejected request, and nothing a user submits runs a
command we did not mean to run.

`test_random_requests` draws a fixed-seed mix of bodies, content types, path segments,
query strings and headers over every route. Inputs that trigger a known bug are kept out
of that mix and pinned by their own test below (so one bug cannot hide another).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import random
import shutil
import string
import zlib
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from yarl import URL

from tests.stack import Stack, submit, wait_run
from tests.unit.test_dag_fuzz import (
    BYTE_MUTATIONS,
    SPECIAL_NUMBERS,
    SPECIAL_STRINGS,
    YAML_LINES,
    base_doc,
    encode,
    mutate,
    mutate_bytes,
    nested,
    paths,
)

PROBLEM = "application/problem+json"
SEED = 20240917
REQUESTS = 200
MAX_BODY = 1024 * 1024


@dataclass
class Outcome:
    method: str
    url: str
    status: int | None = None
    content_type: str = ""
    body: Any = None
    error: str | None = None


@dataclass
class Fuzzer:
    http: aiohttp.ClientSession
    api: str
    accepted: set[str] = field(default_factory=set)
    accepted_names: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)

    async def send(self, method: str, path: str, *, body: bytes | None = None,
                   headers: dict[str, str] | None = None, no_content_type: bool = False) -> Outcome:
        url = URL(self.api + path, encoded=True)
        out = Outcome(method, path if len(path) < 200 else path[:200] + "...")
        skip = ["Content-Type"] if no_content_type else []
        try:
            async with asyncio.timeout(15), self.http.request(
                method, url, data=body, headers=headers or {}, skip_auto_headers=skip,
                allow_redirects=False,
            ) as resp:
                out.status, out.content_type = resp.status, resp.content_type
                if resp.content_type == "text/event-stream" or method == "HEAD":
                    return out  # a live feed: its headers are the answer
                raw = await resp.read()
                try:
                    out.body = json.loads(raw)
                except ValueError:
                    out.body = raw[:300]
        except (aiohttp.ClientError, TimeoutError) as exc:
            out.error = f"{type(exc).__name__}: {exc}"
        return out

    def check(self, out: Outcome, what: str = "") -> None:
        """The API's promise for any request; violations are collected, not raised."""
        label = f"{out.method} {out.url} {what}".strip()
        if out.error is not None:
            self.failures.append(f"{label}: no response ({out.error})")
            return
        assert out.status is not None
        if out.status >= 500:
            self.failures.append(f"{label}: {out.status} {out.body!r:.300}")
        if out.status >= 400:
            if out.content_type != PROBLEM:
                self.failures.append(f"{label}: {out.status} as {out.content_type!r}: "
                                     f"{out.body!r:.200}")
            elif out.method != "HEAD":
                body = out.body
                if not (isinstance(body, dict) and body.get("status") == out.status
                        and isinstance(body.get("title"), str) and body["title"]):
                    self.failures.append(f"{label}: {out.status} with a bad problem {body!r:.300}")
        if out.status == 201 and isinstance(out.body, dict) and "dagId" in out.body:
            self.accepted.add(out.body["dagId"])
            self.accepted_names.add(out.body["dagName"])


async def stored_runs(stack: Stack) -> tuple[set[str], set[str]]:
    """The run ids with any `dag:{id}:*` key, and the names with a `dagRuns:` window."""
    r = aioredis.Redis.from_url(stack.settings.redis.url, decode_responses=True)
    try:
        ids = {k.split(":")[1] async for k in r.scan_iter("dag:*", count=1000)}
        names = {k.split(":", 1)[1] async for k in r.scan_iter("dagRuns:*", count=1000)}
    finally:
        await r.aclose()
    return ids, names


def run_doc(name: str, *tasks: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "dagName": name, "tasks": list(tasks)}


# --------------------------------------------------------------------------- the random mix

HEX = "0123456789abcdef"
SEGMENTS = [
    "nope", "0" * 32, "f" * 31, "a" * 33, "A" * 32, "%2F", "a%2Fb", "..%2F..%2Fetc%2Fpasswd",
    "%00", "%ED%A0%80", "%FF", "%C3%A9", "%F0%9F%92%A9", "%E2%80%AE", "%20", "+", "%3F", "%23",
    "%25", "%25%32%65", "~", "-", "-a", "a-", "x" * 64, "x" * 255, "x" * 2000, "x" * 6000,
    "cache-test", "a", "A", "%0D%0ASet-Cookie:%20x=1", "%3Cscript%3E", "null", "0", "-1",
    "9" * 40, "%2e%2e%2f", "a.b", "a;b", "a,b", "%3Bls",
]
# `.` and `..` as a run name: the metrics proxy forwards them as dot segments (see below).
DOT_SEGMENTS = [".", "..", "%2e", "%2E", "%2e%2e", "%2E%2E", ".%2e", "%2e."]
ROUTES = [
    ("GET", "/api/v1/dags/{id}"), ("GET", "/api/v1/dags/{id}/events"),
    ("GET", "/api/v1/dags/{id}/tasks/{task}/logs"), ("POST", "/api/v1/dags/{id}/cancel"),
    ("POST", "/api/v1/dags/{id}/retry"), ("GET", "/api/v1/dags/{name}/metrics"),
    ("GET", "/api/v1/system/status"), ("GET", "/api/v1/openapi.json"), ("GET", "/"),
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/api/v1/dags"), ("GET", "/api/v1/dag-names"),
    ("POST", "/api/v1/dags/{id}/resubmit"), ("GET", "/api/v1/templates"),
    ("PUT", "/api/v1/templates/{name}"), ("GET", "/api/v1/templates/{name}"),
    ("DELETE", "/api/v1/templates/{name}"), ("POST", "/api/v1/templates/{name}/runs"),
    ("GET", "/api/v1/schedules"), ("PUT", "/api/v1/templates/{name}/schedule"),
    ("POST", "/api/v1/templates/{name}/schedule/pause"),
    ("POST", "/api/v1/templates/{name}/backfills"), ("GET", "/api/v1/backfills/{id}"),
    ("POST", "/api/v1/backfills/{id}/cancel"), ("POST", "/api/v1/templates/{name}/trigger"),
    ("PUT", "/api/v1/triggers/{name}"), ("DELETE", "/api/v1/triggers/{name}"),
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
QUERY_KEYS = ["limit", "offset", "useCache", "lastEventId", "x", "", "limit[]", "%FF", "a%00b",
              "name", "state", "cursor"]
QUERY_VALUES = ["", "0", "1", "-1", "100", "101", "100000", "abc", "1e3", "1.5", "%FF",
                "%ED%A0%80", "%EF%BC%99", "%D9%A3", "true", "FALSE", "maybe", "9" * 30,
                "9" * 5000, "x" * 3000, "%00", "1%00", "+1", "0x10", "1_0", "%20%201",
                "RUNNING,FAILED", "cache-test", "1e400_" + "a" * 32, "1.5_" + "a" * 32]
# Below 2**63: larger ids are pinned by test_last_event_id_beyond_the_sequence_range.
EVENT_IDS = ["abc", "", "-1", "0", "1", "3", "\uff11", "1.5", "0x10", " 7 ", "1_0", "9" * 5000,
             "x" * 4000, str(2**63 - 1), "-0", "NaN", "inf"]
CONTENT_TYPES = ["application/json", "application/yaml", "application/x-yaml", "text/yaml",
                 "text/x-yaml", "application/json; charset=utf-16", "APPLICATION/JSON",
                 "application/json;;;====", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/octet-stream", "*/*", "",
                 "application/problem+json", "application/yaml; charset=\u00e9", None]
ACCEPTS = ["*/*", "text/plain", "text/event-stream", "application/problem+json", "\u00fc",
           "text/plain;q=0.1, application/json", "x" * 4000]


def hostile_value(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(SPECIAL_STRINGS)
    if kind == 1:
        return rng.choice(SPECIAL_NUMBERS)
    if kind == 2:
        return nested(rng.randrange(1, 300), rng.choice(SPECIAL_STRINGS), rng.choice(["list", "dict"]))
    if kind == 3:
        return {rng.choice(SPECIAL_STRINGS): rng.choice(SPECIAL_NUMBERS) for _ in range(3)}
    if kind == 4:
        return [rng.choice(SPECIAL_STRINGS) for _ in range(rng.randrange(5))]
    return None


def harmless(doc: dict[str, Any]) -> dict[str, Any]:
    """The fuzz base document with commands that finish at once if it is accepted."""
    for task in doc["tasks"]:
        task["command"] = ["true"]
        task["outputs"] = task.get("outputs", []) and ["out.txt"]
    doc["tasks"][1]["inputs"][0]["artifact"] = "out.txt"
    return doc


def random_body(rng: random.Random) -> tuple[bytes, str | None]:
    kind = rng.randrange(9)
    if kind == 0:  # a valid run
        doc = run_doc(f"fuzz-{rng.randrange(1000)}", {"name": "a", "image": "i", "command": ["true"]})
        return json.dumps(doc).encode(), "application/json"
    if kind in (1, 2, 3):  # one mutation of a rich valid document, then bytes mangled
        doc = harmless(base_doc())
        doc = mutate(doc, rng.choice(paths(doc)), rng.choice(["replace", "delete", "add-key",
                                                               "duplicate"]),
                     hostile_value(rng), rng.choice(SPECIAL_STRINGS))
        fmt = rng.choice(["json", "json-raw", "yaml"])
        body = encode(doc, fmt)
        if rng.random() < 0.4:
            body = mutate_bytes(body, rng.choice(BYTE_MUTATIONS), rng.randrange(10**6))
        return body, "application/json" if fmt.startswith("json") else "application/yaml"
    if kind == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(2000))), None
    if kind == 5:
        return "\n".join(rng.choices(YAML_LINES, k=rng.randrange(1, 12))).encode(
            "utf-8", "surrogatepass"), "application/yaml"
    if kind == 6:
        return rng.choice([b"", b"{}", b"[]", b"null", b"\xef\xbb\xbf", b"\x00" * 100,
                           b"[" * 50_000, b"x" * (MAX_BODY + 1)]), None
    if kind == 7:  # valid JSON of a random shape
        return json.dumps(hostile_value(rng)).encode(), "application/json"
    return json.dumps(hostile_value(rng)).encode(), "application/yaml"


def random_query(rng: random.Random) -> str:
    pairs = []
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        key = rng.choice(QUERY_KEYS)
        value = rng.choice(QUERY_VALUES)
        if key == "lastEventId" and value.isdigit() and len(value) > 18:  # >= 2**63: pinned
            value = "abc"
        pairs.append(f"{key}={value}")
    return "?" + "&".join(pairs) if pairs else ""


def random_headers(rng: random.Random) -> dict[str, str]:
    headers = {}
    if rng.random() < 0.4:
        headers["Last-Event-ID"] = rng.choice(EVENT_IDS)
    if rng.random() < 0.3:
        headers["Accept"] = rng.choice(ACCEPTS)
    if rng.random() < 0.1:
        headers["X-Forwarded-For"] = "1.2.3.4, ::1, " + "9" * 100
    if rng.random() < 0.1:
        headers["Cookie"] = "; ".join(f"c{i}={rng.choice(string.ascii_letters)}" for i in range(50))
    if rng.random() < 0.1:
        headers["Range"] = rng.choice(["bytes=0-1", "bytes=-1", "items=9999999999999999999-"])
    return headers


def random_request(rng: random.Random, run_id: str) -> tuple[str, str, bytes | None,
                                                             str | None, dict[str, str]]:
    if rng.random() < 0.4:  # submissions: the parser behind the API
        method, template = "POST", "/api/v1/dags"
    else:
        method, template = rng.choice(ROUTES)
    if rng.random() < 0.15:
        method = rng.choice(METHODS)
    if rng.random() < 0.4:  # the real run, so handlers get past the 404
        segment = run_id
    else:
        segment = rng.choice([run_id.upper(), *SEGMENTS, *DOT_SEGMENTS,
                              "".join(rng.choices(HEX, k=32))])
    name = rng.choice(["cache-test", "fuzz-target", *SEGMENTS])  # no dot segments: see below
    task = rng.choice(["a", "a", "a", "zz", "A", *SEGMENTS])
    path = template.format(id=segment, name=name, task=task)
    if rng.random() < 0.1:
        path += rng.choice(["/", "/extra", "//", "/%2F"])
    query = random_query(rng)
    if len(path) + len(query) < 8000:  # a longer request line is pinned by test_malformed_http
        path += query
    body, ctype = random_body(rng) if method in ("POST", "PUT", "PATCH") else (None, None)
    if body is not None and rng.random() < 0.3:  # a body under the wrong (or no) label
        ctype = rng.choice(CONTENT_TYPES)
    return method, path, body, ctype, random_headers(rng)


async def test_random_requests(stack: Stack, http: aiohttp.ClientSession) -> None:
    fuzz = Fuzzer(http, stack.api_url)
    run = await submit(http, stack.api_url, run_doc("fuzz-target", {
        "name": "a", "image": "i", "command": ["echo", "hello"]}))
    await wait_run(http, stack.api_url, run["dagId"])
    fuzz.accepted.add(run["dagId"])
    fuzz.accepted_names.add("fuzz-target")

    rng = random.Random(SEED)
    for _ in range(REQUESTS):
        method, path, body, ctype, headers = random_request(rng, run["dagId"])
        if body is not None and ctype is not None:
            headers["Content-Type"] = ctype
        if body is not None and rng.random() < 0.05:  # well-formed compression is fine
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        out = await fuzz.send(method, path, body=body, headers=headers,
                              no_content_type=body is not None and ctype is None)
        fuzz.check(out, f"[{ctype!r}, {len(body or b'')} bytes, headers {sorted(headers)}]")

    ids, names = await stored_runs(stack)
    assert not fuzz.failures, f"seed {SEED}: " + "\n".join(fuzz.failures)
    assert ids <= fuzz.accepted, f"stored without a 201: {sorted(ids - fuzz.accepted)}"
    assert names <= fuzz.accepted_names, f"windows without a 201: {names - fuzz.accepted_names}"


# --------------------------------------------------------------------------- pinned bugs

async def test_corrupt_or_unsupported_content_encoding_is_a_problem(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    """A body that does not decompress is a 400 problem, an unsupported coding a 415.
    (br and zstd never reach the application: aiohttp's HTTP parser refuses codings it
    cannot decode with a plain 400, see test_malformed_http_is_a_4xx.)"""
    fuzz = Fuzzer(http, stack.api_url)
    doc = json.dumps(run_doc("enc", {"name": "a", "image": "i", "command": ["true"]})).encode()
    cases = [
        ("gzip", b"garbage"), ("gzip", gzip.compress(doc)[:-12]), ("deflate", b"garbage"),
        ("deflate", zlib.compress(doc)[:20]), ("x-unknown", doc),
    ]
    for encoding, body in cases:
        out = await fuzz.send("POST", "/api/v1/dags", body=body, headers={
            "Content-Type": "application/json", "Content-Encoding": encoding})
        fuzz.check(out, f"Content-Encoding: {encoding}")
        if out.status is not None and out.status < 400:
            fuzz.failures.append(f"{encoding}: accepted a body that is not {encoding}")
    ids, _ = await stored_runs(stack)
    assert not fuzz.failures, "\n".join(fuzz.failures)
    assert ids <= fuzz.accepted


async def test_last_event_id_beyond_the_sequence_range(stack: Stack, http: aiohttp.ClientSession) -> None:
    """Bug: `Last-Event-ID: 18446744073709551615` (or any id >= 2**64 - 1) is a 500: NATS
    refuses `opt_start_seq` = id + 1 beyond uint64."""
    fuzz = Fuzzer(http, stack.api_url)
    run = await submit(http, stack.api_url, run_doc("leid", {
        "name": "a", "image": "i", "command": ["true"]}))
    await wait_run(http, stack.api_url, run["dagId"])
    events = f"/api/v1/dags/{run['dagId']}/events"
    for value in (str(2**64 - 1), str(2**64), "9" * 23, "9" * 4000):
        fuzz.check(await fuzz.send("GET", events, headers={"Last-Event-ID": value}),
                   f"Last-Event-ID {value[:30]}")
        fuzz.check(await fuzz.send("GET", f"{events}?lastEventId={value}"))
    assert not fuzz.failures, "\n".join(fuzz.failures)


async def test_metrics_of_a_dot_segment_name(stack: Stack, http: aiohttp.ClientSession) -> None:
    """Bug: `GET /api/v1/dags/%2e%2e/metrics` is proxied as `/api/v1/dags/../metrics`,
    which the client normalises to `/api/v1/metrics`: the metrics service's plain-text
    404 comes back instead of a 400 problem naming the invalid dagName."""
    fuzz = Fuzzer(http, stack.api_url)
    for name in DOT_SEGMENTS:
        fuzz.check(await fuzz.send("GET", f"/api/v1/dags/{name}/metrics"))
    assert not fuzz.failures, "\n".join(fuzz.failures)


async def test_malformed_http_is_a_4xx(stack: Stack, http: aiohttp.ClientSession) -> None:
    """Requests aiohttp's HTTP parser refuses before any route runs (request line or header
    over 8 KiB, a raw non-ASCII byte or NUL in the path, a content coding it cannot
    decode) get aiohttp's own plain-text 400: the one documented exception to
    problem+json, since no application code sees them. Never a 5xx, never a hang."""
    host, port = URL(stack.api_url).host, URL(stack.api_url).port
    requests = {
        "long path": b"GET /api/v1/dags/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "long header": b"GET /api/v1/dags/x HTTP/1.1\r\nHost: x\r\nLast-Event-ID: "
                       + b"9" * 9000 + b"\r\n\r\n",
        "raw utf-8 in path": "GET /api/v1/dags/\u00e9 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        "NUL in path": b"GET /api/v1/dags/\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        "zstd body": b"POST /api/v1/dags HTTP/1.1\r\nHost: x\r\nContent-Encoding: zstd\r\n"
                     b"Content-Length: 7\r\n\r\ngarbage",
        "br body": b"POST /api/v1/dags HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\n"
                   b"Content-Length: 7\r\n\r\ngarbage",
    }
    failures = []
    for what, raw in requests.items():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(raw)
            await writer.drain()
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        ctype = next((v.strip() for k, _, v in (line.partition(":") for line in lines)
                      if k.lower() == "content-type"), "")
        if not 400 <= status < 500:
            failures.append(f"{what}: {status_line!r} as {ctype!r}")
    assert not failures, "\n".join(failures)


async def test_a_submission_that_cannot_be_published_is_not_stored(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    """The API stores a run, then publishes it; when JetStream refuses the publish (here
    for real: its stream is gone), the stored run is removed and the client gets a 503."""
    import nats

    from helios.subjects import STREAMS

    nc = await nats.connect(stack.settings.nats.url)
    try:
        await nc.jetstream().delete_stream(STREAMS.commands)
    finally:
        await nc.close()
    fuzz = Fuzzer(http, stack.api_url)
    body = json.dumps(run_doc("lost", {"name": "a", "image": "i", "command": ["true"]})).encode()
    out = await fuzz.send("POST", "/api/v1/dags", body=body,
                          headers={"Content-Type": "application/json"})
    ids, _ = await stored_runs(stack)
    assert out.status == 503, (out.status, out.body)
    assert out.body["status"] == 503 and "nothing was stored" in out.body["detail"]
    assert ids <= fuzz.accepted, f"a rejected submission left run(s) {ids} stored"
    assert not fuzz.failures, "\n".join(fuzz.failures)


# --------------------------------------------------------------------------- what runs

METACHARACTERS = [
    "a; touch /artifacts/p1", "$(touch /artifacts/p2)", "`touch /artifacts/p3`",
    "| touch /artifacts/p4", "&& touch /artifacts/p5", "\ntouch /artifacts/p6",
    "> /artifacts/p7", "${IFS}touch${IFS}/artifacts/p8", "'; touch /artifacts/p9; '",
]
PWNED = [f"p{i}" for i in range(1, 10)]


async def test_shell_metacharacters_are_literal_arguments(stack: Stack, http: aiohttp.ClientSession) -> None:
    run = await submit(http, stack.api_url, run_doc(
        "argv",
        {"name": "echo", "image": "i", "command": ["echo", METACHARACTERS[0]],
         "args": METACHARACTERS[1:], "env": {"X": "$(touch /artifacts/p10)"},
         "outputs": PWNED},
        # A shell that expands "$X" once must not evaluate what is inside it.
        {"name": "shell", "image": "i", "command": ["/bin/sh", "-c", 'printf "%s\\n" "$X"'],
         "env": {"X": "$(touch /artifacts/p10) `touch /artifacts/p11`"},
         "outputs": ["p10", "p11"]},
    ))
    status = await wait_run(http, stack.api_url, run["dagId"])
    tasks = {t["name"]: t for t in status["tasks"]}
    for name, expected in (("echo", PWNED), ("shell", ["p10", "p11"])):
        task = tasks[name]
        assert task["exitCode"] == 0, task
        assert (task["state"], task["reason"]) == ("FAILED", "MissingOutputs"), task
        assert all(p in task["message"] for p in expected), task["message"]
    async with http.get(f"{stack.api_url}/api/v1/dags/{run['dagId']}/tasks/echo/logs") as resp:
        lines = (await resp.json())["lines"]
    printed = " ".join(METACHARACTERS)
    assert printed.split("\n")[0] in lines, lines
    async with http.get(f"{stack.api_url}/api/v1/dags/{run['dagId']}/tasks/shell/logs") as resp:
        assert "$(touch /artifacts/p10) `touch /artifacts/p11`" in (await resp.json())["lines"]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="the local sandbox needs bwrap")
async def test_task_env_does_not_reach_the_process_outside_the_sandbox(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    """Bug (security): the task's `env` is the environment of the host-side `bwrap`
    process itself, so the dynamic loader honours LD_PRELOAD/LD_LIBRARY_PATH/... from the
    user *before* the sandbox exists. With `LD_PRELOAD` naming a node-cache entry (its
    path is `$HELIOS_CACHE_DIR/sha256/xx/<sha256>`, known in advance) a DAG runs its own
    code on the host, outside the sandbox. LD_DEBUG shows the loader at work in bwrap."""
    assert stack.settings.local.sandbox == "bwrap"
    run = await submit(http, stack.api_url, run_doc("loader", {
        "name": "a", "image": "i", "command": ["/bin/true"], "env": {"LD_DEBUG": "files"}}))
    await wait_run(http, stack.api_url, run["dagId"])
    async with http.get(f"{stack.api_url}/api/v1/dags/{run['dagId']}/tasks/a/logs") as resp:
        lines = (await resp.json())["lines"]
    outside = [line for line in lines if "bwrap" in line]
    assert not outside, "the user's loader settings applied to bwrap:\n" + "\n".join(outside[:5])
