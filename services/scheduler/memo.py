"""Task memoization: reuse an earlier identical successful attempt instead of running.

A memoizable task's fingerprint (image, command, env, outputs, cacheVersion and the
digests of its inputs; see `helios.artifacts.memo`) is computed when it becomes ready.
A match in `memo:{digest}` means its outputs exist already: the task succeeds at once,
memoized. Otherwise it runs, and its status says why (no earlier attempt, or which
part of the fingerprint changed); its success is then recorded for the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from helios import keys
from helios.artifacts.memo import Fingerprint, explain_change, fingerprint
from helios.dag.model import Task
from helios.messages import InputArtifact, OutputArtifact

MEMO_TTL_S = 30 * 24 * 3600


@dataclass
class MemoHit:
    outputs: list[OutputArtifact]
    source: str  # "run {dagId} attempt {n}"
    result: Any = None  # its /artifacts/.result: `when` conditions downstream read it


class MemoStore:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    @staticmethod
    def fingerprint(task: Task, inputs: list[InputArtifact]) -> Fingerprint:
        return fingerprint(task, {i.name: i.sha256 for i in inputs})

    async def lookup(self, dag_name: str, task: str, fp: Fingerprint) -> MemoHit | str:
        """The reusable attempt, or the reason the task has to run."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.memo(fp.digest))
            pipe.get(keys.memo_last(dag_name, task))
            hit, last = await pipe.execute()
        if hit:
            record = orjson.loads(hit)
            return MemoHit(
                outputs=[OutputArtifact.model_validate(o) for o in record["outputs"]],
                source=f"run {record['dagId']} attempt {record['attempt']}",
                result=record.get("result"),
            )
        return explain_change(orjson.loads(last) if last else None, fp.parts)

    async def record(self, dag_name: str, task: str, dag_id: str, attempt: int,
                     fp_digest: str, parts: dict[str, str], outputs: list[OutputArtifact],
                     result: Any = None) -> None:
        record = {"dagId": dag_id, "attempt": attempt, "result": result,
                  "outputs": [o.model_dump(by_alias=True) for o in outputs]}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.memo(fp_digest), orjson.dumps(record), ex=MEMO_TTL_S)
            # Which entries point at this run's objects: retention keeps those objects
            # while an entry lives, without scanning `memo:*`.
            pipe.sadd(keys.memo_refs(dag_id), fp_digest)
            pipe.expire(keys.memo_refs(dag_id), MEMO_TTL_S)
            pipe.set(keys.memo_last(dag_name, task), orjson.dumps(parts), ex=MEMO_TTL_S)
            await pipe.execute()
