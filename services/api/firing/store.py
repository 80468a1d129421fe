"""Valkey adapters of the firing records (schedules, backfills, triggers, the lease).

The api service owns every key here (`helios.keys`). The HTTP handlers write the
definitions; the firing loop writes the progress (schedule state, backfill items): two
writers never share a hash field, so neither overwrites the other's update.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError

from helios import keys
from helios.schedules.records import (
    BackfillItem,
    BackfillSpec,
    ScheduleRecord,
    ScheduleState,
    TriggerRecord,
)

R = TypeVar("R", bound=BaseModel)


class StoredRecordError(ValueError):
    """A stored record does not decode (never passed on as if it did)."""


def _load(model: Any, raw: str | bytes, where: str) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise StoredRecordError(f"{where}: {exc}") from None


def _dump(model: Any) -> str:
    return str(model.model_dump_json(by_alias=True))


# Schedules and triggers are both kept as one hash of definitions (field = name), each
# with a side key of the loop's progress that goes with it.

async def _get(redis: aioredis.Redis, hash_key: str, model: type[R], name: str,
               what: str) -> R | None:
    raw = await redis.hget(hash_key, name)
    return None if raw is None else cast(R, _load(model, raw, f"{what} {name}"))


async def _all(redis: aioredis.Redis, hash_key: str, model: type[R], what: str) -> list[R]:
    raw = cast("dict[str, str]", await redis.hgetall(hash_key))
    return [cast(R, _load(model, v, f"{what} {k}")) for k, v in sorted(raw.items())]


async def _delete(redis: aioredis.Redis, hash_key: str, name: str, side_key: str) -> bool:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(hash_key, name)
        pipe.delete(side_key)
        removed, _ = await pipe.execute()
    return bool(removed)


# -- schedules ----------------------------------------------------------------------

async def put_schedule(redis: aioredis.Redis, record: ScheduleRecord, *,
                       reset_cursor: float | None) -> None:
    """Store the definition; `reset_cursor` (creation, resume) starts its times there."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.SCHEDULES, record.template, _dump(record))
        if reset_cursor is not None:
            pipe.hset(keys.schedule_state(record.template), "cursor", repr(reset_cursor))
        await pipe.execute()


async def count_schedules(redis: aioredis.Redis) -> int:
    return int(await redis.hlen(keys.SCHEDULES))


async def get_schedule(redis: aioredis.Redis, template: str) -> ScheduleRecord | None:
    return await _get(redis, keys.SCHEDULES, ScheduleRecord, template, "schedule")


async def all_schedules(redis: aioredis.Redis) -> list[ScheduleRecord]:
    return await _all(redis, keys.SCHEDULES, ScheduleRecord, "schedule")


async def delete_schedule(redis: aioredis.Redis, template: str) -> bool:
    return await _delete(redis, keys.SCHEDULES, template, keys.schedule_state(template))


async def get_state(redis: aioredis.Redis, template: str) -> ScheduleState:
    raw = cast("dict[str, str]", await redis.hgetall(keys.schedule_state(template)))
    return _state(template, raw)


