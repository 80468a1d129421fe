"""The API and the metrics service alone, on the session's real servers: what is
submitted is stored and queued but never run (no scheduler, no watcher)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from helios.devstack.procs import free_port
from helios.settings import HttpSettings, Settings
from services.api.service import serve as serve_api
from services.metrics.service import serve as serve_metrics
from tests.stack import Stack


@contextlib.asynccontextmanager
async def api_only(settings: Settings) -> AsyncIterator[Stack]:
    api_port, metrics_port = free_port(), free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    stack = Stack(settings, f"http://127.0.0.1:{api_port}", metrics_url)

    def at(port: int, **changes: Any) -> Settings:
        return settings.model_copy(update={"http": HttpSettings(host="127.0.0.1", port=port),
                                           **changes})

    stack.serves = {"metrics": (serve_metrics, at(metrics_port)),
                    "api": (serve_api, at(api_port, metrics_url=metrics_url))}
    try:
        await stack.start("metrics")
        await stack.start("api")
        yield stack
    finally:
        for name in reversed(list(stack.services)):
            with contextlib.suppress(Exception):
                await stack.stop(name)
