"""Every message on NATS, as pydantic models serialised to JSON.

Each message knows its own de-duplication id (`msg_id`), published as `Nats-Msg-Id`
so JetStream drops a duplicate publish; consumers stay idempotent on top of that.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from helios.dag.model import RunTask, Task
from helios.states import RunState, TaskState


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @property
    def msg_id(self) -> str:
        raise NotImplementedError


# --- commands: api -> scheduler -------------------------------------------------------


class Submission(Message):
    """A stored DAG is ready to run; the definition itself is in Redis."""

    kind: Literal["submit"] = "submit"
    dag_id: str = Field(alias="dagId")
    dag_name: str = Field(alias="dagName")
    use_cache: bool = Field(alias="useCache")
    submitted_at: float = Field(alias="submittedAt")

    @property
    def msg_id(self) -> str:
        return f"submit:{self.dag_id}"


class CancelRequest(Message):
    kind: Literal["cancel"] = "cancel"
    dag_id: str = Field(alias="dagId")
    requested_at: float = Field(alias="requestedAt")
    generation: int = Field(default=0, description="The run generation being cancelled.")

    @property
    def msg_id(self) -> str:
        return f"cancel:{self.dag_id}:{self.generation}"


class RetryRequest(Message):
    """Re-run the failed and upstream-failed tasks of a finished run."""

    kind: Literal["retry"] = "retry"
    dag_id: str = Field(alias="dagId")
    request_id: str = Field(alias="requestId")
    requested_at: float = Field(alias="requestedAt")

    @property
    def msg_id(self) -> str:
        return f"retry:{self.dag_id}:{self.request_id}"


class Wake(Message):
    """A timer: dispatch `task`'s `attempt` no earlier than `fire_at` (retry backoff)."""

    kind: Literal["wake"] = "wake"
    dag_id: str = Field(alias="dagId")
    task: str
    attempt: int
    fire_at: float = Field(alias="fireAt")

    @property
    def msg_id(self) -> str:
        return f"wake:{self.dag_id}:{self.task}:{self.attempt}"


Command = Annotated[Submission | CancelRequest | RetryRequest | Wake, Field(discriminator="kind")]


# --- dispatch: scheduler -> executor -------------------------------------------------


class InputArtifact(Message):
    """One input of a task attempt, resolved to the producer's uploaded object."""

    name: str = Field(description="File name placed at /artifacts/{name}.")
    from_task: str = Field(alias="fromTask")
    artifact: str
    key: str = Field(description="Object key in the artifacts bucket.")
    sha256: str
    size: int


class OutputArtifact(Message):
    name: str
    key: str
    sha256: str
    size: int


class TaskDispatch(Message):
    """Run one attempt of one task. `job_name` is deterministic: the idempotency key."""

    dag_id: str = Field(alias="dagId")
    dag_name: str = Field(alias="dagName")
    # A forEach instance is dispatched as a RunTask named `task[i]`, rendered for its item.
    task: Task | RunTask
    attempt: int
    job_name: str = Field(alias="jobName")
    use_cache: bool = Field(alias="useCache", description="Run-level and task-level flags combined.")
    inputs: list[InputArtifact] = Field(default_factory=list)
    dispatched_at: float = Field(alias="dispatchedAt")
    # A `when` may read this task's `.result`: the Kubernetes executor then collects it.
    want_result: bool = Field(False, alias="wantResult")

    @property
    def msg_id(self) -> str:
        return f"dispatch:{self.job_name}"


class CancelRun(Message):
    """Broadcast (core NATS): stop whatever still runs for this run."""

    dag_id: str = Field(alias="dagId")

    @property
    def msg_id(self) -> str:
        return f"cancel-run:{self.dag_id}"


# --- reports: executor/watcher -> scheduler ------------------------------------------


class Timings(Message):
    """Epoch seconds of one attempt's milestones; None when not (yet) known."""

    queued_at: float | None = Field(default=None, alias="queuedAt")
    scheduled_at: float | None = Field(default=None, alias="scheduledAt")
    started_at: float | None = Field(default=None, alias="startedAt")
    finished_at: float | None = Field(default=None, alias="finishedAt")


class CacheStats(Message):
    hits: int = 0
    misses: int = 0
    bytes_saved: int = Field(default=0, alias="bytesSaved")
    bytes_fetched: int = Field(default=0, alias="bytesFetched")


class TaskReport(Message):
    """What an executor observed about one attempt (the same shape for every backend)."""

    dag_id: str = Field(alias="dagId")
    task: str
    attempt: int
    phase: Literal["running", "succeeded", "failed"]
    at: float
    exit_code: int | None = Field(default=None, alias="exitCode")
    reason: str | None = None
    message: str | None = None
    node: str | None = None
    timings: Timings = Field(default_factory=Timings)
    cache: CacheStats = Field(default_factory=CacheStats)
    outputs: list[OutputArtifact] = Field(default_factory=list)
    result: JsonValue = Field(default=None, description=(
        "The JSON value the attempt wrote to /artifacts/.result (at most 64 KiB), if any."))

    @property
    def msg_id(self) -> str:
        return f"report:{self.dag_id}:{self.task}:{self.attempt}:{self.phase}"


# --- transitions: scheduler -> SSE clients, metrics ---------------------------------


class TaskEvent(Message):
    type: Literal["task"] = "task"
    dag_id: str = Field(alias="dagId")
    dag_name: str = Field(alias="dagName")
    task: str
    state: TaskState
    attempt: int
    at: float
    node: str | None = None
    exit_code: int | None = Field(default=None, alias="exitCode")
    reason: str | None = None
    message: str | None = None
    memoized: bool = False
    use_cache: bool = Field(default=True, alias="useCache")
    inputs: int = Field(default=0, description="How many inputs the attempt placed.")
    cache: CacheStats = Field(default_factory=CacheStats)
    timings: Timings = Field(default_factory=Timings)
    generation: int = Field(default=0, description="The run's retry generation.")
    lost_attempts: int = Field(default=0, alias="lostAttempts",
                               description="Attempts of the task lost with their executor.")
    map_of: str | None = Field(default=None, alias="mapOf",
                               description="An instance `task[i]`: its forEach task.")
    index: int | None = Field(default=None, description="An instance: its item's index.")

    @property
    def msg_id(self) -> str:
        return f"task:{self.dag_id}:{self.generation}:{self.task}:{self.attempt}:{self.state}"


class RunEvent(Message):
    type: Literal["run"] = "run"
    dag_id: str = Field(alias="dagId")
    dag_name: str = Field(alias="dagName")
    state: RunState
    at: float
    use_cache: bool = Field(alias="useCache")
    task_count: int = Field(alias="taskCount")
    started_at: float = Field(alias="startedAt")
    ended_at: float | None = Field(default=None, alias="endedAt")
    generation: int = Field(default=0, description="Bumped by every retry of the run.")

    @property
    def msg_id(self) -> str:
        return f"run:{self.dag_id}:{self.generation}:{self.state}"


Event = Annotated[TaskEvent | RunEvent, Field(discriminator="type")]
