"""The scheduler's in-memory view of one run, with the counters decisions need.

A run may hold tens of thousands of entries (a forEach task's instances are entries of
their own, `task[i]`). Decisions run on every report, so they must not scan them all:
the view keeps counts per state and, per expanded forEach task, a heap of pending
instances and counts of active, open and failed ones. Every state change goes through
`RunView.set_state`, which keeps them in step.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from helios.dag.model import Dag, Task
from helios.states import RunState, TaskState
from services.scheduler.expand import instance_name, parse_instance
from services.scheduler.trigger_rules import FAILED_STATES

T = TaskState
ACTIVE = frozenset({T.QUEUED, T.RUNNING})


@dataclass
class TaskView:
    state: TaskState = T.PENDING
    attempt: int = 0
    lost: int = 0  # attempts of this task lost with their executor (they spend no retries)
    exit_code: int | None = None  # of the last attempt (read by `when` conditions)
    result: Any = None  # the JSON value the last attempt wrote to /artifacts/.result
    result_known: bool = False  # `result` was read back or reported (None may be "unread")


@dataclass
class MapIndex:
    """One expanded forEach task's instances, counted."""

    count: int
    pending: list[int] = field(default_factory=list)  # heap; may hold stale indexes
    active: int = 0  # QUEUED or RUNNING
    open: int = 0  # not terminal
    bad: int = 0  # FAILED, UPSTREAM_FAILED or CANCELLED


@dataclass
class RunView:
    dag: Dag
    state: RunState
    tasks: dict[str, TaskView]
    generation: int = 0
    started: bool = True
    lost_known: bool = False  # `TaskView.lost` was read back (the engine fills it in)
    items: dict[str, list[Any]] = field(default_factory=dict)  # expanded forEach tasks
    params: dict[str, Any] = field(default_factory=dict)  # the run's parameter values
    # forEach tasks whose instances' results were read back with this view (see extras).
    results_read: frozenset[str] = frozenset()
    counts: Counter[TaskState] = field(default_factory=Counter)
    maps: dict[str, MapIndex] = field(default_factory=dict)
    _indexed: bool = False

    def index(self) -> None:
        """(Re)build the counters from the entries: once per load, O(entries)."""
        self.counts = Counter(t.state for t in self.tasks.values())
        self.maps = {}
        for name, items in self.items.items():
            m = MapIndex(len(items))
            for i in range(len(items)):
                state = self.tasks[instance_name(name, i)].state
                _count(m, state, +1)
                if state is T.PENDING:
                    m.pending.append(i)
            heapq.heapify(m.pending)
            self.maps[name] = m
        self._indexed = True

    def ensure_index(self) -> None:
        if not self._indexed:
            self.index()

    def set_state(self, name: str, state: TaskState) -> None:
        tv = self.tasks[name]
        old = tv.state
        tv.state = state
        if not self._indexed or old is state:
            return
        self.counts[old] -= 1
        self.counts[state] += 1
        inst = parse_instance(name)
        if inst is not None and inst[0] in self.maps:
            m = self.maps[inst[0]]
            _count(m, old, -1)
            _count(m, state, +1)
            if state is T.PENDING:
                heapq.heappush(m.pending, inst[1])

    def add_instances(self, name: str, items: list[Any]) -> None:
        """Expand `name` into PENDING instances. Expanded again (an exit handler run again
        after a retry, over the same items), an instance keeps its attempt count: its next
        attempt gets a new number, so a Job name is never reused."""
        self.ensure_index()
        self.items[name] = items
        m = MapIndex(len(items), pending=list(range(len(items))), open=len(items))
        for i in range(len(items)):
            old = self.tasks.get(key := instance_name(name, i))
            if old is not None:
                self.counts[old.state] -= 1
            self.tasks[key] = TaskView(attempt=old.attempt, lost=old.lost) if old else TaskView()
        self.counts[T.PENDING] += len(items)
        self.maps[name] = m

    def spec(self, name: str) -> Task:
        """The task an entry runs: itself, or the forEach task an instance belongs to."""
        inst = parse_instance(name)
        return self.dag.task(inst[0] if inst else name)

    def open_count(self) -> int:
        self.ensure_index()
        return sum(c for s, c in self.counts.items() if not s.terminal)

    def running_count(self) -> int:
        """Attempts queued or running (an expanded forEach task itself is not one)."""
        self.ensure_index()
        parents = sum(1 for n in self.items if self.tasks[n].state in ACTIVE)
        return self.counts[T.QUEUED] + self.counts[T.RUNNING] - parents

    def exit_entries(self) -> list[str]:
        """The exit handlers' entries: each handler, and its instances once expanded."""
        out: list[str] = []
        for t in self.dag.on_exit:
            out.append(t.name)
            out += [instance_name(t.name, i) for i in range(len(self.items.get(t.name, ())))]
        return out

    def main_open(self) -> int:
        """Entries of the run's tasks (not its exit handlers) that are not terminal."""
        exits = sum(1 for n in self.exit_entries() if not self.tasks[n].state.terminal)
        return self.open_count() - exits

    def failed_tasks(self) -> list[str]:
        """Entries that FAILED, in document order (instances by index)."""
        out: list[str] = []
        for task in self.dag.tasks:
            if task.name in self.items and self.maps.get(task.name, MapIndex(0)).bad:
                out += [n for i in range(len(self.items[task.name]))
                        if self.tasks[n := instance_name(task.name, i)].state is T.FAILED]
            elif self.tasks[task.name].state is T.FAILED:
                out.append(task.name)
        return out

    def outcome(self, *, main_only: bool = False) -> RunState:
        """What the states add up to: SUCCEEDED when every entry succeeded or was
        skipped, CANCELLED if one was cancelled, FAILED otherwise. `main_only` leaves
        the exit handlers out (the `run.status` they see)."""
        self.ensure_index()
        counts = Counter(self.counts)
        if main_only:
            for n in self.exit_entries():
                counts[self.tasks[n].state] -= 1
        states = {s for s, c in counts.items() if c > 0}
        if states <= {T.SUCCEEDED, T.SKIPPED}:
            return RunState.SUCCEEDED
        if T.CANCELLED in states:
            return RunState.CANCELLED
        return RunState.FAILED


def _count(m: MapIndex, state: TaskState, delta: int) -> None:
    if state in ACTIVE:
        m.active += delta
    if not state.terminal:
        m.open += delta
    if state in FAILED_STATES:
        m.bad += delta
