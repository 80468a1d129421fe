"""What a scheduling decision produces: the plan of effects (transitions, launches,
timers, expansions, the run's end) and the policy it follows. `decide.py` makes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helios.states import RunState, TaskState


@dataclass(frozen=True)
class Policy:
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 300.0
    max_running_per_run: int = 1_000_000
    lost_attempts_max: int = 3  # lost attempts re-run per task before a loss counts as a failure

    def backoff(self, failed_attempt: int) -> float:
        """Delay before attempt `failed_attempt + 1`: exponential, capped."""
        return min(self.retry_backoff_max_s, self.retry_backoff_s * 2 ** (failed_attempt - 1))


@dataclass
class Transition:
    task: str
    state: TaskState
    attempt: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timer:
    task: str
    attempt: int
    delay_s: float


@dataclass
class Plan:
    transitions: list[Transition] = field(default_factory=list)
    launch: list[tuple[str, int]] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    run_state: RunState | None = None  # set when the run changes state
    cancel_executor: bool = False
    expand: list[str] = field(default_factory=list)  # forEach tasks whose items need I/O
    expanded: dict[str, list[Any]] = field(default_factory=dict)  # items to store

    @property
    def empty(self) -> bool:
        return not (self.transitions or self.launch or self.timers or self.run_state
                    or self.cancel_executor or self.expand or self.expanded)


def merge(into: Plan, step: Plan) -> None:
    """Fold one decision's plan into the batch's."""
    into.transitions += step.transitions
    into.launch += step.launch
    into.timers += step.timers
    if step.run_state is not None:
        into.run_state = step.run_state
    into.cancel_executor |= step.cancel_executor
    into.expand += step.expand
    into.expanded.update(step.expanded)
