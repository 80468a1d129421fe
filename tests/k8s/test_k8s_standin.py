"""The stand-in itself, through the real kubernetes-asyncio client: what the other
suites rely on behaves as a real API server, Job controller and kubelet do."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client

from helios.executors.kubernetes.client import JOBS, PODS, KubeError
from helios.settings import Settings

from .conftest import kube_settings
from .helpers import kube_api
from .standin import Cluster
from .standin.store import parse_selector

NS = "helios"


def job(name: str, command: list[str], labels: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    labels = {"app": "helios-task", **(labels or {})}
    return {"metadata": {"name": name, "labels": labels}, "spec": {
        "backoffLimit": 0, **spec, "template": {"metadata": {"labels": labels}, "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "x", "command": command}]}}}}


@pytest.fixture
def cfg(cluster: Cluster) -> Settings:
    return kube_settings(Settings(), cluster, api_qps=500.0)


def condition(cluster: Cluster, name: str, kind: str) -> dict[str, Any] | None:
    found = cluster.store.find("jobs", NS, name)
    for cond in ((found or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return None


def test_label_selectors() -> None:
    labels = {"app": "helios-task", "tier": "a"}

    def ok(sel: str) -> bool:
        return all(req(labels) for req in parse_selector(sel))
    assert ok("app=helios-task") and ok("app==helios-task,tier!=b")
    assert ok("tier in (a, b)") and not ok("tier notin (a)")
    assert ok("app") and ok("!missing") and not ok("!tier")


async def test_create_get_list_409_and_selectors(cluster: Cluster, cfg: Settings) -> None:
    async with kube_api(cfg) as api:
        created = await api.create_job(job("one", ["/bin/true"], {"run": "r1"}))
        assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
        with pytest.raises(KubeError) as err:
            await api.create_job(job("one", ["/bin/true"]))
        assert (err.value.code, err.value.reason) == (409, "AlreadyExists")
        await api.create_job(job("two", ["/bin/true"], {"run": "r2"}))
        items, version = await api.list(JOBS, "app=helios-task,run=r2")
        assert [i["metadata"]["name"] for i in items] == ["two"]
        assert int(version) >= int(created["metadata"]["resourceVersion"])
        assert (await api.get_job("one") or {})["metadata"]["name"] == "one"
        assert await api.get_job("three") is None


async def test_job_runs_its_pod_and_completes(cluster: Cluster, cfg: Settings) -> None:
    async with kube_api(cfg) as api:
        await api.create_job(job("hello", ["/bin/sh", "-c", "echo hi; echo '$(V) $$(V)'"]))
        await cluster.wait_for(lambda: condition(cluster, "hello", "Complete") is not None)
        [pod] = (await api.list(PODS, "job-name=hello"))[0]
        assert pod["metadata"]["ownerReferences"][0]["name"] == "hello"
        assert pod["spec"]["nodeName"] == "node-a"
        assert pod["status"]["phase"] == "Succeeded"
        [main] = pod["status"]["containerStatuses"]
        assert main["state"]["terminated"]["exitCode"] == 0
        # `$(V)` is left alone when V is not defined; `$$` is a literal `$`.
        assert await api.read_log(pod["metadata"]["name"], "main") == "hi\n$(V) $(V)\n"
        assert await api.read_log(pod["metadata"]["name"], "nope") is None  # 400
        assert await api.read_log("no-such-pod", "main") is None  # 404


async def test_deadline_fails_the_job_and_removes_the_pod(cluster: Cluster,
                                                           cfg: Settings) -> None:
    async with kube_api(cfg) as api:
        await api.create_job(job("slow", ["/bin/sleep", "30"], activeDeadlineSeconds=1))
        await cluster.wait_for(lambda: condition(cluster, "slow", "Failed") is not None)
        assert (condition(cluster, "slow", "Failed") or {})["reason"] == "DeadlineExceeded"
        await cluster.wait_for(lambda: not cluster.pods())


async def test_ttl_after_finished_deletes_job_and_pods(cluster: Cluster, cfg: Settings) -> None:
    async with kube_api(cfg) as api:
        await api.create_job(job("brief", ["/bin/true"], ttlSecondsAfterFinished=0))
        await cluster.wait_for(lambda: not cluster.jobs() and not cluster.pods())


@pytest.mark.parametrize("policy", ["Orphan", "Background", "Foreground"])
async def test_delete_propagation(cluster: Cluster, cfg: Settings, policy: str) -> None:
    async with kube_api(cfg) as api:
        await api.create_job(job("victim", ["/bin/sleep", "30"]))
        await cluster.wait_for(lambda: bool(cluster.pods()))
        batch = client.BatchV1Api(api.api_client)
        await batch.delete_namespaced_job("victim", NS, propagation_policy=policy)
        if policy == "Orphan":  # batch/v1's default: the pod stays, ownerless
            assert not cluster.jobs()
            [pod] = cluster.pods()
            assert "ownerReferences" not in pod["metadata"]
        else:
            await cluster.wait_for(lambda: not cluster.jobs() and not cluster.pods())


async def test_unknown_node_is_unschedulable_and_bad_image_backs_off(cluster: Cluster,
                                                                     cfg: Settings) -> None:
    cluster.kubelet.bad_images.add("x")
    async with kube_api(cfg) as api:
        await api.create_job(job("pull", ["/bin/true"]))
        spec = job("nowhere", ["/bin/true"])
        spec["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "zz"}
        await api.create_job(spec)

        def waiting(name: str) -> str | None:
            pods = [p for p in cluster.pods() if p["metadata"]["labels"]["job-name"] == name]
            statuses = pods[0]["status"].get("containerStatuses") if pods else None
            return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None

        def unschedulable() -> bool:
            pods = [p for p in cluster.pods() if p["metadata"]["labels"]["job-name"] == "nowhere"]
            return bool(pods) and any(c.get("reason") == "Unschedulable"
                                      for c in pods[0]["status"].get("conditions") or [])
        await cluster.wait_for(lambda: waiting("pull") == "ImagePullBackOff")
        await cluster.wait_for(unschedulable)
