"""The API's bearer tokens over real sockets: scopes, 401/403 with WWW-Authenticate,
public routes and public reads, cross-site form posts, the JSON rule when auth is off,
the tokens file re-read, start-up refusals, no token in any log line, and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helios.devstack.procs import free_port
from helios.logs import JsonFormatter
from helios.settings import AuthSettings, HttpSettings, Settings
from services.api.auth import AuthConfigError
from services.api.service import serve as serve_api
from tests.conftest import READ_TOKEN, WRITE_TOKEN, write_tokens_file
from tests.stack import Stack, doc, sh, submit, wait_run

PROBLEM = "application/problem+json"
REALM = 'Bearer realm="helios"'
HELIOS = [sys.executable, "-m", "helios.cli.main"]
DAG = doc("auth", sh("one", "true"))
RUN_ID = "0" * 32


@contextlib.asynccontextmanager
async def api_only(settings: Settings, auth: AuthSettings | None = None) -> AsyncIterator[str]:
    """Just the API (the scheduler is not needed to judge who may call it)."""
    port = free_port()
    stack = Stack(settings, f"http://127.0.0.1:{port}", "http://127.0.0.1:1")
    stack.serves = {"api": (serve_api, settings.model_copy(update={
        "http": HttpSettings(host="127.0.0.1", port=port), "auth": auth or settings.auth}))}
    await stack.start("api")
    try:
        yield stack.api_url
    finally:
        await stack.stop("api")


async def until(probe: Callable[[], Awaitable[object]], wanted: object, timeout_s: float = 30.0) -> None:
    """Poll `probe` until it returns `wanted` (a file change is seen within reload_s)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await probe() == wanted:
                return
            await asyncio.sleep(0.05)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[str]:
    async with api_only(settings) as url:
        yield url


@pytest.fixture
async def anon() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(session: aiohttp.ClientSession, method: str, url: str,
               **kwargs: Any) -> tuple[int, Any, Any]:
    async with session.request(method, url, **kwargs) as resp:
        body = await resp.json(content_type=None) if resp.content_type != "text/html" else None
        return resp.status, resp.headers, body


async def test_read_tokens_read_and_write_tokens_also_write(api: str, anon: aiohttp.ClientSession) -> None:
    status, _, run = await call(anon, "POST", f"{api}/api/v1/dags", json=DAG, headers=bearer(WRITE_TOKEN))
    assert status == 201, run
    dag_id = run["dagId"]
    for path in (f"/dags/{dag_id}", f"/dags/{dag_id}/tasks/one/logs", "/system/status"):
        status, _, body = await call(anon, "GET", f"{api}/api/v1{path}", headers=bearer(READ_TOKEN))
        assert status == 200, (path, body)

    for method, path, kwargs in (
        ("POST", "/dags", {"json": DAG}),
        ("POST", f"/dags/{dag_id}/cancel", {}),
        ("POST", f"/dags/{dag_id}/retry", {}),
    ):
        status, headers, body = await call(anon, method, f"{api}/api/v1{path}",
                                           headers=bearer(READ_TOKEN), **kwargs)
        assert status == 403, (path, body)
        assert headers["Content-Type"] == PROBLEM and body["status"] == 403
        assert headers["WWW-Authenticate"] == f'{REALM}, error="insufficient_scope", scope="write"'

    status, _, body = await call(anon, "POST", f"{api}/api/v1/dags/{dag_id}/cancel",
                                 headers=bearer(WRITE_TOKEN))
    assert status == 202, body
    status, _, body = await call(anon, "POST", f"{api}/api/v1/dags/{RUN_ID}/retry",
                                 headers=bearer(WRITE_TOKEN))
    assert status == 404, body  # past the door: the run does not exist


