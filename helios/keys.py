"""The one place that names Redis keys. The seed's names are kept as documented."""

from __future__ import annotations


def definition(dag_id: str) -> str:
    return f"dag:{dag_id}:definition"


def use_cache(dag_id: str) -> str:
    return f"dag:{dag_id}:useCache"


def run(dag_id: str) -> str:
    """Hash: dagName, state, submittedAt, startedAt, endedAt, generation."""
    return f"dag:{dag_id}:run"


def task_status(dag_id: str, task: str) -> str:
    return f"dag:{dag_id}:task:{task}:status"


def task_logs(dag_id: str, task: str) -> str:
    return f"dag:{dag_id}:task:{task}:logs"


def task_attempts(dag_id: str, task: str) -> str:
    return f"dag:{dag_id}:task:{task}:attempts"


def task_detail(dag_id: str, task: str) -> str:
    """Hash: node, exitCode, reason, message, timings, cache, memoized, outputs (JSON)."""
    return f"dag:{dag_id}:task:{task}:detail"


def task_outputs(dag_id: str, task: str) -> str:
    """Hash: file name -> JSON {key, sha256, size} of each uploaded output."""
    return f"dag:{dag_id}:task:{task}:outputs"


def attempt_claim(dag_id: str, task: str, attempt: int) -> str:
    """SET NX by the executor that starts an attempt: a redelivery cannot start it twice."""
    return f"dag:{dag_id}:task:{task}:attempt:{attempt}:claim"


def attempt_watch(dag_id: str, task: str, attempt: int) -> str:
    """Hash: which steps (running, terminal, logs) the Kubernetes watcher has done for an
    attempt, so a restarted watcher neither reports nor archives anything twice."""
    return f"dag:{dag_id}:task:{task}:attempt:{attempt}:watch"


def metrics(dag_id: str) -> str:
    return f"dag:{dag_id}:metrics"


def dag_runs(dag_name: str) -> str:
    return f"dagRuns:{dag_name}"


def memo(fingerprint: str) -> str:
    """Hash: a memoizable task's fingerprint -> the successful attempt it can reuse."""
    return f"memo:{fingerprint}"


def run_pattern(dag_id: str) -> str:
    """Every key of one run (used when a run falls out of the metrics window)."""
    return f"dag:{dag_id}:*"


def services() -> str:
    """Hash: "{service}/{instance}" -> JSON heartbeat (ready, checks, at)."""
    return "helios:services"


def outbox(dag_id: str) -> str:
    """The scheduler's effects of a stored decision not yet confirmed as sent."""
    return f"dag:{dag_id}:outbox"


def memo_last(dag_name: str, task: str) -> str:
    """JSON fingerprint parts of the last successful memoizable attempt of a task name,
    so a task that runs again can say which part changed."""
    return f"memo:last:{dag_name}:{task}"
