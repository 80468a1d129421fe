"""The Redis adapter: apply one event atomically, rewrite a run's metrics, keep the window.

Exactly-once effect over at-least-once delivery, in two steps:

1. `apply` (one Lua script, atomic): ignore the event if its run was evicted or its
   message id was seen; otherwise keep it if it beats the stored event of its task/run
   (`records.task_order`), bump the run's version, and place the run in the window,
   evicting the oldest beyond 100.
2. `refresh`: read the run's state (one HGETALL, a consistent snapshot), compute its
   metrics in Python, and write them only if the version is unchanged and the run was not
   evicted meanwhile. A refresh that loses the race skips: whoever bumped the version
   refreshes after it. A redelivered (duplicate) event still refreshes, which repairs a
   crash between the two steps.

Evicted runs are recorded in `keys.SWEEP` in the same script, and `sweep` deletes every
`dag:{dagId}:*` key afterwards (resumed at startup if a crash interrupted it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import orjson
import redis.asyncio as aioredis

from helios import keys as shared_keys
from helios.messages import RunEvent, TaskEvent
from helios.states import TaskState
from helios.subjects import STREAMS
from services.metrics import keys, records
from services.metrics.aggregate import RunMetrics, TaskTiming, run_metrics, task_timings

APPLY = """
-- KEYS: state, seen, order, evicted, window, sweep
-- ARGV: dagId, msgId, field, record, k1, k2, score, now, windowSize, tombstoneAge,
--       tombstoneCap, versionField, queuedField, queuedAt
local dag = ARGV[1]
if redis.call('ZSCORE', KEYS[4], dag) then return {'evicted', 0} end
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return {'duplicate', 0} end
local k1, k2 = tonumber(ARGV[5]), tonumber(ARGV[6])
local newer = 1
local old = redis.call('HGET', KEYS[1], ARGV[3])
if old then
  local o = cjson.decode(old).k
  if not (k1 > o[1] or (k1 == o[1] and k2 > o[2])) then newer = 0 end
end
if newer == 1 then redis.call('HSET', KEYS[1], ARGV[3], ARGV[4]) end
if ARGV[13] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[13], ARGV[14]) end
redis.call('HINCRBY', KEYS[1], ARGV[12], 1)
local result = {'applied', newer}
-- LT: a run keeps the earliest time any of its events reported, whatever the order.
if redis.call('ZADD', KEYS[3], 'LT', 'CH', ARGV[7], dag) == 1 then
  local size = tonumber(ARGV[9])
  local card = redis.call('ZCARD', KEYS[3])
  if card > size then
    local now = tonumber(ARGV[8])
    for _, victim in ipairs(redis.call('ZRANGE', KEYS[3], 0, card - size - 1)) do
      redis.call('ZREM', KEYS[3], victim)
      redis.call('ZADD', KEYS[4], now, victim)
      redis.call('SADD', KEYS[6], victim)
      table.insert(result, victim)
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (now - tonumber(ARGV[10])))
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[11]) + 1))
  end
  redis.call('DEL', KEYS[5])
  local ids = redis.call('ZREVRANGE', KEYS[3], 0, -1)
  if #ids > 0 then redis.call('RPUSH', KEYS[5], unpack(ids)) end
