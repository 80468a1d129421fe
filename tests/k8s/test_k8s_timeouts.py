"""What each time bound measures and how it is reported (pure), and the stand-in's
share of it: defaulting, grace periods, a PID 1 that ignores SIGTERM."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from helios.executors.kubernetes.podlogs import assemble
from helios.executors.kubernetes.status import waiting_for, with_pull_error
from helios.executors.kubernetes.timeouts import Bounds, backstop_seconds, command_due
from helios.settings import KubernetesSettings, Settings

from .conftest import kube_settings
from .helpers import kube_api
from .standin import Cluster
from .standin.defaults import apply, default_pull_policy
from .test_k8s_standin import NS
from .test_k8s_standin import job as bare_job
from .test_k8s_status import NOW, T0, job, pod, state, verdict

STARTED = "2026-01-01T00:00:02Z"  # main's start: 2 s after the Job's creation (T0)
TIMED = Bounds(pending_s=300, pull_s=120, start_s=600, command_s=5)


def running(started: str = STARTED) -> dict[str, Any]:
    return pod([state("main", running={"startedAt": started})])


def test_timeout_seconds_counts_from_the_commands_start() -> None:
    # Stamped :02 (seconds precision): the command began in [2, 3), so it is due at 2+5+1.
    v = verdict(job(), running(), now=NOW + 7.5, bounds=TIMED)
    assert (v.phase, v.recheck_at) == ("running", NOW + 8)
    v = verdict(job(), running(), now=NOW + 8, bounds=TIMED)
    assert (v.phase, v.reason) == ("failed", "DeadlineExceeded")
    assert v.message == "the command ran 5 s and was stopped (timeoutSeconds=5)"
    assert command_due(100.25, 5) == 105.25  # a precise stamp needs no slack
    # Without timeoutSeconds nothing is timed once the command runs.
    assert verdict(job(), running(), now=NOW + 10_000).recheck_at is None


def test_a_slow_start_is_a_start_timeout_with_what_it_waited_for() -> None:
    creating = pod([state("main", waiting={"reason": "ContainerCreating"})], phase="Pending")
    v = verdict(job(), creating, now=NOW + 30, bounds=TIMED)
    assert (v.phase, v.recheck_at) == ("pending", NOW + 600)  # from the Job's creation
    v = verdict(job(), creating, now=NOW + 600, bounds=TIMED)
    assert (v.phase, v.reason) == ("failed", "StartTimeout")
    assert v.message == "the pod did not start within 600 s (HELIOS_K8S_START_TIMEOUT_S): " \
        "container main waiting: ContainerCreating"
    # The image pull fails sooner, by its own bound and with the kubelet's message.
    pulling = pod([state("main", waiting={"reason": "ErrImagePull", "message": "nope"})],
                  phase="Pending")
    v = verdict(job(), pulling, now=NOW + 30, bounds=TIMED)
    assert (v.phase, v.reason, v.recheck_at) == ("pending", "ErrImagePull", NOW + 121)
    v = verdict(job(), pulling, now=NOW + 121, bounds=TIMED)
    assert (v.reason, v.message) == ("ImagePullFailed", "nope")


def test_a_bare_back_off_message_gets_the_pull_error_seen_before() -> None:
    old = 'Back-off pulling image "x:1"'  # what a kubelet before v1.32 says
    assert with_pull_error(old, "not found") == f"{old}: ErrImagePull: not found"
    new = f"{old}: ErrImagePull: not found"  # v1.32+
    assert with_pull_error(new, "not found") == new
    assert with_pull_error(old, None) == old


def test_waiting_for_names_the_first_cause() -> None:
    assert waiting_for(None) == "no pod was created for the Job"
    unscheduled = pod([], phase="Pending")
    unscheduled["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                            "message": "0/2 nodes are available"}]
    assert waiting_for(unscheduled) == "not scheduled on a node: 0/2 nodes are available"
    fetching = pod([state("main", waiting={"reason": "PodInitializing"})],
                   inits=[state("cache-owner", terminated={"exitCode": 0}),
                          state("downloader", running={})], phase="Pending")
    assert waiting_for(fetching) == "the downloader (inputs) still running"


def test_logs_say_the_command_never_started() -> None:
    creating = pod([state("main", waiting={"reason": "ContainerCreating"})], phase="Pending")
    logs = assemble(creating, {}, {}, attempt=1)
    assert logs.lines == ["[HELIOS] the command never started: "
                          "container main waiting: ContainerCreating"]
    ran = pod([state("main", terminated={"exitCode": 0, "startedAt": T0})])
    assert assemble(ran, {"main": "hi\n"}, {}, attempt=1).lines == ["hi"]


def test_the_backstop_is_above_every_bound_and_bounds_come_from_the_job() -> None:
    k8s = KubernetesSettings(start_timeout_s=100, pending_timeout_s=300,
                             image_pull_timeout_s=50, cancel_grace_s=2)
    assert backstop_seconds(10, k8s) == 300 + 10 + 2 + 60
    j = job()
    j["metadata"]["annotations"] = {"helios.dev/timeout-seconds": "7"}
    assert Bounds.for_job(j, k8s) == Bounds(pending_s=300, pull_s=50, start_s=100,
                                            command_s=7)
    assert Bounds.for_job(job(), k8s).command_s is None


def test_standin_defaults_pull_policy_and_grace_as_the_api_server_does() -> None:
    assert [default_pull_policy(i) for i in (
        "ubuntu", "ubuntu:latest", "ubuntu:24.04", "reg.example:5000/a/b",
        "reg.example:5000/a/b:1", "a@sha256:" + "0" * 64)] == [
        "Always", "Always", "IfNotPresent", "Always", "IfNotPresent", "IfNotPresent"]
    body = apply("jobs", {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "x:1"}, {"name": "b", "image": "x", "imagePullPolicy": "Never"}]}}}})
    spec = body["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 30
    assert [c["imagePullPolicy"] for c in spec["containers"]] == ["IfNotPresent", "Never"]


async def test_standin_pid_1_ignores_sigterm_until_the_grace_period_ends(
        cluster: Cluster) -> None:
    cfg = kube_settings(Settings(), cluster, api_qps=500.0)

    def main_end(name: str) -> dict[str, Any] | None:
        for e in reversed(cluster.store.history):
            if e.resource == "pods" and e.obj["metadata"]["labels"].get("job-name") == name:
                for cs in e.obj["status"].get("containerStatuses") or []:
                    if "terminated" in cs["state"]:
                        return dict(cs["state"]["terminated"])
        return None

    def running_pods() -> int:
        return sum(1 for p in cluster.pods() if p["status"].get("phase") == "Running")

    deaf = bare_job("deaf", ["/bin/sleep", "30"])  # PID 1 without a handler
    polite = bare_job("polite", ["/bin/sh", "-c", "trap 'exit 0' TERM; echo ready; sleep 30 & wait"])
    deaf["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 2
    polite["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30  # not needed
    async with kube_api(cfg) as api:
        for body in (deaf, polite):
            await api.create_job(body)
        await cluster.wait_for(lambda: running_pods() == 2, timeout=30)
        polite_pod = next(p["metadata"]["name"] for p in cluster.pods()
                          if p["metadata"]["labels"]["job-name"] == "polite")
        # A signal before the trap is set would be ignored like deaf's: wait for it. Logs
        # send no event, so poll (with a generous deadline).
        async with asyncio.timeout(30):
            while "ready" not in (cluster.kubelet.log_text(NS, polite_pod, "main")  # noqa: ASYNC110
                                  or ""):
                await asyncio.sleep(0.05)
        started = time.monotonic()
        for name in ("deaf", "polite"):
            await api.delete_job(name, "Background")
        await cluster.wait_for(lambda: main_end("deaf") is not None, timeout=30)
        deaf_ended = time.monotonic() - started
        await cluster.wait_for(lambda: not cluster.pods(), timeout=30)
    assert (main_end("polite") or {})["exitCode"] == 0  # its handler ran: SIGTERM came
    assert (main_end("deaf") or {})["exitCode"] == 137  # SIGKILL, after the grace period
    assert deaf_ended >= 2 - 0.1
    assert cluster.store.find("jobs", NS, "deaf") is None
