"""Fixtures of the artifact tests: the session's real SeaweedFS S3 server.

`settings` is overridden here: the artifact steps only talk to S3, so the root
fixture's NATS and Redis reset (about half a second a test) buys nothing. Isolation
comes from fresh tmp folders and random content (hence fresh digests and keys).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helios.devstack.servers import Endpoints
from helios.s3 import ensure_bucket, open_s3
from helios.settings import Settings
from tests.conftest import make_settings


@pytest.fixture(scope="session")
async def _bucket(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> None:
    s = make_settings(endpoints, tmp_path_factory.mktemp("artifacts"))
    async with open_s3(s.s3) as client:
        await ensure_bucket(client, s.s3.bucket)


@pytest.fixture
def settings(endpoints: Endpoints, tmp_path: Path, _bucket: None) -> Settings:
    return make_settings(endpoints, tmp_path)


@pytest.fixture
async def s3(settings: Settings) -> AsyncIterator[Any]:
    async with open_s3(settings.s3) as client:
        yield client
