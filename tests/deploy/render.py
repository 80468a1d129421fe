"""Rendering the kustomize overlays with `kubectl kustomize`, and reading the result.

Shared by the tests of tests/deploy. They need `kubectl` (Debian package `kubectl`) for
its built-in kustomize, and skip without it (`needs_kubectl`).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helios.dag.model import Task
from helios.executors.base import job_name
from helios.executors.kubernetes import jobs
from helios.messages import InputArtifact, TaskDispatch
from helios.settings import KubernetesSettings, S3Settings, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBECTL = shutil.which("kubectl")
K8S_VERSION = "1.32"
NAMESPACE = "helios"
IMAGE_REPO = "ghcr.io/helios-project/helios"
OVERLAYS = ("dev", "prod")

needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (Debian package `kubectl`)"
)

Obj = dict[str, Any]

# name -> (HTTP port, module started by `python -m`)
SERVICES = {
    "api": (8080, "services.api"),
    "metrics": (8081, "services.metrics"),
    "scheduler": (8082, "services.scheduler"),
    "watcher": (8083, "services.watcher"),
}
STORE_PORTS = {"nats": 4222, "redis": 6379, "minio": 9000}
STORES = tuple(STORE_PORTS)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet", "CronJob")

# The api's bearer tokens (issue 8, point 5): Secret, key, and where the api reads them.
TOKENS_SECRET = "helios-api-tokens"
TOKENS_FILE = "/etc/helios/auth/tokens"
DEV_SECRETS = "helios-dev-secrets"  # the dev overlay's Job that creates its Secrets


def kustomize(path: Path) -> list[Obj]:
    assert KUBECTL is not None
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@functools.cache
def _rendered(target: str) -> tuple[Obj, ...]:
    return tuple(kustomize(DEPLOY / target))


def rendered(target: str) -> list[Obj]:
    return list(_rendered(target))


def of_kind(objs: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = of_kind(objs, kind)
    assert name in found, f"{kind}/{name} missing; have {sorted(found)}"
    return found[name]


def pod_spec(workload: Obj) -> Obj:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Obj) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"].get("labels", {}))


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in WORKLOAD_KINDS]


def containers(spec: Obj) -> Iterator[Obj]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def config(objs: list[Obj]) -> dict[str, str]:
    return dict(one(objs, "ConfigMap", "helios-config")["data"])


def service_deployment(objs: list[Obj], name: str) -> tuple[Obj, Obj]:
    dep = one(objs, "Deployment", name)
    (container,) = pod_spec(dep)["containers"]
    return dep, container


def task_job(inputs: bool = True, outputs: bool = True) -> Obj:
    """A real task Job, as the scheduler's Job builder makes it for this deploy."""
    task = Task.model_validate({
        "name": "process-data", "image": "ubuntu:latest",
        "command": ["/bin/bash", "-c", "cat /artifacts/input.txt"],
        "outputs": ["out.txt"] if outputs else [],
    })
    arts = [InputArtifact(name="input.txt", from_task="gen", artifact="output.txt",
                          key="dags/r/tasks/gen/outputs/output.txt", sha256="ab" * 32, size=1)]
    dispatch = TaskDispatch(dag_id="run-1", dag_name="cache-test", task=task, attempt=1,
                            job_name=job_name("run-1", task.name, 1), use_cache=True,
                            inputs=arts if inputs else [], dispatched_at=0.0)
    settings = Settings(k8s=KubernetesSettings(namespace=NAMESPACE),
                        s3=S3Settings(endpoint_url="http://minio:9000"))
    return jobs.build_job(dispatch, settings)
