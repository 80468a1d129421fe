"""What `helios dev --executor kubernetes` prepares in the cluster before any service
starts: the namespace, the `helios-task` ServiceAccount the task pods run as, and the
`helios-s3` Secret with this start's S3 keys (which the Jobs' helpers read)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from helios.devstack.cluster import ClusterError, ClusterTarget
from helios.executors.kubernetes.client import KubeApi, KubeError, open_api
from helios.executors.kubernetes.jobs import DEFAULT_SERVICE_ACCOUNT, S3_SECRET

log = logging.getLogger(__name__)

MANAGED = {"app.kubernetes.io/managed-by": "helios-dev"}


async def _call(api: KubeApi, method: str, *args: Any) -> None:
    # The client's own call: its timeout, rate limit and KubeError from the Status.
    await api._call(api.core, method, *args)


async def _create(api: KubeApi, method: str, body: dict[str, Any], *, replace: str | None = None
                  ) -> None:
    """Create; on 409 leave it (or delete and create again with `replace`, the delete
    method); on 404 (no such namespace) create the namespace first."""
    ns = api.namespace
    try:
        await _call(api, method, ns, body)
        return
    except KubeError as exc:
        if exc.code == 404:
            await _ensure_namespace(api)
        elif exc.code == 409 and replace:
            await _call(api, replace, body["metadata"]["name"], ns)
        elif exc.code == 409:
            return
        else:
            raise
    await _call(api, method, ns, body)


async def _ensure_namespace(api: KubeApi) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": api.namespace, "labels": MANAGED}}
    try:
        await _call(api, "create_namespace", body)
        log.info("created namespace %s", api.namespace)
    except KubeError as exc:  # 409: made meanwhile; anything else shows in the retry
        log.warning("namespace %s not created: %s", api.namespace, exc)


def secret_body(access_key: str, secret_key: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": S3_SECRET, "labels": MANAGED},
            "stringData": {"HELIOS_S3_ACCESS_KEY_ID": access_key,
                           "HELIOS_S3_SECRET_ACCESS_KEY": secret_key}}


def service_account_body() -> dict[str, Any]:
    # The pods run as this account with no API token mounted (build_job sets that too).
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "labels": MANAGED},
            "automountServiceAccountToken": False}


async def prepare_cluster(target: ClusterTarget, access_key: str, secret_key: str) -> None:
    """Namespace, ServiceAccount and this start's `helios-s3` Secret; ClusterError with
    one line when the cluster cannot be reached or refuses."""
    where = f"the cluster of {target.kubeconfig} (namespace {target.namespace})"
    try:
        async with open_api(target.settings()) as api:
            await _create(api, "create_namespaced_secret", secret_body(access_key, secret_key),
                          replace="delete_namespaced_secret")
            await _create(api, "create_namespaced_service_account", service_account_body())
    except KubeError as exc:
        raise ClusterError(f"{where} refused: {exc}") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach {where}: {exc or type(exc).__name__}") from None
    except Exception as exc:  # a kubeconfig the client cannot load, for one
        raise ClusterError(f"cannot use {where}: {exc}") from None
