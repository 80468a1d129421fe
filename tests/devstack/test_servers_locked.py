"""Every port of the embedded servers needs this start's credentials. NATS and Valkey
ask for a token and a password. Only the S3 gateway of SeaweedFS serves clients, and only with the
stack's keys: master, volume, filer and admin refuse anonymous reads and writes
over HTTP, and every gRPC port demands a client certificate made at this start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats
import pytest
import redis
import redis.asyncio as aioredis

from helios.devstack.servers import Endpoints, Ports, backing_servers
from helios.devstack.stack import create_bucket
from helios.s3 import open_s3
from helios.settings import S3Settings

KEY = "dags/someone/tasks/t/outputs/secret.txt"


@pytest.fixture(scope="module")
async def weed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Endpoints, Ports, Path]]:
    data = tmp_path_factory.mktemp("locked")
    ports = Ports().fill()
    async with backing_servers(data, ports) as ep:
        await create_bucket(ep)
        settings = S3Settings(endpoint_url=ep.s3_url, bucket=ep.bucket, access_key_id=ep.access_key,  # type: ignore[arg-type]
                              secret_access_key=ep.secret_key)  # type: ignore[arg-type]
        async with open_s3(settings) as s3:
            await s3.put_object(Bucket=ep.bucket, Key=KEY, Body=b"private")
        yield ep, ports, data


async def test_the_s3_gateway_serves_with_credentials_only(weed: tuple[Endpoints, Ports, Path]) -> None:
    ep, _, _ = weed
    settings = S3Settings(endpoint_url=ep.s3_url, bucket=ep.bucket, access_key_id=ep.access_key,  # type: ignore[arg-type]
                          secret_access_key=ep.secret_key)  # type: ignore[arg-type]
    async with open_s3(settings) as s3:
        obj = await s3.get_object(Bucket=ep.bucket, Key=KEY)
        assert await obj["Body"].read() == b"private"
    async with aiohttp.ClientSession() as http:
        for method in ("GET", "PUT", "DELETE"):
            async with http.request(method, f"{ep.s3_url}/{ep.bucket}/{KEY}", data=b"x") as resp:
                assert resp.status == 403, method


async def test_internal_http_ports_refuse_anonymous_reads_and_writes(
        weed: tuple[Endpoints, Ports, Path]) -> None:
    ep, ports, _ = weed
    master, volume, filer, admin = (ports.weed[i] for i in (0, 2, 4, 7))
    attempts = [
        ("GET", master, "/dir/assign"), ("GET", master, "/dir/lookup?volumeId=1"),
        ("GET", master, "/vol/status"), ("POST", master, "/vol/grow?count=1"),
        ("GET", volume, "/1,0100000000"), ("POST", volume, "/1,0100000000"),
        ("DELETE", volume, "/1,0100000000"),
        ("GET", filer, f"/buckets/{ep.bucket}/{KEY}"), ("GET", filer, f"/buckets/{ep.bucket}/"),
        ("POST", filer, f"/buckets/{ep.bucket}/{KEY}"), ("DELETE", filer, f"/buckets/{ep.bucket}/{KEY}"),
        ("GET", admin, "/"), ("GET", admin, "/api/s3/buckets"),
    ]
    async with aiohttp.ClientSession() as http:
        for method, port, path in attempts:
            form = aiohttp.FormData()
            form.add_field("file", b"overwritten", filename="secret.txt")
            async with http.request(method, f"http://127.0.0.1:{port}{path}",
                                    data=form if method == "POST" else None,
                                    allow_redirects=False) as resp:
                body = await resp.read()
                assert resp.status in (401, 403, 404, 405), (method, port, path, resp.status, body)
                assert b"private" not in body
    # And the object is untouched.
    settings = S3Settings(endpoint_url=ep.s3_url, bucket=ep.bucket, access_key_id=ep.access_key,  # type: ignore[arg-type]
                          secret_access_key=ep.secret_key)  # type: ignore[arg-type]
    async with open_s3(settings) as s3:
        obj = await s3.get_object(Bucket=ep.bucket, Key=KEY)
        assert await obj["Body"].read() == b"private"


async def _grpc_hello(port: int, cert: tuple[Path, Path] | None) -> bytes:
    """A TLS handshake as a gRPC client would make it, then the server's first bytes."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 10)
    try:
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(9), 10)
    finally:
        writer.close()


async def test_grpc_ports_demand_a_client_certificate(weed: tuple[Endpoints, Ports, Path]) -> None:
    _, ports, data = weed
    tls = data / "s3" / "tls"
    for port in (ports.weed[i] for i in (1, 3, 5, 6, 8)):  # master, volume, filer, s3, admin
        with pytest.raises((ssl.SSLError, ConnectionError)):
            if not await _grpc_hello(port, None):
                raise ConnectionError("closed")
        # The same handshake with the start's certificate goes through: the key is the gate.
        assert await _grpc_hello(port, (tls / "node.crt", tls / "node.key"))
    assert oct((tls / "node.key").stat().st_mode & 0o777) == "0o600"
    assert not (tls / "ca.key").exists()
    for server in ("s3", "nats", "valkey"):  # nobody else reads the servers' files off disk
        assert (data / server).stat().st_mode & 0o777 == 0o700


async def test_nats_and_valkey_refuse_clients_without_the_start_credentials(
        weed: tuple[Endpoints, Ports, Path]) -> None:
    ep, ports, data = weed
    with pytest.raises(Exception, match=r"(?i)authoriz"):
        await nats.connect(f"nats://127.0.0.1:{ports.nats}", allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=5)
    anonymous = aioredis.Redis(host="127.0.0.1", port=ports.redis, socket_timeout=5)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await anonymous.get("anything")
    finally:
        await anonymous.aclose()
    # The secrets are in 0600 files, not on command lines every local user can read.
    secrets = [ep.access_key, ep.secret_key, ep.nats_url.split("@")[0].split("//")[1],
               ep.redis_url.split("@")[0].split(":")[-1]]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                assert not any(s in cmdline for s in secrets), cmdline
    for conf in (data / "nats" / "auth.conf", data / "valkey" / "auth.conf"):
        assert conf.stat().st_mode & 0o777 == 0o600