@pytest.mark.parametrize("headers", [
    {}, bearer("not-a-configured-token-123"), {"Authorization": f"Basic {WRITE_TOKEN}"},
    {"Authorization": "Bearer"}, bearer(WRITE_TOKEN[:-1]),
])
async def test_a_missing_or_unknown_token_is_401(api: str, anon: aiohttp.ClientSession,
                                                 headers: dict[str, str]) -> None:
    for method, path in (("GET", f"/dags/{RUN_ID}"), ("GET", f"/dags/{RUN_ID}/events"),
                         ("GET", "/dags/cache-test/metrics"), ("GET", "/system/status"),
                         ("POST", "/dags"), ("POST", f"/dags/{RUN_ID}/cancel"),
                         ("GET", "/no/such/route")):
        status, got, body = await call(anon, method, f"{api}/api/v1{path}", headers=headers)
        assert status == 401, (path, body)
        assert got["Content-Type"] == PROBLEM
        assert body["title"] == "Unauthorized" and body["status"] == 401
        challenge = got["WWW-Authenticate"]
        known_scheme = headers.get("Authorization", "").startswith("Bearer ") and len(
            headers["Authorization"]) > len("Bearer ")
        assert challenge == (f'{REALM}, error="invalid_token"' if known_scheme else REALM)
    async with anon.get(f"{api}/metrics") as resp:  # counted for operators, never logged
        reason = "unknown" if known_scheme else "missing"
        assert f'helios_api_auth_refused_total{{reason="{reason}"}}' in await resp.text()


async def test_probes_metrics_page_and_openapi_stay_public(api: str, anon: aiohttp.ClientSession) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/", "/api/v1/openapi.json"):
        async with anon.get(api + path) as resp:
            assert resp.status == 200, path
    _, _, document = await call(anon, "GET", f"{api}/api/v1/openapi.json")
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"bearerAuth": []}]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "401" in operation["responses"], (path, method)
            assert ("403" in operation["responses"]) == (method not in ("get", "head")), \
                (path, method)


async def test_public_reads_need_no_token_but_writes_do(settings: Settings,
                                                        anon: aiohttp.ClientSession) -> None:
    auth = settings.auth.model_copy(update={"public_reads": True})
    async with api_only(settings, auth) as api:
        status, _, run = await call(anon, "POST", f"{api}/api/v1/dags", json=DAG,
                                    headers=bearer(WRITE_TOKEN))
        assert status == 201
        status, _, body = await call(anon, "GET", f"{api}/api/v1/dags/{run['dagId']}")
        assert status == 200 and body["dagId"] == run["dagId"]
        status, _, _ = await call(anon, "GET", f"{api}/api/v1/system/status")
        assert status == 200
        status, headers, _ = await call(anon, "POST", f"{api}/api/v1/dags/{run['dagId']}/cancel")
        assert status == 401 and headers["WWW-Authenticate"] == REALM
        status, _, _ = await call(anon, "POST", f"{api}/api/v1/dags", json=DAG)
        assert status == 401
        # A token that is presented is still checked.
        status, _, _ = await call(anon, "GET", f"{api}/api/v1/dags/{run['dagId']}",
                                  headers=bearer("not-a-configured-token-123"))
        assert status == 401


