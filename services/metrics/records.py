"""Which event of a task (or run) is the current one, and how events are stored.

Delivery is at-least-once and a redelivered message may arrive after newer ones, so the
stored event of a task is a max-register: an event replaces the stored one only when it
is later in (attempt, state rank, time). Applying the same events in any order, any
number of times, leaves the same record; that is what makes the effect exactly-once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from helios.messages import RunEvent, TaskEvent
from helios.states import TaskState
from services.metrics import keys

Order = tuple[int, float]

_TASK_RANK = {TaskState.PENDING: 0, TaskState.QUEUED: 1, TaskState.RUNNING: 2}
_TERMINAL_RANK = 3
_RANKS_PER_STEP = 10  # room for the ranks above inside one attempt (or generation)

# Free text can be long and the metrics never read it.
_TASK_UNSTORED = {"message", "reason"}


def task_order(event: TaskEvent) -> Order:
    """A retry's attempt beats every state of earlier attempts; within an attempt the
    state rank decides, then the time (a run retry may restart a task at attempt 0)."""
    rank = _TERMINAL_RANK if event.state.terminal else _TASK_RANK[event.state]
    return (event.attempt * _RANKS_PER_STEP + rank, event.at)


def run_order(event: RunEvent) -> Order:
    """A retried run (generation + 1) beats its earlier outcome; terminal beats RUNNING."""
    return (event.generation * _RANKS_PER_STEP + int(event.state.terminal), event.at)


def supersedes(new: Order, old: Order | None) -> bool:
    """The Python twin of the comparison in `store.APPLY` (kept for tests and docs)."""
    return old is None or new > old


def start_score(event: TaskEvent | RunEvent) -> float:
    """The earliest time this event says the run existed; the window is ordered by the
    minimum over a run's events, which no delivery order can change."""
    if isinstance(event, RunEvent):
        return min(event.at, event.started_at)
    return event.at


def encode(event: TaskEvent | RunEvent) -> tuple[str, Order, str]:
    """(state hash field, order, stored JSON) of one event."""
    if isinstance(event, RunEvent):
        order = run_order(event)
        body = event.model_dump(mode="json", by_alias=True)
        name = keys.STATE_RUN_FIELD
    else:
        order = task_order(event)
        body = event.model_dump(mode="json", by_alias=True, exclude=_TASK_UNSTORED)
        name = keys.state_task_field(event.task)
    return name, order, orjson.dumps({"k": list(order), "e": body}).decode()


@dataclass
class Snapshot:
    """Everything stored about one run, read at one instant."""

    version: int = 0
    run: RunEvent | None = None
    tasks: dict[str, TaskEvent] = field(default_factory=dict)
    queued: dict[tuple[str, int], float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.run is None and not self.tasks


def decode_state(fields: dict[str, str]) -> Snapshot:
    snap = Snapshot(version=int(fields.get(keys.STATE_VERSION_FIELD, 0)))
    for name, value in fields.items():
        kind, task, attempt = keys.parse_state_field(name)
        if kind == keys.STATE_RUN_FIELD:
            snap.run = RunEvent.model_validate(orjson.loads(value)["e"])
        elif kind == "task":
            snap.tasks[task] = TaskEvent.model_validate(orjson.loads(value)["e"])
        elif kind == "queued":
            snap.queued[(task, attempt)] = float(value)
    return snap
