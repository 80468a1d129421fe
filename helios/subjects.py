"""The one place that names NATS subjects and JetStream streams."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

PREFIX = "helios"


def submit(dag_id: str) -> str:
    return f"{PREFIX}.cmd.submit.{dag_id}"


def cancel(dag_id: str) -> str:
    return f"{PREFIX}.cmd.cancel.{dag_id}"


def retry(dag_id: str) -> str:
    return f"{PREFIX}.cmd.retry.{dag_id}"


def wake(dag_id: str) -> str:
    return f"{PREFIX}.cmd.wake.{dag_id}"


def dispatch(dag_id: str) -> str:
    """Local-executor work queue (the Kubernetes backend creates Jobs instead)."""
    return f"{PREFIX}.dispatch.{dag_id}"


def cancel_run(dag_id: str) -> str:
    """Core-NATS broadcast to executors; not persisted (the run state in Redis is the truth)."""
    return f"{PREFIX}.ctl.cancel.{dag_id}"


CANCEL_RUN_ALL = f"{PREFIX}.ctl.cancel.*"


def report(dag_id: str) -> str:
    return f"{PREFIX}.exec.{dag_id}"


def task_event(dag_id: str, task: str) -> str:
    return f"{PREFIX}.run.{dag_id}.task.{task}"


def run_event(dag_id: str) -> str:
    return f"{PREFIX}.run.{dag_id}.run"


def run_feed(dag_id: str) -> str:
    """Every transition of one run, in order: the SSE replay filter."""
    return f"{PREFIX}.run.{dag_id}.>"


@dataclass(frozen=True)
class Streams:
    """JetStream streams; `replicas` is 1 on one machine, 3 in a clustered NATS."""

    replicas: int = 1
    commands: str = "HELIOS_CMD"
    dispatch: str = "HELIOS_DISPATCH"
    reports: str = "HELIOS_EXEC"
    runs: str = "HELIOS_RUNS"
    duplicate_window_s: float = 120.0
    run_history_s: float = 7 * 24 * 3600.0

    def configs(self) -> list[StreamConfig]:
        def stream(name: str, subject: str, retention: RetentionPolicy,
                   max_age: float | None = None) -> StreamConfig:
            return StreamConfig(
                name=name, subjects=[subject], retention=retention, max_age=max_age,
                num_replicas=self.replicas, storage=StorageType.FILE,
                duplicate_window=self.duplicate_window_s,
                # Old runs age out of the replay log; a new write never fails for space.
                discard=DiscardPolicy.OLD,
            )

        return [
            stream(self.commands, f"{PREFIX}.cmd.>", RetentionPolicy.LIMITS, self.run_history_s),
            stream(self.dispatch, f"{PREFIX}.dispatch.>", RetentionPolicy.WORK_QUEUE),
            stream(self.reports, f"{PREFIX}.exec.>", RetentionPolicy.LIMITS, self.run_history_s),
            stream(self.runs, f"{PREFIX}.run.>", RetentionPolicy.LIMITS, self.run_history_s),
        ]


STREAMS = Streams()
