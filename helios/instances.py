"""The instances of a run's forEach tasks, read the same way by every service.

A forEach task `train` that expanded into N items has entries `train[0]` .. `train[N-1]`,
each with the per-task keys of `helios.keys` under that name; its items are stored as a
JSON list at `keys.task_items` (written once by the scheduler). This module turns a
definition plus those lists into the run's entry names: what the status route, the
runner and retention iterate.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import redis.asyncio as aioredis

from helios import keys
from helios.dag.model import Dag

_INSTANCE = re.compile(r"^(?P<task>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\[(?P<index>0|[1-9][0-9]*)\]$")


def instance_name(task: str, index: int) -> str:
    return f"{task}[{index}]"


def parse_instance(name: str) -> tuple[str, int] | None:
    """`("train", 3)` for `train[3]`; None for a plain task name (without running the
    regex: this is called for every entry on hot paths)."""
    if not name.endswith("]"):
        return None
    match = _INSTANCE.fullmatch(name)
    return (match.group("task"), int(match.group("index"))) if match else None


async def read_items(redis: aioredis.Redis, dag_id: str, dag: Dag) -> dict[str, list[Any]]:
    """The items of every forEach task that has expanded (one round trip)."""
    mapped = [t.name for t in dag.all_tasks if t.for_each is not None]
    if not mapped:
        return {}
    raws = await redis.mget([keys.task_items(dag_id, n) for n in mapped])
    return {n: orjson.loads(raw) for n, raw in zip(mapped, raws, strict=True) if raw}


def entry_names(dag: Dag, items: dict[str, list[Any]]) -> list[str]:
    """Every task and exit handler, each forEach task followed by its instances."""
    out: list[str] = []
    for task in dag.all_tasks:
        out.append(task.name)
        out += [instance_name(task.name, i) for i in range(len(items.get(task.name, ())))]
    return out


async def run_entries(redis: aioredis.Redis, dag_id: str, dag: Dag) -> list[str]:
    return entry_names(dag, await read_items(redis, dag_id, dag))
