"""What Job and pod objects say about an attempt (pure; canned API objects)."""

from __future__ import annotations

from typing import Any

from helios.executors.kubernetes.status import judge, ts
from helios.executors.kubernetes.timeouts import Bounds

T0 = "2026-01-01T00:00:00Z"
NOW = ts(T0) or 0.0


def job(*conditions: dict[str, Any], deadline: int | None = None) -> dict[str, Any]:
    spec = {"activeDeadlineSeconds": deadline} if deadline else {}
    return {"metadata": {"name": "j", "creationTimestamp": T0}, "spec": spec,
            "status": {"conditions": list(conditions)}}


def cond(kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:09Z"}


def state(name: str, **st: Any) -> dict[str, Any]:
    return {"name": name, "state": st}


def pod(containers: list[dict[str, Any]], inits: list[dict[str, Any]] | None = None,
        phase: str = "Running", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "creationTimestamp": T0},
            "spec": {"nodeName": "node-a"},
            "status": {"phase": phase, "containerStatuses": containers,
                       "initContainerStatuses": inits or [],
                       "conditions": [{"type": "PodScheduled", "status": "True",
                                       "lastTransitionTime": "2026-01-01T00:00:01Z"}],
                       **status}}


def ended(code: int, reason: str = "Error", message: str | None = None) -> dict[str, Any]:
    out = {"exitCode": code, "reason": reason, "startedAt": "2026-01-01T00:00:02Z",
           "finishedAt": "2026-01-01T00:00:05Z"}
    if message:
        out["message"] = message
    return out


BOUNDS = Bounds(pending_s=60)


def verdict(j: dict[str, Any] | None, p: dict[str, Any] | None, upload: bool = False,
            now: float = NOW + 10, bounds: Bounds = BOUNDS, **kw: Any) -> Any:
    return judge(j, p, expects_upload=upload, now=now, bounds=bounds, **kw)


def test_running_and_timings() -> None:
    v = verdict(job(), pod([state("main", running={"startedAt": "2026-01-01T00:00:02Z"})]))
    assert v.phase == "running" and v.node == "node-a"
    assert (v.timings.queued_at, v.timings.scheduled_at, v.timings.started_at) == (
        NOW, NOW + 1, NOW + 2)


def test_user_failure_wins_over_a_waiting_uploader() -> None:
    p = pod([state("main", terminated=ended(2)), state("uploader", running={})])
    v = verdict(job(), p, upload=True)
    assert (v.phase, v.reason, v.exit_code) == ("failed", "Error", 2)
    assert v.message == "command exited with code 2"
    assert v.timings.finished_at == NOW + 5


def test_oom_killed() -> None:
    v = verdict(job(), pod([state("main", terminated=ended(137, "OOMKilled"))]))
    assert (v.reason, v.exit_code) == ("OOMKilled", 137)


def test_success_waits_for_the_upload() -> None:
    p = pod([state("main", terminated=ended(0, "Completed")), state("uploader", running={})])
    assert verdict(job(), p, upload=True).phase == "running"
    p = pod([state("main", terminated=ended(0, "Completed")),
             state("uploader", terminated=ended(0, "Completed"))], phase="Succeeded")
    assert verdict(job(cond("Complete")), p, upload=True).phase == "succeeded"


def test_missing_output_and_upload_failure() -> None:
    msg = "[HELIOS] Upload failed: declared output(s) not found under /artifacts: a.txt"
    p = pod([state("main", terminated=ended(0, "Completed")),
             state("uploader", terminated=ended(1, message=msg))], phase="Failed")
    v = verdict(job(cond("Failed", "BackoffLimitExceeded")), p, upload=True)
    assert (v.phase, v.reason, v.exit_code) == ("failed", "MissingOutputs", 0)
    assert v.message == "Upload failed: declared output(s) not found under /artifacts: a.txt"
    p["status"]["containerStatuses"][1]["state"]["terminated"]["message"] = "boom"
    assert verdict(job(), p, upload=True).reason == "UploadFailed"


def test_downloader_failure() -> None:
    p = pod([state("main", waiting={"reason": "PodInitializing"})],
            inits=[state("downloader", terminated=ended(1, message="[HELIOS] Download "
                                                        "failed: input x: object gone"))],
            phase="Failed")
    v = verdict(job(cond("Failed", "BackoffLimitExceeded")), p)
    assert (v.phase, v.reason) == ("failed", "InputsFailed")
    assert v.message == "Download failed: input x: object gone"


