"""Run ids and the stored DAG definitions of runs, read the same way by every service."""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict

import orjson
import redis.asyncio as aioredis

from helios import keys
from helios.dag.model import Dag
from helios.dag.parse import parse_dag

RUN_ID_PATTERN = r"^[0-9a-f]{32}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def new_run_id() -> str:
    return uuid.uuid4().hex


def is_run_id(value: str) -> bool:
    """Run ids become parts of Redis keys, subjects and host paths: only ours pass."""
    return bool(_RUN_ID.match(value))


class Definitions:
    """Parsed definitions by run id, least recently used first out. A definition never
    changes after submission, so each process parses it once."""

    def __init__(self, redis: aioredis.Redis, size: int = 512):
        self.redis = redis
        self.size = size
        self._dags: OrderedDict[str, Dag] = OrderedDict()

    async def get(self, dag_id: str) -> Dag | None:
        dag = self._dags.get(dag_id)
        if dag is not None:
            self._dags.move_to_end(dag_id)
            return dag
        raw = await self.redis.get(keys.definition(dag_id))
        if raw is None:
            return None
        dag = self._dags[dag_id] = parse_dag(orjson.loads(raw))
        if len(self._dags) > self.size:
            self._dags.popitem(last=False)
        return dag
