"""Stored DAGs ("templates"): immutable versions by name, written and read only here.

Layout (keys in `helios.keys`; owner: the api):

- `template:{name}:versions`, hash: version -> JSON {document, params, dagName,
  createdAt, digest}. A version is written once and never changed: a run records
  (name, version) and can always be traced to exactly what it ran.
- `template:{name}`, hash: `latest`, `digest` (sha256 of the latest document),
  `dagName`, `createdAt`, `updatedAt`, and `at:{n}` = when version n was stored.
- `templates`, sorted set of names (score 0: listed in name order).
- `templates:seq`, hash: name -> last version number given; it survives a delete, so a
  name stored again never reuses a version number some run recorded.

A PUT of the document the latest version already holds adds no version (a PUT is safe to
repeat). Everything changes in one Lua script: no reader sees half a version.

Bounded: at most MAX_TEMPLATES names (a new one beyond is refused) and the newest
MAX_VERSIONS versions of each (storing one more drops the oldest; runs keep their own
copy of what they ran, so no run loses its definition).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from helios import keys
from helios.store import as_text

MAX_LIST = 1000
MAX_TEMPLATES = 10_000
MAX_VERSIONS = 1000


class TooManyTemplates(Exception):
    """A new name would exceed MAX_TEMPLATES."""

_PUT = """
local meta, versions, index, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local name, digest, record, now, dag_name = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max_templates, max_versions = tonumber(ARGV[6]), tonumber(ARGV[7])
local latest = redis.call('HGET', meta, 'latest')
if latest and redis.call('HGET', meta, 'digest') == digest then
  return {tonumber(latest), 0}
end
if not latest and redis.call('ZCARD', index) >= max_templates then
  return {-1, 0}
end
local v = redis.call('HINCRBY', seq, name, 1)
redis.call('HSET', versions, tostring(v), record)
local old = v - max_versions
if old > 0 and redis.call('HDEL', versions, tostring(old)) == 1 then
  redis.call('HDEL', meta, 'at:' .. old)
end
if not latest then redis.call('HSET', meta, 'createdAt', now) end
redis.call('HSET', meta, 'latest', v, 'digest', digest, 'updatedAt', now,
           'dagName', dag_name, 'at:' .. v, now)
redis.call('ZADD', index, 0, name)
return {v, 1}
"""


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    name: str
    latest: int
    dag_name: str
    created_at: float
    updated_at: float
    versions: dict[int, float]  # version -> stored at

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "latest": self.latest, "dagName": self.dag_name,
                "createdAt": self.created_at, "updatedAt": self.updated_at}


@dataclass(frozen=True, slots=True)
class TemplateVersion:
    name: str
    version: int
    document: bytes  # the DAG document as validated (JSON), references unrendered
    params: list[dict[str, Any]]  # its declared parameters, as in the document
    dag_name: str
    created_at: float
    digest: str


def digest(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()


async def put_version(redis: aioredis.Redis, name: str, document: bytes, dag_name: str, *,
                      max_templates: int = MAX_TEMPLATES, max_versions: int = MAX_VERSIONS
                      ) -> tuple[int, bool]:
    """Store `document` (validated, canonical JSON) as the next version of `name`;
    (version, True), or (latest, False) when the latest version holds the same document.
    Raises TooManyTemplates when `name` is new and MAX_TEMPLATES names exist."""
    doc_digest = digest(document)
    now = time.time()
    params = orjson.loads(document).get("params") or []
    record = orjson.dumps({"document": orjson.Fragment(document), "params": params,
                           "dagName": dag_name, "createdAt": now, "digest": doc_digest})
    script = redis.register_script(_PUT)
    version, created = await script(
        keys=[keys.template(name), keys.template_versions(name), keys.TEMPLATES,
              keys.TEMPLATES_SEQ],
        args=[name, doc_digest, record, repr(now), dag_name, max_templates, max_versions])
    if int(version) < 0:
        raise TooManyTemplates(f"there are {max_templates} stored DAGs already: delete some")
    return int(version), bool(int(created))



def _info(name: str, raw: dict[Any, Any]) -> TemplateInfo | None:
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    if "latest" not in fields:
        return None
    versions = {int(k[3:]): float(v) for k, v in fields.items() if k.startswith("at:")}
    return TemplateInfo(name, int(fields["latest"]), fields.get("dagName", ""),
                        float(fields.get("createdAt", 0)), float(fields.get("updatedAt", 0)),
                        dict(sorted(versions.items())))


async def get_info(redis: aioredis.Redis, name: str) -> TemplateInfo | None:
    return _info(name, cast("dict[Any, Any]", await redis.hgetall(keys.template(name))))


async def get_version(redis: aioredis.Redis, name: str, version: int | None = None
                      ) -> TemplateVersion | None:
    """A version of `name` (the latest when `version` is None); None if there is none."""
    if version is None:
        latest = await redis.hget(keys.template(name), "latest")
        if latest is None:
            return None
        version = int(as_text(latest))
    raw = await redis.hget(keys.template_versions(name), str(version))
    if raw is None:
        return None
    record = orjson.loads(raw)
    return TemplateVersion(name, version, orjson.dumps(record["document"]), record["params"],
                           record["dagName"], float(record["createdAt"]), record["digest"])


async def list_templates(redis: aioredis.Redis, after: str | None = None,
                         limit: int = 100) -> list[TemplateInfo]:
    """Stored DAGs in name order, from just after `after`, at most `limit` (<= 1000)."""
    start = f"({after}" if after else "-"
    names = [as_text(n) for n in await redis.zrange(
        keys.TEMPLATES, start, "+", bylex=True, offset=0, num=min(limit, MAX_LIST))]
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.template(name))
        raws = await pipe.execute()
    out = [_info(name, raw) for name, raw in zip(names, raws, strict=True)]
    return [info for info in out if info is not None]


async def delete(redis: aioredis.Redis, name: str) -> bool:
    """Remove a stored DAG and all its versions (runs keep their own definitions)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.template(name), keys.template_versions(name))
        pipe.zrem(keys.TEMPLATES, name)
        deleted, _ = await pipe.execute()
    return bool(deleted)
