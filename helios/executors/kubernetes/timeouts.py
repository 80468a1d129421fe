"""What bounds an attempt's time on Kubernetes, and how each bound is named (pure).

Each clock times one thing and its failure says which:

- the command: `timeoutSeconds` counts from the user container's start
  (`state.running.startedAt`), so a slow node, a slow pull or big inputs never eat into
  it; the watcher stops the command when it is due
  (`DeadlineExceeded: the command ran 5 s ...`).
- the start: from the Job's creation to the command's start (scheduling, image pull,
  inputs), `HELIOS_K8S_START_TIMEOUT_S` (`StartTimeout: the pod did not start within
  N s (what it was waiting for)`). Two causes fail sooner with their own reason: an
  image that cannot be pulled (`HELIOS_K8S_IMAGE_PULL_TIMEOUT_S`, `ImagePullFailed`
  with the kubelet's message; at once for `ErrImageNeverPull`/`InvalidImageName`) and
  an unschedulable pod or unusable config (`HELIOS_K8S_PENDING_TIMEOUT_S`).
- the backstop: the Job's `activeDeadlineSeconds`, set above the sum of the others, so a
  task with a timeout ends even while no watcher runs.

A stop (timeout or cancel) deletes the Job in the background; the pod's
`terminationGracePeriodSeconds` (`HELIOS_K8S_CANCEL_GRACE_S`) bounds how long the
processes get between SIGTERM and SIGKILL, whatever the image's PID 1 does with SIGTERM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from helios.executors.kubernetes.labels import A_TIMEOUT
from helios.settings import KubernetesSettings

BACKSTOP_MARGIN_S = 60  # the watcher's reaction and the upload, above the other bounds
RESOLUTION_S = 1.0  # metav1.Time has seconds precision: a start stamped :07 began in [7, 8)
START_TIMEOUT = "StartTimeout"
DEADLINE_EXCEEDED = "DeadlineExceeded"


def backstop_seconds(timeout_seconds: int, k8s: KubernetesSettings) -> int:
    """The Job's activeDeadlineSeconds for a task with `timeoutSeconds`: counted by the
    Job controller from the Job's start, so above every start bound plus the command's."""
    start = max(k8s.start_timeout_s, k8s.pending_timeout_s, k8s.image_pull_timeout_s)
    return math.ceil(start + timeout_seconds + k8s.cancel_grace_s + BACKSTOP_MARGIN_S)


@dataclass(frozen=True)
class Bounds:
    """The time bounds the watcher applies to one attempt (seconds)."""

    pending_s: float  # unschedulable, or a config the kubelet cannot use
    pull_s: float | None = None  # image cannot be pulled; None: pending_s
    start_s: float | None = None  # Job creation -> command start; None: unbounded
    command_s: float | None = None  # the task's timeoutSeconds; None: unbounded

    @property
    def pull(self) -> float:
        return self.pending_s if self.pull_s is None else self.pull_s

    @classmethod
    def for_job(cls, job: dict[str, Any], k8s: KubernetesSettings) -> Bounds:
        """The settings' bounds, with the command's timeout the Job carries."""
        ann = (job.get("metadata") or {}).get("annotations") or {}
        try:
            command: float | None = float(ann[A_TIMEOUT])
        except (KeyError, TypeError, ValueError):
            command = None
        return cls(pending_s=k8s.pending_timeout_s, pull_s=k8s.image_pull_timeout_s,
                   start_s=k8s.start_timeout_s, command_s=command)


def command_due(started_at: float, timeout_s: float) -> float:
    """When a command that started at `started_at` has had its `timeout_s`: a stamp
    without fractions may be up to a second early, and the command gets that second."""
    slack = RESOLUTION_S if float(started_at).is_integer() else 0.0
    return started_at + timeout_s + slack


def ran_message(seconds: float, limit: str) -> str:
    return f"the command ran {seconds:g} s and was stopped ({limit})"


def start_message(seconds: float, waiting: str, limit: str = "") -> str:
    return f"the pod did not start within {seconds:g} s{' (' + limit + ')' if limit else ''}" \
        f": {waiting}"
