"""What a Job and its pod say about one attempt (pure functions over API dicts).

The pod's container statuses are the kubelet's truth and decide first: the user
container (`main`) ends the attempt as soon as it exits non-zero, even while the
`uploader` still waits for a status that cannot come; with exit 0 the attempt ends when
the upload does. Job conditions (`Failed` with `DeadlineExceeded`, `Complete`) decide
when the pod does not, and name the cause when the deadline killed the pod.

Time is judged here too, against `timeouts.Bounds` and the `now` the caller passes: the
command's own timeout from its start, the start timeout, the image pull and pending
bounds (`timeouts.py` says which clock is which). A verdict that only time can change
carries `recheck_at`, when the caller should look again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from helios.executors.kubernetes.jobs import DOWNLOADER, MAIN, UPLOADER
from helios.executors.kubernetes.timeouts import (
    DEADLINE_EXCEEDED,
    START_TIMEOUT,
    Bounds,
    command_due,
    ran_message,
    start_message,
)
from helios.messages import Timings
from helios.results import INVALID_RESULT

Phase = Literal["pending", "running", "succeeded", "failed"]

# Waiting reasons of an image the kubelet cannot pull (the kubelet's own strings).
PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "RegistryUnavailable",
                          "SignatureValidationFailed"})
# Waiting reasons that mean "this pod will not start by itself any time soon".
STUCK_REASONS = PULL_REASONS | {"CreateContainerConfigError", "CreateContainerError",
                                "RunContainerError"}
HOPELESS_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull"})  # fail at once
IMAGE_PULL_FAILED = "ImagePullFailed"
KUBELET_REASONS = frozenset({"OOMKilled", "ContainerCannotRun", "StartError"})
MESSAGE_MAX = 2000
# The attempt died with its executor, not by its own doing: the scheduler re-runs it as a
# new attempt without spending the task's retries (services/scheduler/decide.py).
EXECUTOR_LOST = "ExecutorLost"
# Pod failure reasons that mean the pod or its node went away under the attempt.
LOST_POD_REASONS = frozenset({"Evicted", "NodeLost", "Preempting", "Shutdown", "NodeShutdown",
                              "Terminated", "UnexpectedAdmissionError", "NodeAffinity"})
HELIOS_PREFIX = "[HELIOS] "


def ts(value: str | None) -> float | None:
    """RFC 3339 (what the API sends) to epoch seconds."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    node: str | None = None
    timings: Timings = field(default_factory=Timings)
    recheck_at: float | None = None  # when time alone may change the verdict
    terminating: bool = False  # the pod is being deleted: read its logs now

    @property
    def terminal(self) -> bool:
        return self.phase in ("succeeded", "failed")


def _statuses(pod: dict[str, Any] | None, key: str) -> dict[str, dict[str, Any]]:
    status = (pod or {}).get("status") or {}
    return {s["name"]: s for s in status.get(key) or [] if "name" in s}


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _short(text: str | None) -> str | None:
    if not text:
        return None
    text = text.strip()
    return text if len(text) <= MESSAGE_MAX else "..." + text[-MESSAGE_MAX:]


def _helper_message(end: dict[str, Any], who: str) -> str:
    """A helper's termination message (its `[HELIOS] ... failed: reason` line)."""
    text = (end.get("message") or "").strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return f"{who} exited with code {end.get('exitCode')}"
    last = lines[-1]
    return last[len(HELIOS_PREFIX):] if last.startswith(HELIOS_PREFIX) else last