end
return result
"""

WRITE = """
-- KEYS: metrics, timings, state, evicted
-- ARGV: dagId, version, versionField, timingsJson, field1, value1, ...
if redis.call('ZSCORE', KEYS[4], ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[3], ARGV[3]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('SET', KEYS[2], ARGV[4])
return 1
"""


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    EVICTED = "evicted"


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    newer: bool = False
    victims: list[str] = field(default_factory=list)


def _text(value: bytes | str) -> str:
    # `open_redis` decodes responses; redis-py's types cannot know that.
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(value: str) -> str:
    # A dagId is not ours to trust inside a SCAN pattern: `*` would match other runs.
    return re.sub(r"([\\*?\[\]])", r"\\\1", value)


class MetricsStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        window: int = keys.WINDOW_SIZE,
        tombstone_age_s: float = STREAMS.run_history_s,
        tombstone_cap: int = 10_000,
    ):
        """`tombstone_age_s`: an evicted run is remembered as long as JetStream may
        still redeliver its events (the run stream's retention)."""
        self.redis = redis
        self.window = window
        self.tombstone_age_s = tombstone_age_s
        self.tombstone_cap = tombstone_cap
        self._apply = redis.register_script(APPLY)
        self._write = redis.register_script(WRITE)

    async def apply(self, event: TaskEvent | RunEvent, now: float) -> Applied:
        name, order, body = records.encode(event)
        queued_field = queued_at = ""
        if isinstance(event, TaskEvent) and event.state is TaskState.QUEUED:
            queued_field = keys.state_queued_field(event.task, event.attempt)
            queued_at = repr(event.at)
        result = await self._apply(
            keys=[
                keys.state(event.dag_id), keys.seen(event.dag_id), keys.order(event.dag_name),
                keys.evicted(event.dag_name), shared_keys.dag_runs(event.dag_name), keys.SWEEP,
            ],
            args=[
                event.dag_id, event.msg_id, name, body, order[0], repr(order[1]),
                repr(records.start_score(event)), repr(now), self.window,
                self.tombstone_age_s, self.tombstone_cap, keys.STATE_VERSION_FIELD,
                queued_field, queued_at,
            ],
        )
        return Applied(Outcome(result[0]), bool(int(result[1])), [str(v) for v in result[2:]])

    async def refresh(self, dag_id: str) -> RunMetrics | None:
        """Recompute and store the run's metrics; None when skipped (evicted or raced)."""
        raw = await self.redis.hgetall(keys.state(dag_id))
        snap = records.decode_state({_text(k): _text(v) for k, v in raw.items()})
        if snap.empty:
            return None
        metrics = run_metrics(dag_id, snap)
        timings = {k: v.model_dump(by_alias=True, exclude_none=True)
                   for k, v in task_timings(snap).items()}
        pairs = [item for kv in metrics.to_hash().items() for item in kv]
        written = await self._write(
            keys=[shared_keys.metrics(dag_id), keys.timings(dag_id), keys.state(dag_id),
                  keys.evicted(metrics.dag_name)],
            args=[dag_id, snap.version, keys.STATE_VERSION_FIELD,
                  orjson.dumps(timings).decode(), *pairs],
        )
        return metrics if written else None

    async def sweep(self, dag_ids: list[str] | None = None) -> int:
        """Delete every key of evicted runs (all pending ones when `dag_ids` is None)."""
        if dag_ids is None:
            dag_ids = sorted(_text(v) for v in await self.redis.smembers(keys.SWEEP))
        deleted = 0
        for dag_id in dag_ids:
            pattern = shared_keys.run_pattern(_glob_escape(dag_id))
            batch: list[str] = []
            async for key in self.redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await self.redis.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self.redis.unlink(*batch)
            await self.redis.srem(keys.SWEEP, dag_id)
        return deleted

    async def window_runs(
        self, dag_name: str, limit: int
    ) -> tuple[list[RunMetrics], list[dict[str, TaskTiming]]]:
        """The newest `limit` runs of `dag_name` and their per-task timings."""
        ids = [_text(v) for v in
               await self.redis.lrange(shared_keys.dag_runs(dag_name), 0, limit - 1)]
        if not ids:
            return [], []
        async with self.redis.pipeline(transaction=False) as pipe:
            for dag_id in ids:
                pipe.hgetall(shared_keys.metrics(dag_id))
                pipe.get(keys.timings(dag_id))
            replies = await pipe.execute()
        runs: list[RunMetrics] = []
        timings: list[dict[str, TaskTiming]] = []
        for fields, raw in zip(replies[::2], replies[1::2], strict=True):
            if not fields:
                continue  # placed in the window, metrics not written yet: next time
            runs.append(RunMetrics.from_hash(fields))
            parsed = orjson.loads(raw) if raw else {}
            timings.append({t: TaskTiming.model_validate(v) for t, v in parsed.items()})
        return runs, timings
