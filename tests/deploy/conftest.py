from __future__ import annotations

import pytest

from .render import OVERLAYS, Obj, rendered


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objs(overlay: str) -> list[Obj]:
    return rendered(f"overlays/{overlay}")