def pick_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod that speaks for the attempt: the newest (backoffLimit 0 makes one usual)."""
    if not pods:
        return None
    return max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")


def timings(job: dict[str, Any] | None, pod: dict[str, Any] | None) -> Timings:
    scheduled = _condition(pod, "PodScheduled")
    main = _statuses(pod, "containerStatuses").get(MAIN, {}).get("state") or {}
    started = (main.get("running") or main.get("terminated") or {}).get("startedAt")
    ends = [s.get("state", {}).get("terminated", {}).get("finishedAt")
            for s in _statuses(pod, "containerStatuses").values()]
    job_status = (job or {}).get("status") or {}
    failed = _condition(job, "Failed")
    ends += [job_status.get("completionTime"), failed and failed.get("lastTransitionTime")]
    finished = [t for t in (ts(e) for e in ends if e) if t is not None]
    return Timings(
        queuedAt=ts(((job or {}).get("metadata") or {}).get("creationTimestamp")),
        scheduledAt=ts(scheduled.get("lastTransitionTime")) if scheduled else None,
        startedAt=ts(started),
        finishedAt=max(finished) if finished else None,
    )


def _stuck(pod: dict[str, Any] | None) -> tuple[str, str] | None:
    """(reason, message) of the first cause that keeps the pod from starting."""
    if pod is None:
        return None
    for key in ("initContainerStatuses", "containerStatuses"):
        for status in _statuses(pod, key).values():
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS | HOPELESS_REASONS:
                return waiting["reason"], waiting.get("message") or waiting["reason"]
    for cond in ((pod.get("status") or {}).get("conditions")) or []:
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == \
                ("PodScheduled", "False", "Unschedulable"):
            return "Unschedulable", cond.get("message") or "no node fits the pod"
    return None


def waiting_for(pod: dict[str, Any] | None) -> str:
    """What keeps the user's command from running, in a few words (the first cause)."""
    if pod is None:
        return "no pod was created for the Job"
    scheduled = next((c for c in (pod.get("status") or {}).get("conditions") or []
                      if c.get("type") == "PodScheduled"), None)
    if scheduled is None or scheduled.get("status") != "True":
        why = (scheduled or {}).get("message")
        return f"not scheduled on a node{': ' + why if why else ' yet'}"
    for key in ("initContainerStatuses", "containerStatuses"):
        for name, cs in _statuses(pod, key).items():
            state = cs.get("state") or {}
            what = f"init container {name}" if key == "initContainerStatuses" \
                else f"container {name}"
            if name == DOWNLOADER:
                what = "the downloader (inputs)"
            if "waiting" in state:
                waiting = state["waiting"] or {}
                message = waiting.get("message")
                return f"{what} waiting: {waiting.get('reason') or 'unknown'}" + (
                    f" ({message})" if message else "")
            if key == "containerStatuses":
                continue  # a helper beside `main` does not hold it back
            end = state.get("terminated")
            if end is None:
                return f"{what} still running"
            if end.get("exitCode", 0) != 0:
                return f"{what} exited with code {end.get('exitCode')}"
    return "the container was being started"


def with_pull_error(message: str | None, last_error: str | None) -> str | None:
    """Before v1.32 the kubelet's back-off message is only `Back-off pulling image "x"`:
    add the pull error seen earlier (v1.32+ carries it already)."""
    if message and last_error and message.startswith("Back-off pulling image") \
            and message.endswith('"'):
        return f"{message}: ErrImagePull: {last_error}"
    return message


def _main_started(pod: dict[str, Any] | None) -> bool:
    state = _statuses(pod, "containerStatuses").get(MAIN, {}).get("state") or {}
    return "running" in state or "terminated" in state


def judge(job: dict[str, Any] | None, pod: dict[str, Any] | None, *, expects_upload: bool,
          now: float, bounds: Bounds, deleted: bool = False) -> Verdict:
    """The attempt's phase now. `deleted`: the Job is gone (`job` is its last state)
    without Helios having settled the attempt: a cancel, or someone else's delete."""
    node = ((pod or {}).get("spec") or {}).get("nodeName")
    times = timings(job, pod)
    base: dict[str, Any] = {"node": node, "timings": times,
                            "terminating": bool(((pod or {}).get("metadata") or {})
                                                .get("deletionTimestamp"))}
    job_failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    deadline = job_failed if job_failed and job_failed.get("reason") == "DeadlineExceeded" \
        else None

    def failed(reason: str, message: str | None, code: int | None = None) -> Verdict:
        # A deadline or a delete is the cause of whatever the kill left behind.
        if deadline:
            reason, message = _backstop(job, pod, times.started_at, deadline, now)
        elif deleted:
            reason, message = EXECUTOR_LOST, "the Job was deleted before it finished"
        return Verdict("failed", reason, _short(message), code, **base)

    def lost(cause: str, message: str | None) -> Verdict:
        return failed(EXECUTOR_LOST, f"{cause}: {message}" if message else cause)

    disrupted = _condition(pod, "DisruptionTarget")

    for name, init in _statuses(pod, "initContainerStatuses").items():
        init_end = (init.get("state") or {}).get("terminated")
        if init_end and init_end.get("exitCode", 0) != 0:
            who = "the downloader" if name == DOWNLOADER else f"init container {name}"
            return failed("InputsFailed", _helper_message(init_end, who))

    containers = _statuses(pod, "containerStatuses")
    main_state = containers.get(MAIN, {}).get("state") or {}
    main_end = main_state.get("terminated")
    if main_end:
        code = int(main_end.get("exitCode", 0))
        if code != 0:
            # The kubelet's reason when it says more than "Error" (OOMKilled, ...); the
            # user's own output is in the logs, not repeated here.
            why = main_end.get("reason") if main_end.get("reason") in KUBELET_REASONS \
                else "Error"
            return failed(why, f"command exited with code {code}"
                          + (" (out of memory)" if why == "OOMKilled" else ""), code)
        if not expects_upload:
            return Verdict("succeeded", exit_code=0, **base)
        up_end = ((containers.get(UPLOADER, {}).get("state")) or {}).get("terminated")
        if up_end and up_end.get("exitCode", 0) == 0:
            return Verdict("succeeded", exit_code=0, **base)
        if up_end:
            message = _helper_message(up_end, "the uploader")
            why = "MissingOutputs" if "declared output(s) not found" in message \
                else INVALID_RESULT if f"{INVALID_RESULT}:" in message else "UploadFailed"
            return failed(why, message, 0)
    if disrupted and not deadline:  # preempted, evicted, taint manager, pod GC
        return lost(disrupted.get("reason") or "DisruptionTarget", disrupted.get("message"))
    if job_failed and pod is None and not deadline and not main_end:
        # backoffLimit 0: the Job failed because its only pod went away (deleted by
        # someone, or with its node) before the user's command ended.
        return lost(job_failed.get("reason") or "PodGone",
                    "the attempt's pod was deleted before it finished")
    if job_failed:
        return failed(job_failed.get("reason") or "Failed", job_failed.get("message"))
    if _condition(job, "Complete"):
        return Verdict("succeeded", exit_code=0, **base)
    if deleted:
        return Verdict("failed", EXECUTOR_LOST, "the Job was deleted before it finished",
                       **base)
    pod_phase = ((pod or {}).get("status") or {}).get("phase")
    if pod_phase == "Failed":  # evicted, node lost: the pod's reason says which
        status = (pod or {}).get("status") or {}
        if status.get("reason") in LOST_POD_REASONS:
            return lost(status["reason"], status.get("message"))
        return failed(status.get("reason") or "PodFailed", status.get("message"))
    if "running" in main_state and bounds.command_s and times.started_at is not None:
        # timeoutSeconds times the command alone, from its container's start.
        due = command_due(times.started_at, bounds.command_s)
        if now >= due:
            return failed(DEADLINE_EXCEEDED, ran_message(
                bounds.command_s, f"timeoutSeconds={bounds.command_s:g}"))
        return Verdict("running", recheck_at=due, **base)
    if main_end or "running" in main_state:
        return Verdict("running", **base)
    return _not_started(pod, times.queued_at, now, bounds, failed, base)


