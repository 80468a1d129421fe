"""The restart policy as plain functions, and the supervisor over tiny real children."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from helios.devstack.procs import free_port, listens
from helios.devstack.stack import data_dir_lock
from helios.devstack.supervise import ChildSpec, RestartPolicy, Supervisor
from tests.devstack.devproc import HELIOS


def test_backoff_doubles_up_to_a_cap() -> None:
    policy = RestartPolicy(first_delay_s=0.25, max_delay_s=2.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_gives_up_only_on_crashes_within_the_window() -> None:
    policy = RestartPolicy(max_crashes=3, window_s=60)
    assert policy.gives_up([100.0, 130.0, 150.0], now=150.0)
    assert not policy.gives_up([10.0, 130.0, 150.0], now=150.0)  # the first one aged out
    assert policy.recent([10.0, 130.0], now=150.0) == [130.0]


def listener(tmp: Path, port: int) -> ChildSpec:
    code = ("import socket, time; s = socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(600)")
    return ChildSpec("listener", "server", [sys.executable, "-c", code], tmp / "listener.log",
                     port=port, grace_s=2)


async def test_a_killed_child_comes_back_on_its_port(tmp_path: Path) -> None:
    changed = asyncio.Event()
    sup = Supervisor(RestartPolicy(first_delay_s=0.01), on_change=changed.set)
    port = free_port()
    try:
        child = await sup.start(listener(tmp_path, port))
        first = child.proc
        assert first and listens(first.pid, port)
        os.kill(first.pid, signal.SIGKILL)
        async with asyncio.timeout(60):
            while not (child.restarts == 1 and child.state == "running"):
                changed.clear()
                await changed.wait()
        assert child.proc and child.proc.pid != first.pid and listens(child.proc.pid, port)
        assert child.last_exit == -signal.SIGKILL
        assert not sup.failed.is_set()
    finally:
        await sup.stop()
    assert child.state == "stopped" and child.proc.returncode is not None


async def test_a_crash_loop_gives_up_with_the_reason(tmp_path: Path) -> None:
    sup = Supervisor(RestartPolicy(first_delay_s=0.01, max_crashes=3, window_s=60))
    spec = ChildSpec("flaky", "service", [sys.executable, "-c", "raise SystemExit(3)"],
                     tmp_path / "flaky.log")
    try:
        await sup.start(spec)
        await asyncio.wait_for(sup.failed.wait(), 60)
    finally:
        await sup.stop()
    assert sup.failure and sup.failure.startswith("flaky crashed 3 times within 60s (last exit code 3)")
    assert sup.children["flaky"].restarts == 2


async def test_a_second_helios_dev_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with data_dir_lock(data):
        proc = await asyncio.create_subprocess_exec(
            *HELIOS, "dev", "--data-dir", str(data), "--port", str(free_port()),
            "--metrics-port", str(free_port()), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert err.decode().strip() == (f"helios dev: {data.resolve()} is in use by another helios dev "
                                    f"(pid {os.getpid()}) or by its servers still stopping")
    assert not (data / "valkey").exists()


def flaky_listener(tmp: Path, port: int, fails: int) -> ChildSpec:
    """Exits with 4 on its first `fails` starts (counted in a file), then listens."""
    code = (f"import pathlib, socket, sys, time; n = pathlib.Path({str(tmp / 'starts')!r}); "
            "k = int(n.read_text()) if n.exists() else 0; n.write_text(str(k + 1)); "
            f"k < {fails} and sys.exit(4); "
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(600)")
    return ChildSpec("flaky", "service", [sys.executable, "-c", code], tmp / "flaky.log",
                     port=port, grace_s=2)


async def test_a_child_that_dies_while_starting_is_started_again(tmp_path: Path) -> None:
    sup = Supervisor(RestartPolicy(first_delay_s=0.01, max_crashes=5))
    port = free_port()
    try:
        child = await sup.start(flaky_listener(tmp_path, port, fails=2))
        assert child.proc and listens(child.proc.pid, port)
        assert child.state == "running" and len(child.crashes) == 2 and child.last_exit == 4
    finally:
        await sup.stop()


async def test_a_child_that_never_starts_gives_up_naming_its_log(tmp_path: Path) -> None:
    sup = Supervisor(RestartPolicy(first_delay_s=0.01, max_crashes=3))
    try:
        with pytest.raises(RuntimeError) as failed:
            await sup.start(flaky_listener(tmp_path, free_port(), fails=99))
    finally:
        await sup.stop()
    assert (tmp_path / "starts").read_text() == "3"
    assert str(failed.value) == (f"process exited with 4 before listening on "
                                 f"{sup.children['flaky'].spec.port} (3 attempts); "
                                 f"see {tmp_path / 'flaky.log'}")


def test_free_ports_are_never_handed_out_twice_and_stay_in_the_range(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HELIOS_PORT_CLAIMS_DIR", str(tmp_path))
    monkeypatch.setenv("HELIOS_PORT_RANGE", "41000-41300")
    # Another process (another test worker, a `helios dev`) claimed these first.
    for port in range(41000, 41100):
        (tmp_path / str(port)).touch()
    picks = [free_port() for _ in range(150)]
    assert len(set(picks)) == 150 and all(41100 <= p < 41300 for p in picks)
    assert {int(f.name) for f in tmp_path.iterdir()} >= set(picks)  # seen by the others
