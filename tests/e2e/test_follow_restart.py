"""`helios submit --follow` rides through an API restart: the stream the draining API
closes, and the refused connections while it is down, are resumed with `Last-Event-ID`
until the terminal event; nothing is lost or shown twice, and the exit code is the run's.

The run is held at a gate the test controls (a task that waits until a TCP port on this
machine accepts), so the restart happens while the run is certainly in flight.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from helios.cli.client import Client
from helios.cli.feed import FeedEvent
from helios.devstack.procs import free_port
from helios.settings import LocalExecutorSettings, Settings
from tests.conftest import WRITE_TOKEN
from tests.stack import Stack, follow, running_stack

HELIOS = [sys.executable, "-m", "helios.cli.main"]
WAIT_S = 60.0


@pytest.fixture
async def stack(settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    # The gate task reaches the test over loopback: the host network, whatever the default.
    local = LocalExecutorSettings(work_dir=tmp_path / "work", network="host")
    async with running_stack(settings.model_copy(update={"local": local})) as running:
        yield running


def gated_dag(port: int) -> str:
    wait = f"until (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.05; done"
    return f"""apiVersion: v1
dagName: follow-restart
tasks:
  - name: gate
    image: debian:12
    command: ["/bin/bash", "-c", "{wait}; echo opened > /artifacts/out.txt"]
    outputs: [out.txt]
  - name: after
    image: debian:12
    command: ["/bin/cat", "/artifacts/in.txt"]
    inputs: [{{fromTask: gate, name: in.txt}}]
"""


class Lines:
    """A process's output stream, line by line, with a way to wait for a line."""

    def __init__(self, stream: asyncio.StreamReader):
        self.lines: list[str] = []
        self.changed = asyncio.Condition()
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            async with self.changed:
                self.lines.append(line.decode().rstrip("\n"))
                self.changed.notify_all()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        async with asyncio.timeout(WAIT_S), self.changed:
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                await self.changed.wait()


async def test_cli_follow_survives_an_api_restart(
    stack: Stack, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    gate_port = free_port()
    dag = tmp_path / "dag.yaml"
    dag.write_text(gated_dag(gate_port))
    cli = await asyncio.create_subprocess_exec(
        *HELIOS, "--api", stack.api_url, "submit", str(dag), "--follow",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HELIOS_TOKEN": WRITE_TOKEN},
    )
    assert cli.stdout and cli.stderr
    out, err = Lines(cli.stdout), Lines(cli.stderr)
    gate: asyncio.Server | None = None
    try:
        dag_id = (await out.wait_for(r"submitted follow-restart as (\w+)")).group(1)
        # A second follower in this process records event ids, which the CLI does not print.
        seen: list[FeedEvent] = []
        notes: list[str] = []

        async def record() -> None:
            async with aiohttp.ClientSession(headers=http.headers) as own:
                async for event in Client(stack.api_url, own).feed(dag_id, on_note=notes.append):
                    seen.append(event)

        recorder = asyncio.create_task(record())
        await out.wait_for(r"gate\s+RUNNING")

        await stack.stop("api")  # drains: every open feed is closed mid-run
        await err.wait_for(r"feed interrupted")
        await stack.start("api")  # same port
        gate = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", gate_port)

        assert await asyncio.wait_for(cli.wait(), WAIT_S) == 0, "\n".join(out.lines + err.lines)
        await asyncio.wait_for(recorder, WAIT_S)
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
        if gate is not None:
            gate.close()
    await asyncio.gather(out.task, err.task)
    await err.wait_for(r"feed resumed after event \d+")
    assert any("interrupted" in n for n in notes) and any("resumed" in n for n in notes), notes

    reference = await follow(http, stack.api_url, dag_id)
    assert [e["_id"] for e in reference] == [e.id for e in seen], "lost or repeated events"
    assert reference[-1] == {**seen[-1].data, "_id": seen[-1].id}
    assert seen[-1].data["state"] == "SUCCEEDED"

    # The CLI printed each transition exactly once (it folds PENDING into nothing).
    expected = collections.Counter(
        ("run" if e["type"] == "run" else e["task"], e["state"])
        for e in reference if e["state"] != "PENDING"
    )
    printed: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in out.lines:
        if m := re.search(r"\d\d:\d\d:\d\d  (?:run (\w+)|\S (\S+)\s+(\w+))", line):
            printed[("run", m.group(1)) if m.group(1) else (m.group(2), m.group(3))] += 1
    assert printed == expected, "\n".join(out.lines)
