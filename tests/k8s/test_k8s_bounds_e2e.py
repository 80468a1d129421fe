"""Issue 9 end to end, with HELIOS_EXECUTOR=kubernetes on the stand-in, in one test (two
runs side by side): image pull policies and pull failures, timeouts that time the
command (not the pod's start), a start timeout, and a cancel that stops a task whose
PID 1 ignores SIGTERM."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from helios.settings import Settings
from tests.stack import Stack, by_name, doc, follow, running_stack, sh, submit, task_logs, wait_run

from .conftest import add_s3_secret, kube_settings
from .standin import Cluster

PENDING_S, PULL_S, START_S = 30.0, 1.0, 6.0
ON_B = {"kubernetes.io/hostname": "node-b"}


@pytest.fixture
async def stack(settings: Settings, cluster: Cluster) -> AsyncIterator[Stack]:
    add_s3_secret(cluster, settings)
    bounded = kube_settings(settings, cluster, pending_timeout_s=PENDING_S,
                            image_pull_timeout_s=PULL_S, start_timeout_s=START_S)
    async with running_stack(bounded) as running:
        yield running


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


async def test_pull_policies_timeouts_that_say_what_they_timed_and_a_prompt_cancel(
        stack: Stack, http: aiohttp.ClientSession, cluster: Cluster) -> None:
    node_a, node_b = cluster.kubelet.nodes["node-a"], cluster.kubelet.nodes["node-b"]
    node_a.start_delay_s = 2.5  # a busy node: every pod takes 2.5 s to start its containers
    node_a.images.add("local/loaded:1")  # loaded into the node, in no registry
    node_b.start_delay_s = 60.0  # a node where nothing gets started in time
    cluster.kubelet.bad_images.add("registry.example/missing:1")
    dag = doc("bounds",
              sh("pull", "true", image="registry.example/missing:1"),
              sh("never", "true", image="local/only:1", imagePullPolicy="Never"),
              sh("loaded", "echo loaded", image="local/loaded:1", imagePullPolicy="Never"),
              # Starts after more than its timeoutSeconds: only the command is timed.
              sh("fits", "sleep 0.2; echo fits", timeoutSeconds=2),
              sh("slow", "echo started; exec sleep 30", timeoutSeconds=1),
              sh("stuck", "echo never", nodeSelector=ON_B))
    marker = f"{60 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"  # a unique argv
    # `sh` as PID 1 ignores SIGTERM; so would its children (one in the background),
    # unless the whole tree is killed.
    doomed = doc("cancel-pid1", sh("long", f"sleep {marker} & sleep {marker}; true"),
                 sh("after", "true", depends_on=["long"]))
    began = time.monotonic()
    run = await submit(http, stack.api_url, dag)
    cancel = await submit(http, stack.api_url, doomed)

    # The cancel, while the other run goes on.
    await follow(http, stack.api_url, cancel["dagId"],
                 until=lambda e: e.get("task") == "long" and e["state"] == "RUNNING")
    # RUNNING is the container's start, not its children's; processes send no event, so
    # poll (with a generous deadline) until both are there.
    async with asyncio.timeout(15):
        while len(_processes_with(f"sleep\0{marker}")) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    cancelled = time.monotonic()
    async with http.post(f"{stack.api_url}/api/v1/dags/{cancel['dagId']}/cancel") as resp:
        assert resp.status == 202
    status = await wait_run(http, stack.api_url, cancel["dagId"], timeout_s=15)
    assert status["status"] == "CANCELLED"
    assert {t["state"] for t in status["tasks"]} == {"CANCELLED"}
    run_label = {"helios.dev/run-id": cancel["dagId"]}.items()
    await cluster.wait_for(lambda: not any(
        run_label <= p["metadata"]["labels"].items() for p in [*cluster.jobs(), *cluster.pods()]),
        timeout=15)
    # Gone after the grace period (plus the stand-in's 0.5 s log window), not 30 s.
    assert time.monotonic() - cancelled < stack.settings.k8s.cancel_grace_s + 10
    assert _processes_with(f"sleep\0{marker}") == []
    # The kubelet had to SIGKILL it: SIGTERM alone did nothing.
    ends = [cs["state"]["terminated"]["exitCode"] for e in cluster.store.history
            if e.resource == "pods" and run_label <= e.obj["metadata"]["labels"].items()
            for cs in e.obj["status"].get("containerStatuses") or []
            if "terminated" in cs["state"]]
    assert ends and ends[-1] == 137

    # Each failure of the other run came from its own bound, none from the 30 s
    # pending timeout.
    status = await wait_run(http, stack.api_url, run["dagId"], timeout_s=40)
    assert time.monotonic() - began < PENDING_S
    tasks = by_name(status)
    outcome = {n: (t["state"], t.get("reason")) for n, t in tasks.items()}
    assert outcome == {
        "pull": ("FAILED", "ImagePullFailed"), "never": ("FAILED", "ImagePullFailed"),
        "loaded": ("SUCCEEDED", None), "fits": ("SUCCEEDED", None),
        "slow": ("FAILED", "DeadlineExceeded"), "stuck": ("FAILED", "StartTimeout")}
    # The kubelet's message: ErrImagePull's, or the back-off's that repeats it.
    assert 'failed to pull and unpack image "registry.example/missing:1"' in \
        tasks["pull"]["message"]
    assert tasks["never"]["message"] == \
        'Container image "local/only:1" is not present with pull policy of Never'
    fits = tasks["fits"]["timings"]
    # Its pod took longer to start than its timeoutSeconds: only the command was timed.
    assert fits["startedAt"] - fits["queuedAt"] >= 2
    assert "fits" in await task_logs(http, stack.api_url, run["dagId"], "fits")
    assert tasks["slow"]["message"] == "the command ran 1 s and was stopped (timeoutSeconds=1)"
    assert "started" in await task_logs(http, stack.api_url, run["dagId"], "slow")
    assert tasks["stuck"]["message"].startswith(
        "the pod did not start within 6 s (HELIOS_K8S_START_TIMEOUT_S): ")
    stuck_logs = await task_logs(http, stack.api_url, run["dagId"], "stuck")
    assert any(ln.startswith("[HELIOS] the command never started: ") for ln in stuck_logs)
