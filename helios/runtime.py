"""Service lifecycle: one `main()` of named root tasks, signals that only set an Event.

A service is an async function `serve(settings, stop, health)` that starts its work,
marks `health.ready`, waits for `stop`, drains within `settings.drain_timeout_s`, and
returns. `run()` wires signals, logging and the exit code around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from helios import logs
from helios.health import Health
from helios.settings import Settings, load_settings

log = logging.getLogger(__name__)



class StopEvent(asyncio.Event):
    """Set to stop the service; `failure` says whether a root task crashed (exit 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: str | None = None

    def fail(self, reason: str) -> None:
        self.failure = self.failure or reason
        self.set()


Serve = Callable[[Settings, StopEvent, Health], Awaitable[None]]


def run(service: str, serve: Serve, *, fast_loop: Callable[[Settings], bool] = lambda _: True
        ) -> None:
    """Entry point of `python -m services.<name>`: exits 0 after a clean SIGTERM drain.

    uvloop speeds up network-bound services; `fast_loop` can decline it (its subprocess
    spawning measured slower here than asyncio's: 12-14 ms against 9 ms per bwrap)."""
    settings = load_settings()
    logs.configure(service, settings.log_level, settings.log_format)
    if fast_loop(settings):
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    code = asyncio.run(_main(service, serve, settings))
    raise SystemExit(code)


async def _main(service: str, serve: Serve, settings: Settings) -> int:
    stop = StopEvent()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health = Health(service)
    try:
        await serve(settings, stop, health)
    except Exception:
        log.exception("service crashed")
        return 1
    if stop.failure:
        log.error("stopped after a failure: %s", stop.failure)
        return 1
    log.info("stopped cleanly")
    return 0


def guard(
    coro: Coroutine[Any, Any, Any], name: str, stop: StopEvent | None = None
) -> asyncio.Task[Any]:
    """A named background task whose crash or unexpected exit is logged (and stops the service)."""
    task = asyncio.create_task(coro, name=name)

    def _done(t: asyncio.Task[Any]) -> None:
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            log.error("background task %s crashed", name, exc_info=exc)
        elif stop is not None and not stop.is_set():
            log.error("background task %s exited unexpectedly", name)
        if stop is not None and (exc is not None or not stop.is_set()):
            stop.fail(f"{name} {'crashed' if exc else 'exited'}")

    task.add_done_callback(_done)
    return task


async def cancel_all(tasks: list[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout)
