from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from helios.settings import Settings
from tests.stack import Stack, running_stack


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async with running_stack(settings) as running:
        yield running
