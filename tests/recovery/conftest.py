"""A stack whose scheduler and watcher are child processes (killable with -9), and whose
api and metrics service run in the test's loop, on the session's real servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helios.devstack.procs import free_port
from helios.devstack.servers import Endpoints
from helios.settings import Settings
from services.api.service import serve as serve_api
from services.metrics.service import serve as serve_metrics
from tests.recovery.procs import Child, service_env
from tests.stack import Stack, _with_port


@dataclass
class Mixed:
    stack: Stack
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.stack.api_url


StartMixed = Callable[..., Any]


@pytest.fixture
async def mixed(endpoints: Endpoints, settings: Settings, tmp_path: Path
                ) -> AsyncIterator[StartMixed]:
    """`await mixed(env={...}, children=("scheduler", "watcher"))` starts the stack."""
    stacks: list[Mixed] = []

    async def start(env: dict[str, str] | None = None,
                    children: tuple[str, ...] = ("scheduler", "watcher"),
                    settings_changes: dict[str, Any] | None = None,
                    in_process: tuple[str, ...] = ("metrics", "api")) -> Mixed:
        s = settings.model_copy(update=settings_changes or {})
        api_port, metrics_port = free_port(), free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}"
        stack = Stack(s, f"http://127.0.0.1:{api_port}", metrics_url)
        stack.serves = {
            "metrics": (serve_metrics, _with_port(s, metrics_port)),
            "api": (serve_api, _with_port(s, api_port, metrics_url=metrics_url)),
        }
        m = Mixed(stack)
        stacks.append(m)
        for name in in_process:
            await stack.start(name)
        for name in children:
            m.children[name] = Child(name, service_env(endpoints, s, **(env or {})), tmp_path)
            await m.children[name].start()
        return m

    yield start
    for m in stacks:
        for child in m.children.values():
            with contextlib.suppress(Exception):
                await child.stop()
        for name in reversed(list(m.stack.services)):
            with contextlib.suppress(Exception):
                await m.stack.stop(name)
