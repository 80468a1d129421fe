"""`helios dev` as a user runs it, and the hands that kill it: find each child process,
`kill -9` it, see whether the supervisor brings it back, and if it does not, restart the
whole stack on the same data dir (so a missing supervisor shows up as a failed check,
not as a hung benchmark). Plus the recorder that counts attempt starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

log = logging.getLogger("chaos")

HELIOS = [sys.executable, "-m", "helios.cli.main"]
# How each child of `helios dev` is recognised in /proc: a `-m services.X` argument, or
# the basename of the server binary.
ROLES = {
    "api": "services.api", "scheduler": "services.scheduler", "watcher": "services.watcher",
    "metrics": "services.metrics", "nats": "nats-server", "valkey": "valkey-server", "s3": "weed",
}


def _proc_table() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, argv) of every live (non-zombie) process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        table[int(entry)] = (int(fields[1]), [a.decode(errors="replace") for a in argv if a])
    return table


def descendants(root: int, table: dict[int, tuple[int, list[str]]] | None = None) -> list[int]:
    table = table if table is not None else _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def role_of(argv: list[str]) -> str | None:
    if not argv:
        return None
    for role, mark in ROLES.items():
        if mark.startswith("services."):
            if "-m" in argv and mark in argv:
                return role
        elif os.path.basename(argv[0].split(" ")[0]) == mark:  # valkey retitles itself "valkey-server HOST:PORT"
            return role
    return None


@dataclass
class Kill:
    target: str
    at_s: float
    wall: float = field(default_factory=time.time)
    pid: int | None = None
    back_after_s: float | None = None
    harness_restarted: bool = False  # the supervisor did not bring it back: we did
    stack_restarted: bool = False


@dataclass
class DevProcess:
    data_dir: Path
    api_port: int
    metrics_port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    adopted: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def start(self, timeout_s: float = 120.0) -> None:
        """`helios dev` on the data dir; returns once it says it is ready."""
        self.starts += 1
        out = (self.data_dir.parent / f"helios-dev.{self.starts}.log").open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *HELIOS, "dev", "--data-dir", str(self.data_dir), "--port", str(self.api_port),
                "--metrics-port", str(self.metrics_port), stdout=out, stderr=out,
                stdin=asyncio.subprocess.DEVNULL, env={**os.environ, **self.env},
                start_new_session=True,
            )
        finally:
            out.close()
        await self.wait_api(timeout_s)

    async def wait_api(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"helios dev exited with {self.proc.returncode}; see "
                                       f"{self.data_dir.parent}/helios-dev.{self.starts}.log")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{self.api_url}/readyz",
                                        timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200 and self.children().keys() >= ROLES.keys():
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"helios dev not ready after {timeout_s}s")
                await asyncio.sleep(0.2)

    def children(self) -> dict[str, int]:
        """role -> pid of each live child server or service (ours included, see `adopt`)."""
        if self.proc is None:
            return {}
        table = _proc_table()
        found: dict[str, int] = {}
        for pid in self._tree(table):
            role = role_of(table[pid][1])
            # The outermost match: a service's own children (task sandboxes) never count.
            if role and role not in found:
                found[role] = pid
        return found

    def _tree(self, table: dict[int, tuple[int, list[str]]]) -> list[int]:
        roots = [p.pid for p in self.adopted.values() if p.returncode is None and p.pid in table]
        out = descendants(self.proc.pid, table) if self.proc else []
        for root in roots:
            out += [root, *descendants(root, table)]
        return out

    async def kill(self, target: str, started: float, back_within_s: float) -> Kill:
        """`kill -9` one child; wait for the supervisor to start a new one, or start it
        again ourselves (same command line, environment and folder) if it does not within
        `back_within_s`."""
        record = Kill(target, round(time.monotonic() - started, 1))
        t0 = time.monotonic()
        if target == "all":
            await self.kill_all()
            record.stack_restarted = True
            await self.start()
            record.back_after_s = round(time.monotonic() - t0, 1)
            return record
        record.pid = self.children().get(target)
        if record.pid is None:
            log.warning("no %s process to kill", target)
            return record
        why = ""
        try:
            how: tuple[list[str], dict[str, str], str] | None = _how_started(record.pid)
        except (OSError, RuntimeError) as exc:
            how, why = None, str(exc)
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
        while time.monotonic() - t0 < back_within_s:
            pid = self.children().get(target)
            if pid is not None and pid != record.pid:
                record.back_after_s = round(time.monotonic() - t0, 1)
                return record
            await asyncio.sleep(0.1)
        log.warning("%s was not restarted within %ss: the harness starts %s again", target,
                    back_within_s, "it" if how else "the whole stack")
        record.harness_restarted = True
        if how is None:
            log.warning("%s", why)
            await self.kill_all()
            await self.start()
            record.stack_restarted = True
        else:
            await self.adopt(target, *how)
        record.back_after_s = round(time.monotonic() - t0, 1)
        return record

    async def adopt(self, role: str, argv: list[str], env: dict[str, str], cwd: str) -> None:
        """Start a killed child again as the supervisor would have."""
        log_file = self.data_dir / "logs" / f"{role}.log"
        out = log_file.open("ab")
        try:
            self.adopted[role] = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL, env=env, cwd=cwd,
                start_new_session=True)
        finally:
            out.close()

    async def kill_all(self) -> None:
        """`kill -9` every process of the stack at once (children first, so none of them
        gets the parent-death SIGTERM and drains politely)."""
        if self.proc is None:
            return
        pids = self._tree(_proc_table())
        for pid in [*pids, self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await self.proc.wait()
        for adopted in self.adopted.values():
            await adopted.wait()
        self.adopted.clear()
        for _ in range(300):  # the kernel takes a moment to tear them down (30 s at most)
            if not any(pid in _proc_table() for pid in pids):
                break
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        for adopted in self.adopted.values():  # not under `helios dev`: stop them ourselves
            with contextlib.suppress(ProcessLookupError):
                adopted.send_signal(signal.SIGTERM)
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            await self.kill_all()


def _how_started(pid: int) -> tuple[list[str], dict[str, str], str]:
    """A process's command line, environment and working folder, to start it again."""
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    if " " in argv[0] and len(argv) == 1:
        # valkey retitled itself; its real arguments are gone: keep what we can see.
        raise RuntimeError(f"cannot restart pid {pid}: its command line was rewritten ({argv[0]!r})")
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(e.decode().split("=", 1) for e in raw if b"=" in e)
    return argv, env, os.readlink(f"/proc/{pid}/cwd")


class StartRecorder:
    """A loopback TCP server that records one `start DAG TASK ATTEMPT` line per connection:
    every task process sends one when it starts."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, str, int]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> StartRecorder:
        self.server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.close()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            parts = line.decode().split()
            if len(parts) == 4 and parts[0] == "start":
                self.starts.append((parts[1], parts[2], int(parts[3])))
        except (TimeoutError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()
