"""Which tasks' `/artifacts/.result` a run may read in a `when` condition.

The local executor always reads a result (it is a file on this machine); on Kubernetes
reading it takes the wait container and an object in S3 (jobs.py, waiter.py), and the
wrapper needs a shell in the task's image, so it is done only for the tasks named by a
condition that mentions `result`. A superset is harmless; a miss would fail the
condition with ConditionError.
"""

from __future__ import annotations

from helios.dag.conditions import ConditionError, references
from helios.dag.model import Dag


def result_readers(dag: Dag) -> frozenset[str]:
    """The names of the tasks a `result`-mentioning condition of `dag` refers to."""
    names: set[str] = set()
    for task in dag.all_tasks:
        if task.when and "result" in task.when:
            try:
                names |= references(task.when).tasks
            except ConditionError:  # refused at submission; nothing to collect for it
                continue
    return frozenset(names)


def base_name(task: str) -> str:
    """A forEach instance `name[i]` is read as `tasks.name`."""
    return task.split("[", 1)[0]
