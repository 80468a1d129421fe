"""A TCP relay that puts the S3 gateway, and only it, on an address pods can reach.

`weed mini` binds every one of its servers to one address (`-ip.bind`). With tasks on a
cluster, pods must reach S3, but the master, volume and filer servers must stay on
loopback. So SeaweedFS keeps listening on 127.0.0.1 and `helios dev` forwards one port of
the advertised address to the S3 gateway, byte for byte (SigV4 signs the Host header
the client sent, which the relay leaves untouched). What a pod reaches there is the
gateway itself, so it needs the stack's keys like any other client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
MAX_CONNECTIONS = 256  # pods of one laptop stack; more wait for a slot
CONNECT_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 300.0  # a connection silent both ways this long is dropped


@dataclass(frozen=True)
class Relay:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close so the other side sees the end too."""
    while True:
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            data = await reader.read(CHUNK)
        if not data:
            break
        writer.write(data)
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 5)


class _Forwarder:
    """One connection at a time per slot; every open client is known so a stop cuts it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.clients: set[asyncio.StreamWriter] = set()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
                     ) -> None:
        self.clients.add(client_w)
        peer = client_w.get_extra_info("peername")
        try:
            async with self.slots:
                try:
                    up_r, up_w = await asyncio.wait_for(
                        asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S)
                except (OSError, TimeoutError) as exc:
                    # SeaweedFS is restarting: the client's S3 retries take it from here.
                    log.warning("s3 relay: gateway unreachable for %s: %s", peer, exc)
                    return
                try:
                    # One direction ending (EOF or error) is not the end: a client that
                    # half-closed still reads the answer. Both ending is.
                    await asyncio.gather(_pump(client_r, up_w), _pump(up_r, client_w),
                                         return_exceptions=True)
                finally:
                    await _close(up_w)
        finally:
            self.clients.discard(client_w)
            await _close(client_w)

    def cut(self) -> None:
        for writer in list(self.clients):
            writer.close()


@contextlib.asynccontextmanager
async def s3_relay(listen_host: str, listen_port: int, target_host: str, target_port: int
                   ) -> AsyncIterator[Relay]:
    """Serve `listen_host:listen_port` (0: a free port) as a relay to the target."""
    forwarder = _Forwarder(target_host, target_port)
    server = await asyncio.start_server(forwarder.handle, listen_host, listen_port,
                                        reuse_address=True)
    port = int(server.sockets[0].getsockname()[1])
    log.info("s3 relay on %s:%d -> %s:%d", listen_host, port, target_host, target_port)
    try:
        yield Relay(listen_host, port)
    finally:
        server.close()
        forwarder.cut()  # a pod mid-transfer is cut: the stack is stopping anyway
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)
