from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helios.s3 import open_s3
from helios.settings import Settings


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (run.sh installs it)")


@pytest.fixture
async def s3(settings: Settings) -> AsyncIterator[Any]:
    async with open_s3(settings.s3) as client:
        yield client