async def get_states(redis: aioredis.Redis, templates: list[str]) -> list[ScheduleState]:
    """The states of several schedules in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for template in templates:
            pipe.hgetall(keys.schedule_state(template))
        raws = await pipe.execute()
    return [_state(t, raw) for t, raw in zip(templates, raws, strict=True)]


def _state(template: str, raw: dict[str, str]) -> ScheduleState:
    try:
        return ScheduleState(
            cursor=float(raw.get("cursor") or time.time()),
            last_run_id=raw.get("lastRunId") or None,
            last_time=float(raw["lastTime"]) if raw.get("lastTime") else None,
            fired=int(raw.get("fired") or 0), skipped=int(raw.get("skipped") or 0),
            last_error=raw.get("lastError") or None,
        )
    except ValueError as exc:
        raise StoredRecordError(f"{keys.schedule_state(template)}: {exc}") from None


async def save_state(redis: aioredis.Redis, template: str, state: ScheduleState) -> None:
    """Written by the firing loop only. A schedule deleted meanwhile stays deleted: the
    state is written only while its definition exists."""
    fields = {"lastRunId": state.last_run_id or "",
              "lastTime": repr(state.last_time) if state.last_time is not None else "",
              "fired": str(state.fired), "skipped": str(state.skipped),
              "lastError": state.last_error or ""}
    flat = [template, repr(state.cursor)]
    for k, v in fields.items():
        flat += [k, v]
    await redis.eval(_SAVE_STATE, 2, keys.SCHEDULES, keys.schedule_state(template),  # type: ignore[misc]
                     *flat)


# The cursor only moves forward: a resume (cursor = now) racing a pass that read the
# state before it keeps the resume's cursor, so a pause's times are never caught up.
_SAVE_STATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local cur = tonumber(redis.call('HGET', KEYS[2], 'cursor') or '0') or 0
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[2], 'cursor', ARGV[2]) end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
return 1
"""


_HSET_IF = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 2))
  return 1
end
return 0
"""


async def _hset_if_exists(redis: aioredis.Redis, index: str, field: str, key: str,
                          fields: Mapping[str, str]) -> bool:
    flat: list[str] = [field]
    for k, v in fields.items():
        flat += [k, v]
    return bool(await redis.eval(_HSET_IF, 2, index, key, *flat))  # type: ignore[misc]


# -- backfills ----------------------------------------------------------------------

KEPT_BACKFILLS = 1000  # the records of older ended backfills are dropped


async def create_backfill(redis: aioredis.Redis, spec: BackfillSpec,
                          items: list[BackfillItem]) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.backfill(spec.id), mapping={
            "spec": _dump(spec), "items": _items_json(items), "state": "RUNNING"})
        pipe.zadd(keys.BACKFILLS, {spec.id: spec.created_at})
        pipe.sadd(keys.BACKFILLS_ACTIVE, spec.id)
        await pipe.execute()
    old = cast("list[str]", await redis.zrange(keys.BACKFILLS, 0, -KEPT_BACKFILLS - 1))
    active = cast("set[str]", await redis.smembers(keys.BACKFILLS_ACTIVE))
    ended = [b for b in old if b not in active]
    if ended:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(*[keys.backfill(b) for b in ended])
            pipe.zrem(keys.BACKFILLS, *ended)
            await pipe.execute()


async def count_active_backfills(redis: aioredis.Redis) -> int:
    return int(await redis.scard(keys.BACKFILLS_ACTIVE))


def _items_json(items: list[BackfillItem]) -> str:
    return orjson.dumps([i.model_dump(mode="json", by_alias=True) for i in items]).decode()


class StoredBackfill:
    def __init__(self, spec: BackfillSpec, items: list[BackfillItem], state: str,
                 ended_at: float | None, cancel: bool):
        self.spec, self.items, self.state = spec, items, state
        self.ended_at, self.cancel = ended_at, cancel


async def get_backfill(redis: aioredis.Redis, backfill_id: str) -> StoredBackfill | None:
    raw = cast("dict[str, str]", await redis.hgetall(keys.backfill(backfill_id)))
    return _backfill(backfill_id, raw)


async def get_backfills(redis: aioredis.Redis, backfill_ids: list[str]
                        ) -> list[StoredBackfill | None]:
    """Several backfills in one round trip (None where one is gone)."""
    async with redis.pipeline(transaction=False) as pipe:
        for backfill_id in backfill_ids:
            pipe.hgetall(keys.backfill(backfill_id))
        raws = await pipe.execute()
    return [_backfill(b, raw) for b, raw in zip(backfill_ids, raws, strict=True)]


def _backfill(backfill_id: str, raw: dict[str, str]) -> StoredBackfill | None:
    if not raw.get("spec"):
        return None
    where = keys.backfill(backfill_id)
    spec = _load(BackfillSpec, raw["spec"], where)
    try:
        items = [BackfillItem.model_validate(i) for i in orjson.loads(raw.get("items", "[]"))]
        ended = float(raw["endedAt"]) if raw.get("endedAt") else None
    except (ValueError, ValidationError) as exc:
        raise StoredRecordError(f"{where}: {exc}") from None
    return StoredBackfill(spec, items, raw.get("state", "RUNNING"), ended,
                          raw.get("cancel") == "1")


async def save_backfill_progress(redis: aioredis.Redis, backfill_id: str,
                                 items: list[BackfillItem], state: str) -> None:
    """The loop's fields; a terminal state leaves the active set in the same MULTI."""
    async with redis.pipeline(transaction=True) as pipe:
        mapping: dict[Any, str] = {"items": _items_json(items), "state": state}
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            mapping["endedAt"] = repr(time.time())
            pipe.srem(keys.BACKFILLS_ACTIVE, backfill_id)
        pipe.hset(keys.backfill(backfill_id), mapping=mapping)
        await pipe.execute()


