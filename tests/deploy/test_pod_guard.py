"""deploy/extras/pod-guard, evaluated: its CEL rules (run with a CEL interpreter, as the
API server would on CREATE) admit every pod Helios makes, the services' and the stores'
and every shape of task pod, and refuse what they exist to refuse.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .render import (
    OVERLAYS,
    Obj,
    needs_kubectl,
    one,
    pod_spec,
    rendered,
    task_job,
    workloads,
)

cel = pytest.importorskip("cel", reason="common-expression-language is a test dependency")

pytestmark = needs_kubectl


def policy() -> Obj:
    return one(rendered("extras/pod-guard"), "ValidatingAdmissionPolicy", "helios-pod-guard")


def pod_of(workload: Obj) -> Obj:
    """The pod a controller creates from `workload`, with the owner reference it sets."""
    template = workload["spec"]["template"]
    meta = copy.deepcopy(template.get("metadata", {}))
    owner = "ReplicaSet" if workload["kind"] == "Deployment" else workload["kind"]
    meta["ownerReferences"] = [{"apiVersion": "v1", "kind": owner, "controller": True,
                                "name": workload["metadata"]["name"], "uid": "u-1"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": copy.deepcopy(pod_spec(workload))}


def refusals(pod: Obj) -> list[str]:
    """The messages of the validations `pod` fails (empty: admitted)."""
    spec = policy()["spec"]
    variables: dict[str, Any] = {}
    for var in spec.get("variables", []):
        variables[var["name"]] = cel.evaluate(var["expression"],
                                              {"object": pod, "variables": variables})
    failed = []
    for rule in spec["validations"]:
        ok = cel.evaluate(rule["expression"], {"object": pod, "variables": variables})
        assert isinstance(ok, bool), rule["expression"]
        if not ok:
            failed.append(rule["message"])
    return failed


def helios_pods() -> list[tuple[str, Obj]]:
    pods = [(f"{o}/{w['metadata']['name']}", pod_of(w))
            for o in OVERLAYS for w in workloads(rendered(f"overlays/{o}"))]
    for inputs in (True, False):
        for outputs in (True, False):
            pods.append((f"task(inputs={inputs}, outputs={outputs})",
                         pod_of(task_job(inputs, outputs))))
    return pods


def test_every_helios_pod_is_admitted() -> None:
    pods = helios_pods()
    assert len(pods) > 10
    for name, pod in pods:
        assert refusals(pod) == [], name


def _task_pod() -> Obj:
    return copy.deepcopy(pod_of(task_job()))


def _privileged(pod: Obj) -> None:
    pod["spec"]["containers"][0]["securityContext"]["privileged"] = True


def _host_network(pod: Obj) -> None:
    pod["spec"]["hostNetwork"] = True


def _sys_admin(pod: Obj) -> None:
    pod["spec"]["initContainers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]


def _host_port(pod: Obj) -> None:
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}]


def _host_root(pod: Obj) -> None:
    pod["spec"]["volumes"].append({"name": "root", "hostPath": {"path": "/"}})


def _tokens_volume(pod: Obj) -> None:
    pod["spec"]["volumes"].append({"name": "t", "secret": {"secretName": "helios-api-tokens"}})


def _tokens_projected(pod: Obj) -> None:
    pod["spec"]["volumes"].append({"name": "t", "projected": {"sources": [
        {"secret": {"name": "helios-api-tokens"}}]}})


def _tokens_env_from(pod: Obj) -> None:
    pod["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": "helios-api-tokens"}}]


def _tokens_env(pod: Obj) -> None:
    pod["spec"]["containers"][0]["env"].append({"name": "T", "valueFrom": {
        "secretKeyRef": {"name": "helios-api-tokens", "key": "tokens"}}})


def _watcher_account(pod: Obj) -> None:
    pod["spec"]["serviceAccountName"] = "helios-watcher"


def _api_token(pod: Obj) -> None:
    pod["spec"]["automountServiceAccountToken"] = True


def _default_account_token(pod: Obj) -> None:
    del pod["spec"]["automountServiceAccountToken"]
    pod["spec"]["serviceAccountName"] = "default"


@pytest.mark.parametrize(("mutate", "message"), [
    (_tokens_volume, "helios-api-tokens"),
    (_tokens_projected, "helios-api-tokens"),
    (_tokens_env_from, "helios-api-tokens"),
    (_tokens_env, "helios-api-tokens"),
    (_watcher_account, "Helios service's ServiceAccount"),
    (_api_token, "automountServiceAccountToken"),
    (_default_account_token, "automountServiceAccountToken"),
    (_privileged, "privileged containers"),
    (_host_network, "host namespaces"),
    (_sys_admin, "capabilities allowed by the baseline"),
    (_host_port, "hostPort"),
    (_host_root, "only hostPath volume"),
])
def test_what_the_guard_refuses(mutate: Any, message: str) -> None:
    pod = _task_pod()
    mutate(pod)
    (refused,) = refusals(pod)
    assert message in refused


def test_the_api_may_mount_its_tokens_but_not_from_a_job() -> None:
    api = rendered("overlays/prod")
    (dep,) = [w for w in workloads(api) if w["metadata"]["name"] == "api"]
    assert refusals(pod_of(dep)) == []
    as_job = pod_of(dep)
    as_job["metadata"]["ownerReferences"][0]["kind"] = "Job"
    assert any("helios-api-tokens" in m for m in refusals(as_job))
