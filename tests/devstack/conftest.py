"""`helios dev` as a user runs it: one stack per test under its own data dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.devstack.devproc import Dev


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[Dev]:
    running = Dev(tmp_path / "data")
    try:
        yield running
    finally:
        await running.close()

