"""`helios dev` as a user runs it: one stack per test under its own data dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.devstack.devproc import Dev


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[Dev]:
    running = Dev(tmp_path / "data")
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain session: these stacks make their own token, which `Dev` hands out."""
    async with aiohttp.ClientSession() as session:
        yield session
