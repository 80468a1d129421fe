"""The runs list index: its writers' half and its one typed reader.

Every run is in `runs:submitted`, in `runs:name:{name}`, and in exactly one
`runs:state:{state}` and `runs:name:{name}:state:{state}`; each a sorted set of
dagId -> submittedAt (keys in `helios.keys`). A listing with any combination of name and
state filters is therefore a range read of at most four sorted sets (one per state asked
for), merged: no keyspace scan, no intersection computed on read, no temporary key.

Writers, each inside the caller's MULTI so the index never disagrees with the run hash:
the api at submission (`index_submitted`, with the hash's initial RUNNING), the scheduler
on every run state change (`index_state`), retention when it deletes a run (`unindex`),
and the api when a submission it stored could not be published (`unindex`).

Pages are ordered by (submittedAt, dagId), newest first (Redis orders equal scores by
member, so the tie-break is the index's own). A cursor is the position of the last run a
page showed: the next page starts strictly after it, so runs submitted meanwhile (newer,
hence before the cursor) neither shift nor repeat what follows.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import WatchError

from helios import keys
from helios.states import RunState

# The cursor is opaque to clients, but a plain `{score}_{dagId}` so that its OpenAPI
# pattern describes exactly the values that decode (a schema-valid cursor never gets 400).
CURSOR_PATTERN = r"^[0-9]{1,17}(\.[0-9]{1,17})?_[0-9a-f]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN)
MAX_NAMES = 1000  # the name filter's choices: the most recently used names
_RUN_FIELDS = ("dagName", "state", "submittedAt", "startedAt", "endedAt", "useCache",
               "taskCount")


class CursorError(ValueError):
    """A cursor that this index never handed out."""


@dataclass(frozen=True, order=True)
class Position:
    """A run's place in the index; larger is newer."""

    submitted_at: float
    dag_id: str


def encode_cursor(pos: Position) -> str:
    # The shortest decimal that round-trips (repr), written without an exponent.
    return f"{Decimal(repr(pos.submitted_at)):f}_{pos.dag_id}"


def decode_cursor(raw: str) -> Position:
    if not _CURSOR.fullmatch(raw):
        raise CursorError("cursor is not one that a previous page returned as `next`")
    score, _, dag_id = raw.partition("_")
    value = float(score)
    if not math.isfinite(value):  # 17 digits cannot overflow; kept as the invariant's guard
        raise CursorError("cursor is out of range")
    return Position(value, dag_id)


def sources(name: str | None, states: Iterable[RunState]) -> list[str]:
    """The sorted sets whose union is the filtered listing (one per state, else one)."""
    chosen = sorted(set(states))
    if not chosen:
        return [keys.runs_by_name(name) if name else keys.RUNS_SUBMITTED]
    if name:
        return [keys.runs_by_name_state(name, s.value) for s in chosen]
    return [keys.runs_by_state(s.value) for s in chosen]


def after(entries: Iterable[tuple[str, float]], cursor: Position | None) -> list[Position]:
    """The entries strictly older than the cursor, as positions."""
    out = [Position(float(score), str(member)) for member, score in entries]
    return out if cursor is None else [p for p in out if p < cursor]


def merge(lists: Sequence[Sequence[Position]], count: int) -> list[Position]:
    """The newest `count` positions of several newest-first lists (no duplicates: a run is
    in one state set only, but a retried run may be seen mid-move)."""
    merged = heapq.merge(*lists, reverse=True)
    seen: set[str] = set()
    out: list[Position] = []
    for pos in merged:
        if pos.dag_id not in seen:
            seen.add(pos.dag_id)
            out.append(pos)
            if len(out) == count:
                break
    return out


def page(positions: list[Position], limit: int) -> tuple[list[Position], str | None]:
    """`positions` holds up to limit+1 entries: the page, and the cursor when there are more."""
    shown = positions[:limit]
    more = len(positions) > limit and bool(shown)
    return shown, encode_cursor(shown[-1]) if more else None


# --- writers (the caller's MULTI pipeline) -------------------------------------------


def index_submitted(pipe: Any, dag_id: str, dag_name: str, submitted_at: float) -> None:
    """A new run, RUNNING (the state the api writes into its hash in the same MULTI)."""
    index_state(pipe, dag_id, dag_name, submitted_at, RunState.RUNNING)


def index_state(pipe: Any, dag_id: str, dag_name: str, submitted_at: float,
                state: RunState) -> None:
    """Put the run in its current state's sets and out of every other (idempotent: a
    redelivered decision writes the same thing again)."""
    entry = {dag_id: submitted_at}
    pipe.zadd(keys.RUNS_SUBMITTED, entry)
    pipe.zadd(keys.runs_by_name(dag_name), entry)
    pipe.zadd(keys.RUN_NAMES, {dag_name: submitted_at}, gt=True)
    for s in RunState:
        if s is state:
            pipe.zadd(keys.runs_by_state(s.value), entry)
            pipe.zadd(keys.runs_by_name_state(dag_name, s.value), entry)
        else:
            pipe.zrem(keys.runs_by_state(s.value), dag_id)
            pipe.zrem(keys.runs_by_name_state(dag_name, s.value), dag_id)


