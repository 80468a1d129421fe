"""The one place that names objects in the artifacts bucket."""

from __future__ import annotations


def output(dag_id: str, task: str, file: str) -> str:
    return f"dags/{dag_id}/tasks/{task}/outputs/{file}"


def log(dag_id: str, task: str, attempt: int) -> str:
    return f"dags/{dag_id}/tasks/{task}/logs/{attempt}.log"


def result(dag_id: str, task: str, attempt: int) -> str:
    """A Kubernetes attempt's `/artifacts/.result`, as its wait container uploaded it."""
    return f"dags/{dag_id}/tasks/{task}/attempts/{attempt}/result.json"


def run_prefix(dag_id: str) -> str:
    """Every object of one run."""
    return f"dags/{dag_id}/"