def _not_started(pod: dict[str, Any] | None, queued_at: float | None, now: float,
                 bounds: Bounds, failed: Callable[[str, str], Verdict], base: dict[str, Any]
                 ) -> Verdict:
    """The command has not started: fail on the first start bound that is past, else
    stay pending until the nearest one."""
    dues: list[tuple[float, str, str]] = []  # (when, reason, message)
    stuck = _stuck(pod)
    meta = (pod or {}).get("metadata") or {}
    created = ts(meta.get("creationTimestamp")) or now
    if stuck:
        reason, message = stuck
        if reason in HOPELESS_REASONS:
            return failed(IMAGE_PULL_FAILED, message)
        if reason in PULL_REASONS:
            # Pulls begin once the pod is on a node: time them from there.
            scheduled = _condition(pod, "PodScheduled")
            since = ts((scheduled or {}).get("lastTransitionTime")) or created
            dues.append((since + bounds.pull, IMAGE_PULL_FAILED, message))
        else:
            dues.append((created + bounds.pending_s, reason, message))
    if pod is None and queued_at is not None:
        # No pod at all: the Job controller cannot create it (quota, admission policy).
        dues.append((queued_at + bounds.pending_s, "FailedCreate",
                     "no pod was created for the Job (quota or an admission policy?); "
                     "see `kubectl describe job`"))
    if bounds.start_s and queued_at is not None:
        dues.append((queued_at + bounds.start_s, START_TIMEOUT,
                     start_message(bounds.start_s, waiting_for(pod),
                                   "HELIOS_K8S_START_TIMEOUT_S")))
    dues.sort()
    if dues and now >= dues[0][0]:
        return failed(dues[0][1], dues[0][2])
    recheck = dues[0][0] if dues else None
    if stuck:
        return Verdict("pending", stuck[0], _short(stuck[1]), recheck_at=recheck, **base)
    return Verdict("pending", recheck_at=recheck, **base)


def _backstop(job: dict[str, Any] | None, pod: dict[str, Any] | None,
              started_at: float | None, cond: dict[str, Any], now: float) -> tuple[str, str]:
    """What the Job's activeDeadlineSeconds stopped: the command, or a pod that never
    got to start it."""
    limit = ((job or {}).get("spec") or {}).get("activeDeadlineSeconds")
    what = f"the Job's activeDeadlineSeconds={limit}"
    if pod is None and started_at is None:
        return DEADLINE_EXCEEDED, f"stopped by {what}; its pod was gone before the watcher " \
            "could tell whether the command had started"
    if started_at is None or not _main_started(pod):
        return START_TIMEOUT, start_message(float(limit or 0), waiting_for(pod), what)
    end = ts(cond.get("lastTransitionTime")) or now
    return DEADLINE_EXCEEDED, ran_message(max(0, round(end - started_at)), what)