def unindex(pipe: Any, dag_id: str, dag_name: str | None) -> None:
    """Drop a deleted run from every set (its name's, when the name is known). A name
    whose last run went stays in `runs:names`; `dag_names` skips it and `prune_name`
    removes it."""
    pipe.zrem(keys.RUNS_SUBMITTED, dag_id)
    for s in RunState:
        pipe.zrem(keys.runs_by_state(s.value), dag_id)
    if dag_name:
        pipe.zrem(keys.runs_by_name(dag_name), dag_id)
        for s in RunState:
            pipe.zrem(keys.runs_by_name_state(dag_name, s.value), dag_id)


async def prune_name(redis: aioredis.Redis, dag_name: str) -> bool:
    """Remove a name whose every run is gone from `runs:names`. WATCHed: a run of that
    name submitted meanwhile aborts the removal. True when removed."""
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(keys.runs_by_name(dag_name))
            if await pipe.zcard(keys.runs_by_name(dag_name)):
                await pipe.unwatch()
                return False
            pipe.multi()
            pipe.zrem(keys.RUN_NAMES, dag_name)
            await pipe.execute()
        except WatchError:
            return False
    return True


# --- the typed reader ----------------------------------------------------------------


class RunSummary(BaseModel):
    """One row of the runs list (the JSON uses the aliases)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    dag_id: str = Field(alias="dagId")
    dag_name: str | None = Field(alias="dagName")
    state: RunState
    submitted_at: float | None = Field(alias="submittedAt")
    started_at: float | None = Field(alias="startedAt")
    ended_at: float | None = Field(alias="endedAt")
    duration_ms: int | None = Field(alias="durationMs")
    task_count: int | None = Field(alias="taskCount")
    use_cache: bool = Field(alias="useCache")


@dataclass(frozen=True)
class RunPage:
    runs: list[RunSummary]
    next: str | None


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def summary(dag_id: str, values: Sequence[str | None]) -> RunSummary | None:
    """A row from the run hash's fields (`_RUN_FIELDS` order); None when the hash is gone
    (deleted after the index was read). An unreadable field reads as absent."""
    name, state, submitted, started, ended, use_cache, tasks = values
    if name is None and state is None:
        return None
    try:
        run_state = RunState(state) if state else RunState.RUNNING
    except ValueError:
        run_state = RunState.RUNNING
    start, end = _num(started), _num(ended)
    return RunSummary(
        dag_id=dag_id, dag_name=name, state=run_state, submitted_at=_num(submitted),
        started_at=start, ended_at=end,
        duration_ms=round((end - start) * 1000) if start and end else None,
        task_count=int(tasks) if tasks and tasks.isdigit() else None,
        use_cache=use_cache != "false",
    )


async def list_runs(redis: aioredis.Redis, *, name: str | None = None,
                    states: Iterable[RunState] = (), limit: int = 50,
                    cursor: Position | None = None) -> RunPage:
    """One page of runs, newest first: two round trips (the index ranges, then the run
    hashes of the page), whatever the filters and however many runs there are."""
    want = limit + 1
    srcs = sources(name, states)
    hi = "+inf" if cursor is None else f"({cursor.submitted_at!r}"
    async with redis.pipeline(transaction=False) as pipe:
        for key in srcs:
            if cursor is not None:
                # Runs submitted in the very same instant as the cursor's run (rare): the
                # ones ordered after it by id are the page's first.
                pipe.zrevrangebyscore(key, repr(cursor.submitted_at),
                                      repr(cursor.submitted_at), withscores=True)
            pipe.zrevrangebyscore(key, hi, "-inf", start=0, num=want, withscores=True)
        replies = await pipe.execute()
    step = 2 if cursor is not None else 1
    lists = [after(itertools.chain(*replies[i:i + step]), cursor)
             for i in range(0, len(replies), step)]
    shown, nxt = page(merge(lists, want), limit)
    if not shown:
        return RunPage([], None)
    async with redis.pipeline(transaction=False) as pipe:
        for pos in shown:
            pipe.hmget(keys.run(pos.dag_id), _RUN_FIELDS)
        rows = await pipe.execute()
    runs = [s for pos, row in zip(shown, rows, strict=True)
            if (s := summary(pos.dag_id, row)) is not None]
    return RunPage(runs, nxt)


async def dag_names(redis: aioredis.Redis, limit: int = MAX_NAMES) -> list[str]:
    """DAG names with at least one run, most recently submitted first."""
    names = [str(n) for n in await redis.zrevrange(keys.RUN_NAMES, 0, limit - 1)]
    if not names:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for n in names:
            pipe.exists(keys.runs_by_name(n))
        alive = await pipe.execute()
    return [n for n, ok in zip(names, alive, strict=True) if ok]
