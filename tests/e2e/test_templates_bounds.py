"""Stored DAGs are bounded: a name count, and the newest versions of each (on real Valkey)."""

from __future__ import annotations

from typing import Any

import pytest

from helios import templates_store
from helios.settings import Settings
from helios.store import open_redis


def document(n: int) -> bytes:
    return b'{"name":"d","tasks":[{"name":"t","image":"i","command":["echo","%d"]}]}' % n  # canonical JSON


async def put(redis: Any, name: str, n: int) -> tuple[int, bool]:
    """A store with small bounds: 2 names, 3 versions each."""
    return await templates_store.put_version(redis, name, document(n), "d",
                                             max_templates=2, max_versions=3)


async def test_old_versions_go_and_new_names_beyond_the_limit_are_refused(
        settings: Settings) -> None:
    redis = open_redis(settings.redis)
    try:
        for n in range(1, 6):
            assert await put(redis, "a", n) == (n, True)
        info = await templates_store.get_info(redis, "a")
        assert info is not None and info.latest == 5 and list(info.versions) == [3, 4, 5]
        assert await templates_store.get_version(redis, "a", 2) is None
        kept = await templates_store.get_version(redis, "a", 3)
        assert kept is not None and kept.document == document(3)

        assert await put(redis, "b", 1) == (1, True)
        with pytest.raises(templates_store.TooManyTemplates):
            await put(redis, "c", 1)
        # An existing name still takes new versions, and a repeat is still a no-op.
        assert await put(redis, "b", 2) == (2, True)
        assert await put(redis, "b", 2) == (2, False)
        assert await templates_store.delete(redis, "a")
        assert await put(redis, "c", 1) == (1, True)
    finally:
        await redis.aclose()
