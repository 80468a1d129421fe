"""Stored DAGs are bounded: a name count, and the newest versions of each (on real Valkey)."""

from __future__ import annotations

import pytest

from helios import templates_store
from helios.settings import Settings
from helios.store import open_redis


def document(n: int) -> bytes:
    return b'{"name":"d","tasks":[{"name":"t","image":"i","command":["echo","%d"]}]}' % n  # canonical JSON


async def test_old_versions_go_and_new_names_beyond_the_limit_are_refused(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates_store, "MAX_VERSIONS", 3)
    monkeypatch.setattr(templates_store, "MAX_TEMPLATES", 2)
    redis = open_redis(settings.redis)
    try:
        for n in range(1, 6):
            assert await templates_store.put_version(redis, "a", document(n), "d") == (n, True)
        info = await templates_store.get_info(redis, "a")
        assert info is not None and info.latest == 5 and list(info.versions) == [3, 4, 5]
        assert await templates_store.get_version(redis, "a", 2) is None
        kept = await templates_store.get_version(redis, "a", 3)
        assert kept is not None and kept.document == document(3)

        assert await templates_store.put_version(redis, "b", document(1), "d") == (1, True)
        with pytest.raises(templates_store.TooManyTemplates):
            await templates_store.put_version(redis, "c", document(1), "d")
        # An existing name still takes new versions, and a repeat is still a no-op.
        assert await templates_store.put_version(redis, "b", document(2), "d") == (2, True)
        assert await templates_store.put_version(redis, "b", document(2), "d") == (2, False)
        assert await templates_store.delete(redis, "a")
        assert await templates_store.put_version(redis, "c", document(1), "d") == (1, True)
    finally:
        await redis.aclose()
