"""Names Helios puts on its Jobs and pods: labels to select by, annotations to read back.

Labels are for selectors and must be valid label values, so a value that is not one
(too long, odd characters) is replaced by a stable digest; the exact identity of an
attempt always travels in annotations, which the watcher reads.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

APP = "helios-task"
L_APP = "app"
L_RUN = "helios.dev/run-id"
L_DAG_NAME = "helios.dev/dag-name"
L_TASK = "helios.dev/task"
L_ATTEMPT = "helios.dev/attempt"
L_JOB = "helios.dev/job"  # on pods: the Job they belong to, whatever the controller adds

A_DAG_ID = "helios.dev/dag-id"
A_DAG_NAME = "helios.dev/dag-name"
A_TASK = "helios.dev/task"
A_ATTEMPT = "helios.dev/attempt"
A_OUTPUTS = "helios.dev/outputs"  # JSON list: the watcher expects an upload when not empty
A_REFUSED = "helios.dev/refused"  # task fields the Job builder left out (reserved names)
A_TIMEOUT = "helios.dev/timeout-seconds"  # the command's own bound (the watcher times it)
A_RESULT = "helios.dev/result"  # the object the wait container puts `.result` in (if any)

SELECTOR = f"{L_APP}={APP}"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(value: str) -> str:
    """`value` itself when it is a valid label value, else a digest (still selectable)."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    return "x-" + hashlib.sha256(value.encode()).hexdigest()[:40]


def run_selector(dag_id: str) -> str:
    return f"{SELECTOR},{L_RUN}={label_value(dag_id)}"


@dataclass(frozen=True)
class AttemptId:
    dag_id: str
    dag_name: str
    task: str
    attempt: int

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> AttemptId | None:
        """Read back from a Job's or pod's annotations; None for a foreign object."""
        ann = (obj.get("metadata") or {}).get("annotations") or {}
        try:
            return cls(ann[A_DAG_ID], ann.get(A_DAG_NAME, ""), ann[A_TASK], int(ann[A_ATTEMPT]))
        except (KeyError, ValueError):
            return None

    def labels(self) -> dict[str, str]:
        return {
            L_APP: APP,
            L_RUN: label_value(self.dag_id),
            L_DAG_NAME: label_value(self.dag_name),
            L_TASK: label_value(self.task),
            L_ATTEMPT: str(self.attempt),
        }

    def annotations(self) -> dict[str, str]:
        return {
            A_DAG_ID: self.dag_id,
            A_DAG_NAME: self.dag_name,
            A_TASK: self.task,
            A_ATTEMPT: str(self.attempt),
        }
