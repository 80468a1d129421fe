"""The stored DAG a firing starts: the latest version, read through `helios.templates_store`."""

from __future__ import annotations

from dataclasses import dataclass

from helios import templates_store
from services.api.context import ApiContext


@dataclass(frozen=True, slots=True)
class Stored:
    version: int
    document: bytes
    media: str
    params: list[dict[str, object]]


async def latest(c: ApiContext, name: str) -> Stored | None:
    found = await templates_store.get_version(c.redis, name)
    if found is None:
        return None
    return Stored(found.version, found.document, "application/json", found.params)


async def exists(c: ApiContext, name: str) -> bool:
    return await templates_store.get_info(c.redis, name) is not None