async def request_cancel(redis: aioredis.Redis, backfill_id: str) -> None:
    """The api handler's only field of a backfill: the loop acts on it."""
    await redis.hset(keys.backfill(backfill_id), "cancel", "1")


async def forget_backfill(redis: aioredis.Redis, backfill_id: str) -> None:
    await redis.srem(keys.BACKFILLS_ACTIVE, backfill_id)


async def active_backfills(redis: aioredis.Redis) -> list[str]:
    return sorted(cast("set[str]", await redis.smembers(keys.BACKFILLS_ACTIVE)))


async def recent_backfills(redis: aioredis.Redis, limit: int) -> list[str]:
    return cast("list[str]", await redis.zrevrange(keys.BACKFILLS, 0, limit - 1))


# -- triggers -----------------------------------------------------------------------

async def put_trigger(redis: aioredis.Redis, record: TriggerRecord) -> None:
    await redis.hset(keys.TRIGGERS, record.name, _dump(record))


async def count_triggers(redis: aioredis.Redis) -> int:
    return int(await redis.hlen(keys.TRIGGERS))


async def get_trigger(redis: aioredis.Redis, name: str) -> TriggerRecord | None:
    return await _get(redis, keys.TRIGGERS, TriggerRecord, name, "trigger")


async def all_triggers(redis: aioredis.Redis) -> list[TriggerRecord]:
    return await _all(redis, keys.TRIGGERS, TriggerRecord, "trigger")


async def delete_trigger(redis: aioredis.Redis, name: str) -> bool:
    return await _delete(redis, keys.TRIGGERS, name, keys.trigger_seen(name))


async def seen_etags(redis: aioredis.Redis, trigger: str, object_keys: list[str]
                     ) -> list[str | None]:
    if not object_keys:
        return []
    return cast("list[str | None]", await redis.hmget(keys.trigger_seen(trigger), object_keys))


async def mark_seen(redis: aioredis.Redis, trigger: str, object_key: str, etag: str) -> None:
    """Only while the trigger exists: a deleted trigger's seen set is not recreated."""
    await mark_all_seen(redis, trigger, {object_key: etag})


async def mark_all_seen(redis: aioredis.Redis, trigger: str, etags: Mapping[str, str]) -> None:
    """Several object keys -> ETags in one call (a listing page's worth)."""
    if etags:
        await _hset_if_exists(redis, keys.TRIGGERS, trigger, keys.trigger_seen(trigger), etags)


# -- the lease ----------------------------------------------------------------------

_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


async def hold_lease(redis: aioredis.Redis, holder: str, ttl_s: float) -> bool:
    """Take or renew the firing lease; False while another instance holds it."""
    ms = max(1, int(ttl_s * 1000))
    return bool(await redis.eval(_RENEW, 1, keys.FIRING_LEASE, holder, str(ms)))  # type: ignore[misc]


async def release_lease(redis: aioredis.Redis, holder: str) -> None:
    await redis.eval(_RELEASE, 1, keys.FIRING_LEASE, holder)  # type: ignore[misc]