CROSS_SITE = {"Origin": "https://evil.example", "Referer": "https://evil.example/page",
              "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}


async def test_a_cross_site_form_post_cannot_cancel_a_run(stack: Stack, http: aiohttp.ClientSession,
                                                         anon: aiohttp.ClientSession) -> None:
    """What a hostile page can make a browser send: a form post, no Authorization header."""
    run = await submit(http, stack.api_url, doc("xsite", sh("long", "sleep 60")))
    url = f"{stack.api_url}/api/v1/dags/{run['dagId']}"
    for data, ctype in ((b"", "application/x-www-form-urlencoded"), (b"a=b", "text/plain"),
                        (b"--x--\r\n", "multipart/form-data; boundary=x")):
        for action in ("cancel", "retry"):
            status, _, _ = await call(anon, "POST", f"{url}/{action}", data=data,
                                      headers={**CROSS_SITE, "Content-Type": ctype})
            assert status == 401
    status, _, body = await call(anon, "POST", f"{stack.api_url}/api/v1/dags", data=b"dagName=x",
                                 headers={**CROSS_SITE, "Content-Type": "text/plain"})
    assert status == 401, body
    status, _, state = await call(http, "GET", url)
    assert state["status"] == "RUNNING" and state["generation"] == 0
    # The same request with the token does what it says.
    status, _, _ = await call(http, "POST", f"{url}/cancel")
    assert status == 202
    assert (await wait_run(http, stack.api_url, run["dagId"], timeout_s=60))["status"] == "CANCELLED"


async def test_with_auth_disabled_mutations_must_be_json(settings: Settings,
                                                         anon: aiohttp.ClientSession) -> None:
    async with api_only(settings, AuthSettings(disabled=True)) as api:
        status, _, run = await call(anon, "POST", f"{api}/api/v1/dags", json=DAG)
        assert status == 201, run
        url = f"{api}/api/v1/dags/{run['dagId']}"
        status, _, body = await call(anon, "GET", url)
        assert status == 200, body
        for action in ("cancel", "retry"):
            # A body-less cross-site POST, and the content types a form or a beacon can send.
            for headers in ({}, {"Content-Type": "application/x-www-form-urlencoded"},
                            {"Content-Type": "text/plain"}, {"Content-Type": "application/yaml"}):
                async with anon.post(f"{url}/{action}", headers={**CROSS_SITE, **headers},
                                     skip_auto_headers=["Content-Type"]) as resp:
                    assert resp.status == 415, (action, headers)
                    assert resp.content_type == PROBLEM
        status, _, body = await call(anon, "POST", f"{api}/api/v1/dags", data=b"dagName=x",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 415, body
        yaml_dag = 'apiVersion: v1\ndagName: "auth"\ntasks:\n  - {name: one, image: x, command: ["true"]}\n'
        status, _, body = await call(anon, "POST", f"{api}/api/v1/dags", data=yaml_dag,
                                     headers={"Content-Type": "application/yaml"})
        assert status == 201, body
        status, _, body = await call(anon, "POST", f"{url}/cancel",
                                     headers={"Content-Type": "application/json"})
        assert status == 202, body


async def test_the_api_refuses_to_start_without_tokens(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match=r"HELIOS_AUTH_TOKENS_FILE.*HELIOS_AUTH_DISABLED"):
        async with api_only(settings, AuthSettings()):
            pass
    secret = "a-secret-token-in-a-bad-line"
    bad = write_tokens_file(tmp_path / "bad", f"write {WRITE_TOKEN}", f"{secret} read")
    with pytest.raises(AuthConfigError, match="line 2") as err:
        async with api_only(settings, AuthSettings(tokens_file=bad)):
            pass
    assert secret not in str(err.value) and WRITE_TOKEN not in str(err.value)
    empty = write_tokens_file(tmp_path / "empty", "# nobody yet")
    with pytest.raises(AuthConfigError, match="no token"):
        async with api_only(settings, AuthSettings(tokens_file=empty)):
            pass
    with pytest.raises(AuthConfigError, match="cannot read"):
        async with api_only(settings, AuthSettings(tokens_file=tmp_path / "missing")):
            pass


async def test_the_api_process_exits_at_once_saying_why(tmp_path: Path) -> None:
    """`python -m services.api` with no tokens configured: one plain line, exit 1, and
    no attempt to reach anything first (the NATS URL here answers nothing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIOS_")}
    env.update(HELIOS_NATS_URL=f"nats://127.0.0.1:{free_port()}", HELIOS_HTTP_PORT="0")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.api", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    first = json.loads(out.decode().splitlines()[0])
    assert first["level"] == "error" and first["msg"].startswith("the API cannot start: ")
    assert "HELIOS_AUTH_TOKENS_FILE" in first["msg"] and "HELIOS_AUTH_DISABLED" in first["msg"]


async def test_a_changed_tokens_file_is_picked_up(settings: Settings, tmp_path: Path,
                                                  anon: aiohttp.ClientSession,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A rotated Secret: the new token works and the revoked one stops, without a restart;
    a broken edit keeps the tokens that were in force."""
    old, new = "old-token-" + "o" * 16, "new-token-" + "n" * 16
    tokens = write_tokens_file(tmp_path / "tokens", f"write {old}")
    async with api_only(settings, AuthSettings(tokens_file=tokens, reload_s=0.05)) as api:
        url = f"{api}/api/v1/dags/{RUN_ID}"

        async def status_with(token: str) -> int:
            async with anon.get(url, headers=bearer(token)) as resp:
                return resp.status

        assert await status_with(old) == 404 and await status_with(new) == 401
        # Written next to it and renamed over it, the way a Secret volume swaps its files.
        write_tokens_file(tmp_path / "tokens.next", f"read {new}", "# rotated")
        os.replace(tmp_path / "tokens.next", tokens)
        await until(lambda: status_with(new), 404)
        assert await status_with(old) == 401
        write_tokens_file(tmp_path / "tokens.next", f"read {new}", "write short")
        os.replace(tmp_path / "tokens.next", tokens)

        async def bad_edit_seen() -> bool:
            assert await status_with(new) == 404  # never a moment without the old tokens
            return any("not reloaded" in r.getMessage() for r in caplog.records)

        await until(bad_edit_seen, True)  # seen, logged, and ignored
        assert await status_with(new) == 404 and await status_with(old) == 401


async def test_no_token_reaches_any_log_line(api: str, anon: aiohttp.ClientSession,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-but-plausible-token-0123"
    status, _, run = await call(anon, "POST", f"{api}/api/v1/dags", json=DAG, headers=bearer(WRITE_TOKEN))
    assert status == 201
    for token in (WRITE_TOKEN, READ_TOKEN, wrong):
        for method, path in (("GET", f"/dags/{run['dagId']}"), ("POST", f"/dags/{run['dagId']}/retry"),
                             ("GET", f"/dags/{run['dagId']}/tasks/nope/logs"), ("GET", "/nowhere"),
                             ("POST", "/dags")):
            async with anon.request(method, f"{api}/api/v1{path}", headers=bearer(token),
                                    data=b"{not json", allow_redirects=False) as resp:
                await resp.read()
    assert caplog.records, "the API logged nothing at DEBUG: the capture is not working"
    formatter = JsonFormatter("api")
    text = caplog.text + "\n".join(formatter.format(r) for r in caplog.records)
    for token in (WRITE_TOKEN, READ_TOKEN, wrong):
        assert token not in text
    assert "Bearer" not in text and "Authorization" not in text


async def cli(api: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *HELIOS, "--api", api, *args, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_the_cli_sends_its_token(api: str, tmp_path: Path) -> None:
    dag = tmp_path / "dag.yaml"
    dag.write_text('apiVersion: v1\ndagName: "auth"\ntasks:\n  - {name: one, image: x, command: ["true"]}\n')
    code, out = await cli(api, "submit", str(dag), cwd=tmp_path)
    assert code == 2 and "Unauthorized" in out and "HELIOS_TOKEN" in out, out

    code, out = await cli(api, "submit", str(dag), cwd=tmp_path, env={"HELIOS_TOKEN": WRITE_TOKEN})
    assert code == 0 and "submitted auth as" in out, out
    dag_id = out.split("submitted auth as ")[1].split()[0]

    code, out = await cli(api, "status", dag_id, cwd=tmp_path, env={"HELIOS_TOKEN": READ_TOKEN})
    assert code == 0 and dag_id in out, out
    code, out = await cli(api, "cancel", dag_id, cwd=tmp_path, env={"HELIOS_TOKEN": READ_TOKEN})
    assert code == 2 and "Forbidden" in out and "write" in out, out

    # As after `helios dev` in this folder: ./.helios/auth/token, found without being told.
    token_file = tmp_path / ".helios" / "auth" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(WRITE_TOKEN + "\n")
    code, out = await cli(api, "cancel", dag_id, cwd=tmp_path)
    assert code == 0 and "cancelling" in out, out
    code, out = await cli(api, "--token", READ_TOKEN, "status", dag_id, cwd=tmp_path)
    assert code == 0, out
