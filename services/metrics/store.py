"""The Redis adapter: apply one event atomically, rewrite a run's metrics, keep the window.

Exactly-once effect over at-least-once delivery, in two steps:

1. `apply` (one Lua script, atomic): ignore the event if retention deleted its run or its
   message id was seen; otherwise keep it if it beats the stored event of its task/run
   (`records.task_order`), bump the run's version, and place the run in the name's order.
2. `refresh`: read the run's state (one HGETALL, a consistent snapshot), compute its
   metrics in Python, and write them only if the version is unchanged and the run was not
   deleted meanwhile. A refresh that loses the race skips: whoever bumped the version
   refreshes after it. A redelivered (duplicate) event still refreshes, which repairs a
   crash between the two steps.

The window is a view: `metrics:order:{name}` holds every run of the name that still
exists, and `dagRuns:{name}` is rebuilt from its newest `window` entries whenever they
change. A run leaving the window leaves the window and nothing else; only retention
deletes runs, and `prune` (fed from `runs:deleted`) takes a deleted run out of the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import orjson
import redis.asyncio as aioredis

from helios import keys as shared_keys
from helios.messages import RunEvent, TaskEvent
from helios.states import TaskState
from helios.store import as_text
from helios.subjects import STREAMS
from services.metrics import keys, records
from services.metrics.aggregate import RunMetrics, TaskTiming, run_metrics, task_timings

# Rebuilds `dagRuns:{name}` (KEYS[w]) from the newest ARGV[s] runs of the order (KEYS[o]).
_REBUILD = """
local function rebuild(order, window, size)
  redis.call('DEL', window)
  local ids = redis.call('ZREVRANGE', order, 0, size - 1)
  if #ids > 0 then redis.call('RPUSH', window, unpack(ids)) end
end
"""

APPLY = _REBUILD + """
-- KEYS: state, seen, order, deleted, window
-- ARGV: dagId, msgId, field, record, k1, k2, score, windowSize, versionField,
--       queuedField, queuedAt
local dag = ARGV[1]
if redis.call('ZSCORE', KEYS[4], dag) then return {'deleted', 0} end
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return {'duplicate', 0} end
local k1, k2 = tonumber(ARGV[5]), tonumber(ARGV[6])
local newer = 1
local old = redis.call('HGET', KEYS[1], ARGV[3])
if old then
  local o = cjson.decode(old).k
  if not (k1 > o[1] or (k1 == o[1] and k2 > o[2])) then newer = 0 end
end
if newer == 1 then redis.call('HSET', KEYS[1], ARGV[3], ARGV[4]) end
if ARGV[10] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[10], ARGV[11]) end
redis.call('HINCRBY', KEYS[1], ARGV[9], 1)
-- LT: a run keeps the earliest time any of its events reported, whatever the order.
-- Only a change among the newest windowSize runs changes the window.
local size = tonumber(ARGV[8])
local before = redis.call('ZREVRANK', KEYS[3], dag)
if redis.call('ZADD', KEYS[3], 'LT', 'CH', ARGV[7], dag) == 1 then
  if (before and before < size) or redis.call('ZREVRANK', KEYS[3], dag) < size then
    rebuild(KEYS[3], KEYS[5], size)
  end
end
return {'applied', newer}
"""

PRUNE = _REBUILD + """
-- KEYS: order, deleted, window, metrics, state, seen, timings
-- ARGV: dagId, now, windowSize, tombstoneAge, tombstoneCap
local now = tonumber(ARGV[2])
local size = tonumber(ARGV[3])
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[4])))
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[5]) + 1))
-- Retention deleted these with the run; an event that raced it may have written again.
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7])
if rank and rank < size then rebuild(KEYS[1], KEYS[3], size) end
if rank then return 1 end
return 0
"""

WRITE = """
-- KEYS: metrics, timings, state, deleted
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
    DELETED = "deleted"  # retention deleted the run: its late events change nothing


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    newer: bool = False



class MetricsStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        window: int = keys.WINDOW_SIZE,
        tombstone_age_s: float = STREAMS.run_history_s,
        tombstone_cap: int = 10_000,
    ):
        """`tombstone_age_s`: a deleted run is remembered as long as JetStream may
        still redeliver its events (the run stream's retention)."""
        self.redis = redis
        self.window = window
        self.tombstone_age_s = tombstone_age_s
        self.tombstone_cap = tombstone_cap
        self._apply = redis.register_script(APPLY)
        self._write = redis.register_script(WRITE)
        self._prune = redis.register_script(PRUNE)

    async def apply(self, event: TaskEvent | RunEvent) -> Applied:
        name, order, body = records.encode(event)
        queued_field = queued_at = ""
        if isinstance(event, TaskEvent) and event.state is TaskState.QUEUED:
            queued_field = keys.state_queued_field(event.task, event.attempt)
            queued_at = repr(event.at)
        result = await self._apply(
            keys=[
                keys.state(event.dag_id), keys.seen(event.dag_id), keys.order(event.dag_name),
                keys.deleted(event.dag_name), shared_keys.dag_runs(event.dag_name),
            ],
            args=[
                event.dag_id, event.msg_id, name, body, order[0], repr(order[1]),
                repr(records.start_score(event)), self.window, keys.STATE_VERSION_FIELD,
                queued_field, queued_at,
            ],
        )
        return Applied(Outcome(result[0]), bool(int(result[1])))

    async def refresh(self, dag_id: str) -> RunMetrics | None:
        """Recompute and store the run's metrics; None when skipped (deleted or raced)."""
        raw = await self.redis.hgetall(keys.state(dag_id))
        snap = records.decode_state({as_text(k): as_text(v) for k, v in raw.items()})
        if snap.empty:
            return None
        metrics = run_metrics(dag_id, snap)
        timings = {k: v.model_dump(by_alias=True, exclude_none=True)
                   for k, v in task_timings(snap).items()}
        pairs = [item for kv in metrics.to_hash().items() for item in kv]
        written = await self._write(
            keys=[shared_keys.metrics(dag_id), keys.timings(dag_id), keys.state(dag_id),
                  keys.deleted(metrics.dag_name)],
            args=[dag_id, snap.version, keys.STATE_VERSION_FIELD,
                  orjson.dumps(timings).decode(), *pairs],
        )
        return metrics if written else None

    async def prune(self, dag_id: str, dag_name: str, now: float) -> bool:
        """Retention deleted the run: out of the order (and the window, which refills
        from the next newest run that exists), remembered so its late events are
        ignored. True when it was in the order. Idempotent."""
        removed = await self._prune(
            keys=[keys.order(dag_name), keys.deleted(dag_name), shared_keys.dag_runs(dag_name),
                  shared_keys.metrics(dag_id), keys.state(dag_id), keys.seen(dag_id),
                  keys.timings(dag_id)],
            args=[dag_id, repr(now), self.window, self.tombstone_age_s, self.tombstone_cap],
        )
        return bool(int(removed))

    async def window_runs(
        self, dag_name: str, limit: int
    ) -> tuple[list[RunMetrics], list[dict[str, TaskTiming]]]:
        """The newest `limit` runs of `dag_name` and their per-task timings."""
        ids = [as_text(v) for v in
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
                # Placed in the window, metrics not written yet (next time), or deleted by
                # retention a moment ago (pruned as soon as `runs:deleted` is read).
                continue
            runs.append(RunMetrics.from_hash(fields))
            parsed = orjson.loads(raw) if raw else {}
            timings.append({t: TaskTiming.model_validate(v) for t, v in parsed.items()})
        return runs, timings