def test_the_backstop_deadline_names_what_it_stopped() -> None:
    # The Job's activeDeadlineSeconds (the backstop) killed a command that had started...
    p = pod([state("main", terminated=ended(143))], phase="Failed")
    j = job(cond("FailureTarget", "DeadlineExceeded"), cond("Failed", "DeadlineExceeded"),
            deadline=5)
    v = verdict(j, p)
    assert (v.reason, v.exit_code) == ("DeadlineExceeded", 143)
    assert v.message == "the command ran 7 s and was stopped " \
        "(the Job's activeDeadlineSeconds=5)"  # started :02, the Job failed at :09
    # ... or a pod whose command never started.
    waiting = pod([state("main", waiting={"reason": "ContainerCreating"})], phase="Pending")
    v = verdict(j, waiting)
    assert v.reason == "StartTimeout"
    assert v.message == "the pod did not start within 5 s (the Job's " \
        "activeDeadlineSeconds=5): container main waiting: ContainerCreating"
    gone = verdict(j, None)  # the pod is already gone: which one cannot be told
    assert gone.reason == "DeadlineExceeded" and "could tell" in gone.message


def test_an_image_that_cannot_be_pulled_fails_after_the_pull_timeout() -> None:
    message = 'Back-off pulling image "x:1": ErrImagePull: not found'
    p = pod([state("main", waiting={"reason": "ImagePullBackOff", "message": message})],
            phase="Pending")
    bounds = Bounds(pending_s=300, pull_s=20, start_s=600)
    v = verdict(job(), p, now=NOW + 15, bounds=bounds)
    # The pull is timed from the pod's scheduling (:01), not from the pending timeout.
    assert (v.phase, v.reason, v.recheck_at) == ("pending", "ImagePullBackOff", NOW + 21)
    v = verdict(job(), p, now=NOW + 21, bounds=bounds)
    assert (v.phase, v.reason, v.message) == ("failed", "ImagePullFailed", message)
    p["status"]["containerStatuses"][0]["state"]["waiting"] = {
        "reason": "ErrImageNeverPull",
        "message": 'Container image "x:1" is not present with pull policy of Never'}
    v = verdict(job(), p, now=NOW + 1, bounds=bounds)  # hopeless: at once
    assert (v.phase, v.reason) == ("failed", "ImagePullFailed")
    assert v.message == 'Container image "x:1" is not present with pull policy of Never'


def test_unschedulable_and_no_pod_at_all() -> None:
    p = pod([], phase="Pending")
    p["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                  "reason": "Unschedulable", "message": "0/3 nodes"}]
    assert verdict(job(), p, now=NOW + 61).reason == "Unschedulable"
    assert verdict(job(), None, now=NOW + 5).phase == "pending"
    assert verdict(job(), None, now=NOW + 61).reason == "FailedCreate"


def test_deleted_job() -> None:
    p = pod([state("main", terminated=ended(143))], phase="Failed")
    v = verdict(job(), p, deleted=True)
    assert (v.phase, v.reason, v.exit_code) == ("failed", "ExecutorLost", 143)
    assert verdict(job(), None, deleted=True).reason == "ExecutorLost"
    done = pod([state("main", terminated=ended(0, "Completed"))], phase="Succeeded")
    assert verdict(job(), done, deleted=True).phase == "succeeded"


def test_evicted_pod() -> None:
    p = pod([state("main", running={})], phase="Failed", reason="Evicted",
            message="The node was low on resource: memory.")
    v = verdict(job(), p)
    assert (v.phase, v.reason) == ("failed", "ExecutorLost")
    assert v.message and v.message.startswith("Evicted: The node was low")


def test_disrupted_pod_and_vanished_pod_are_lost() -> None:
    p = pod([state("main", running={})], phase="Running")
    p["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True",
                                  "reason": "PreemptionByScheduler", "message": "preempted"}]
    v = verdict(job(), p)
    assert (v.phase, v.reason, v.message) == ("failed", "ExecutorLost",
                                              "PreemptionByScheduler: preempted")
    failed_job = job()
    failed_job["status"] = {"conditions": [{"type": "Failed", "status": "True",
                                            "reason": "BackoffLimitExceeded"}]}
    assert verdict(failed_job, None).reason == "ExecutorLost"
