"""`helios dev` restarts a child that dies, shows it in /system/status, gives up with a
clear message on a crash loop, and refuses to start on a port that is taken."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helios.devstack.procs import free_port, listens
from tests.devstack.devproc import HELIOS, Dev, eventually
from tests.devstack.test_durable import SEED, ended, submit


def restarts(status: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["restarts"] for p in status.get("processes", [])
            if p["state"] == "running"}


# Valkey alone: redis-py's pool holds a dead connection per pooled connection after it
# restarts; `helios.store.open_redis` retries on a fresh one, so no attempt fails.
@pytest.mark.parametrize("killed", [
    ("scheduler", "nats", "s3"),
    ("valkey",),
])
async def test_killed_services_and_servers_are_restarted_and_reconnected(
        dev: Dev, http: aiohttp.ClientSession, killed: tuple[str, ...]) -> None:
    await dev.start()
    before = dev.children()
    assert set(before) == {"api", "scheduler", "watcher", "metrics", "nats", "valkey", "s3"}
    for name in killed:
        os.kill(before[name], signal.SIGKILL)

    async def all_back() -> dict[str, Any] | None:
        status = await dev.status(http)
        counts = restarts(status)
        return status if all(counts.get(n) == 1 for n in killed) else None

    status = await eventually(all_back, 120, "killed children restarted")
    expected = {n: int(n in killed) for n in before}
    assert {s["name"]: s.get("restarts") for s in status["services"]} == {
        n: expected[n] for n in ("api", "scheduler", "watcher", "metrics")}
    assert {s["name"]: s.get("restarts") for s in status["stores"]} == {
        "nats": expected["nats"], "redis": expected["valkey"], "s3": expected["s3"]}
    after = dev.children()
    assert all((after[n] != before[n]) == (n in killed) for n in before)  # the rest kept running

    async def healthy() -> bool:
        return (await dev.status(http))["status"] == "ok"

    await eventually(healthy, 60, "status ok again")
    # Same port, same credentials: the services' consumers resume and a run goes through.
    dag_id = await submit(dev, http, SEED)
    final = await ended(dev, http, dag_id, 120)
    assert final["status"] == "SUCCEEDED", final["tasks"]
    assert all(any(f"{n} restarted" in line for line in dev.output) for n in killed)


async def test_a_child_that_keeps_crashing_stops_helios_dev_with_a_clear_message(dev: Dev) -> None:
    await dev.start()
    assert dev.proc
    killed: set[int] = set()
    for _ in range(5):
        pid = await eventually(lambda: _new_metrics(dev, killed), 90, "metrics back")
        killed.add(pid)
        os.kill(pid, signal.SIGKILL)
    code = await asyncio.wait_for(dev.proc.wait(), 120)
    await asyncio.wait_for(dev._drain, 10)
    out = "".join(dev.output)
    assert code == 1, out
    assert "helios dev: metrics crashed 5 times within 60s" in out
    assert dev.children() == {}


async def _new_metrics(dev: Dev, killed: set[int]) -> int | None:
    if dev.proc is None or dev.proc.returncode is not None:
        raise AssertionError("helios dev exited early:\n" + "".join(dev.output))
    pid = dev.children().get("metrics")
    # Back = a new process that holds the metrics port again.
    return pid if pid and pid not in killed and listens(pid, dev.metrics_port) else None


@pytest.mark.parametrize("which", ["--port", "--metrics-port"])
async def test_a_port_in_use_is_refused_with_one_line(tmp_path: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--port": str(free_port()), "--metrics-port": str(free_port()), which: str(port)}
        proc = await asyncio.create_subprocess_exec(
            *HELIOS, "dev", "--data-dir", str(tmp_path / "data"), *(x for kv in ports.items() for x in kv),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert lines == [f"helios dev: port {port} ({'api' if which == '--port' else 'metrics'}) is "
                     f"already in use on 127.0.0.1; stop what listens there or pick another port"]
    assert "ready" not in out.decode()


def test_listens_tells_our_listener_from_anyone_elses() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert listens(os.getpid(), port)
        assert not listens(os.getppid(), port)
    assert not listens(os.getpid(), port)


