"""Redis keys private to the metrics service (the shared ones live in `helios.keys`).

Per-run keys sit under `dag:{dagId}:metrics:` and are named in `helios.keys`, because
retention deletes them with the rest of the run. Per-name bookkeeping sits under
`metrics:` so nothing else mistakes it for a documented key.
"""

from __future__ import annotations

from helios import keys as shared

WINDOW_SIZE = 100
"""Runs shown per DAG name (ARCHITECTURE.md, `dagRuns:{dagName}`)."""

state = shared.metrics_state
seen = shared.metrics_seen
timings = shared.metrics_timings


def order(dag_name: str) -> str:
    """Sorted set: dagId -> earliest time seen, of every run of the name that still
    exists (retention prunes it); `dagRuns:{dagName}` is its newest `WINDOW_SIZE`."""
    return f"metrics:order:{dag_name}"


def deleted(dag_name: str) -> str:
    """Sorted set: dagId -> when metrics learnt retention deleted it. A late or replayed
    event of a deleted run must not bring it back; bounded by age and count."""
    return f"metrics:deleted:{dag_name}"


DELETIONS_CURSOR = "metrics:deletions:cursor"
"""String: the last `runs:deleted` stream entry this service has applied."""


def state_task_field(task: str) -> str:
    return f"task:{task}"


def state_queued_field(task: str, attempt: int) -> str:
    return f"queued:{task}:{attempt}"


STATE_RUN_FIELD = "run"
STATE_VERSION_FIELD = "version"


def parse_state_field(name: str) -> tuple[str, str, int]:
    """(kind, task, attempt) of a state hash field; kind is run|task|queued|version."""
    kind, _, rest = name.partition(":")
    if kind == "queued":
        task, _, attempt = rest.rpartition(":")
        return kind, task, int(attempt)
    return kind, rest, 0
