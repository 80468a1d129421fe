"""Redis keys private to the metrics service (the shared ones live in `helios.keys`).

Per-run keys sit under `dag:{dagId}:metrics:` so the window's eviction, which deletes
every `dag:{dagId}:*` key, removes them with the rest of the run. Per-name bookkeeping
sits under `metrics:` so nothing else mistakes it for a documented key.
"""

from __future__ import annotations

WINDOW_SIZE = 100
"""Runs kept per DAG name (ARCHITECTURE.md, `dagRuns:{dagName}`)."""


def state(dag_id: str) -> str:
    """Hash: `run` -> latest run event, `task:{name}` -> latest task event,
    `queued:{name}:{attempt}` -> when that attempt was queued, `version` -> apply count."""
    return f"dag:{dag_id}:metrics:state"


def seen(dag_id: str) -> str:
    """Set of applied message ids: tells a first application from a redelivery."""
    return f"dag:{dag_id}:metrics:seen"


def timings(dag_id: str) -> str:
    """String: JSON per-task phase durations of the run (input of the summary)."""
    return f"dag:{dag_id}:metrics:timings"


def order(dag_name: str) -> str:
    """Sorted set: dagId -> earliest time seen; the source `dagRuns:{dagName}` is built from."""
    return f"metrics:order:{dag_name}"


def evicted(dag_name: str) -> str:
    """Sorted set: dagId -> eviction time. A late or replayed event of an evicted run
    must not bring it back; bounded by age and count."""
    return f"metrics:evicted:{dag_name}"


SWEEP = "metrics:sweep"
"""Set of evicted dagIds whose `dag:{dagId}:*` keys are still to be deleted (crash-safe)."""


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
