"""Fixtures: a stand-in cluster per test, and settings that point Helios at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helios.settings import KubernetesSettings, Settings

from .standin import Cluster, standin_cluster

TASK_IMAGE = "helios:test"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with standin_cluster(tmp_path / "k8s", task_image=TASK_IMAGE) as c:
        yield c


def kube_settings(base: Settings, cluster: Cluster, **k8s: Any) -> Settings:
    """`base` with the kubernetes executor pointed at `cluster` through a kubeconfig."""
    fields: dict[str, Any] = {"in_cluster": False, "kubeconfig": str(cluster.kubeconfig),
                              "namespace": cluster.namespace, "task_image": TASK_IMAGE,
                              # A PID 1 ignoring SIGTERM holds a deleted pod this long.
                              "cancel_grace_s": 1, **k8s}
    return base.model_copy(update={"executor": "kubernetes",
                                   "k8s": KubernetesSettings(**fields)})


def add_s3_secret(cluster: Cluster, settings: Settings) -> None:
    """The `helios-s3` Secret the Job's helpers read their credentials from."""
    s3 = settings.s3
    assert s3.access_key_id and s3.secret_access_key
    cluster.add_secret("helios-s3", {
        "HELIOS_S3_ACCESS_KEY_ID": s3.access_key_id.get_secret_value(),
        "HELIOS_S3_SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value(),
    })


@pytest.fixture
def k8s(settings: Settings, cluster: Cluster) -> Settings:
    """Real NATS/Redis/S3 (fresh per test) plus the stand-in cluster."""
    add_s3_secret(cluster, settings)
    return kube_settings(settings, cluster, pending_timeout_s=3.0)
