"""Supervision of `helios dev`'s children: a child that dies is started again, with the
same argv, port and credentials (so its clients simply reconnect), after an exponential
backoff; a child that keeps crashing stops the whole stack with a clear message.

Each child has one guarded watch task that waits on its process. The restart policy is
data (`RestartPolicy`) and its decisions are plain functions, unit-tested on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from helios.devstack.procs import spawn, stop, wait_for_port

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
Kind = Literal["server", "service"]
State = Literal["starting", "running", "restarting", "failed", "stopped"]
Process = asyncio.subprocess.Process


@dataclass(frozen=True)
class RestartPolicy:
    """How patiently a crashing child is restarted."""

    first_delay_s: float = 0.25  # the first restart is almost immediate
    max_delay_s: float = 8.0
    max_crashes: int = 5  # this many crashes ...
    window_s: float = 60.0  # ... within this many seconds: give up
    ready_timeout_s: float = 60.0  # a restarted child that is not ready by then crashed

    def delay(self, recent_crashes: int) -> float:
        """Backoff before the next start: doubles with each crash still in the window."""
        return min(self.first_delay_s * 2 ** max(recent_crashes - 1, 0), self.max_delay_s)

    def recent(self, crashes: list[float], now: float) -> list[float]:
        return [t for t in crashes if now - t <= self.window_s]

    def gives_up(self, crashes: list[float], now: float) -> bool:
        return len(self.recent(crashes, now)) >= self.max_crashes


ReadyCheck = Callable[[Process], Awaitable[None]]


@dataclass
class ChildSpec:
    """Everything needed to start a child again exactly as the first time."""

    name: str
    kind: Kind
    argv: list[str]
    log_file: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int | None = None  # a port the child itself must listen on before it counts as up
    ready: ReadyCheck | None = None  # raises until the child is ready (called once listening)
    grace_s: float = 10.0  # SIGTERM budget on stop
    pass_fds: tuple[int, ...] = ()  # inherited descriptors (the data dir's lock)


@dataclass
class Child:
    spec: ChildSpec
    proc: Process | None = None
    state: State = "starting"
    restarts: int = 0
    crashes: list[float] = field(default_factory=list)
    last_exit: int | None = None
    started_at: float = 0.0


class CrashLoop(RuntimeError):
    """A child crashed too often: the message says which, how often, and where its log is."""


class Supervisor:
    def __init__(self, policy: RestartPolicy | None = None,
                 on_change: Callable[[], None] | None = None):
        self.policy = policy or RestartPolicy()
        self.children: dict[str, Child] = {}
        self.failed = asyncio.Event()
        self.failure: str | None = None
        self._on_change = on_change or (lambda: None)
        self._stopping = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []

    def notify(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change

    async def start(self, spec: ChildSpec) -> Child:
        """Start a child and wait until it is ready; from then on it is supervised."""
        child = Child(spec)
        self.children[spec.name] = child
        while True:
            await self._launch(child)
            if self._stopping.is_set():  # stop() ran while we were spawning it
                await self._kill(child)
                raise RuntimeError(f"{spec.name}: the stack is stopping")
            try:
                await self._wait_ready(child)
                break
            except RuntimeError as exc:
                # It exited while starting (e.g. a JetStream request timed out on a busy
                # machine): a crash like any later one, retried under the same policy;
                # unless the stack is stopping (that is what killed it).
                await self._kill(child)
                if self._stopping.is_set():
                    raise
                now = time.monotonic()
                child.last_exit = child.proc.returncode if child.proc else None
                child.crashes = [*self.policy.recent(child.crashes, now), now]
                if self.policy.gives_up(child.crashes, now):
                    raise RuntimeError(f"{exc} ({len(child.crashes)} attempts); "
                                       f"see {spec.log_file}") from exc
                delay = self.policy.delay(len(child.crashes))
                log.warning("%s exited while starting (%s); trying again in %.2fs; see %s",
                            spec.name, exc, delay, spec.log_file)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    raise
            except BaseException:
                await self._kill(child)
                raise
        child.state = "running"
        self._on_change()
        task = asyncio.create_task(self._watch(child), name=f"supervise:{spec.name}")
        task.add_done_callback(self._watch_done)
        self._watchers.append(task)
        return child

    async def stop(self, order: list[str] | None = None) -> None:
        """Stop every child (in `order`, then the rest, newest first); no restarts."""
        self._stopping.set()
        names = (order or []) + [n for n in reversed(self.children) if n not in (order or [])]
        for name in names:
            child = self.children.get(name)
            if child is None or child.proc is None:
                continue
            code = await stop(child.proc, grace_s=child.spec.grace_s)
            child.state = "stopped"
            if code not in (0, None, -15):
                log.warning("%s exited with %s; see %s", name, code, child.spec.log_file)
        for task in self._watchers:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._watchers, return_exceptions=True), 5)

    async def _launch(self, child: Child) -> None:
        spec = child.spec
        child.proc = await spawn(spec.name, spec.argv, log_file=spec.log_file, env=spec.env,
                                 cwd=spec.cwd, pass_fds=spec.pass_fds)
        child.started_at = time.time()

    async def _wait_ready(self, child: Child) -> None:
        spec, proc = child.spec, child.proc
        assert proc is not None
        async with asyncio.timeout(self.policy.ready_timeout_s):
            if spec.port:
                await wait_for_port(HOST, spec.port, proc, self.policy.ready_timeout_s)
            if spec.ready:
                await spec.ready(proc)

    async def _kill(self, child: Child) -> None:
        if child.proc is not None:
            await stop(child.proc, grace_s=2.0)

    async def _watch(self, child: Child) -> None:
        name = child.spec.name
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            child.last_exit = code
            child.crashes = [*self.policy.recent(child.crashes, now), now]
            if self.policy.gives_up(child.crashes, now):
                child.state = "failed"
                self._on_change()
                self.fail(f"{name} crashed {len(child.crashes)} times within "
                           f"{self.policy.window_s:.0f}s (last exit code {code}); "
                           f"see {child.spec.log_file}")
                return
            delay = self.policy.delay(len(child.crashes))
            child.state = "restarting"
            self._on_change()
            log.warning("%s (pid %s) exited with code %s; restarting in %.2fs (restart #%d)",
                        name, child.proc.pid, code, delay, child.restarts + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            await self._launch(child)
            if self._stopping.is_set():  # stop() ran while we were spawning it
                await self._kill(child)
                return
            child.restarts += 1
            try:
                await self._wait_ready(child)
            except (TimeoutError, RuntimeError, OSError) as exc:
                # Not ready in time counts as a crash: the loop above sees it exit.
                log.warning("%s restart #%d failed: %s", name, child.restarts, exc)
                await self._kill(child)
                continue
            child.state = "running"
            self._on_change()
            log.warning("%s restarted (pid %s, restart #%d)", name, child.proc.pid,
                        child.restarts)

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            log.error("giving up: %s", reason)
        self.failed.set()

    def _watch_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("supervision task %s crashed", task.get_name(), exc_info=exc)
            self.fail(f"{task.get_name()} crashed: {exc!r}")
