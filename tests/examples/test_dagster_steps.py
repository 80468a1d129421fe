"""examples/dagster-steps with the Kubernetes executor against the stand-in cluster.

Every step runs as its own Job (its own pod), outputs travel through S3, the Secret named
in `envFromSecrets` reaches only the step that asks for it (by reference: its value is in
no Job, no log, no status), and every finished Job is gone at the end (Helios deletes a
Job once its logs are archived; `ttlSecondsAfterFinished` is the cluster's backstop).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from helios.settings import Settings
from tests.examples.helpers import example
from tests.k8s.conftest import TASK_IMAGE, add_s3_secret, kube_settings
from tests.k8s.standin import Cluster, standin_cluster
from tests.stack import running_stack, submit, task_logs, wait_run

STEPS = ["extract", "transform", "load"]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with standin_cluster(tmp_path / "k8s", task_image=TASK_IMAGE) as c:
        yield c


async def test_steps_as_jobs_with_a_secret(settings: Settings, cluster: Cluster,
                                           http: aiohttp.ClientSession) -> None:
    token = "wh-" + secrets.token_hex(16)
    add_s3_secret(cluster, settings)
    cluster.add_secret("warehouse-creds", {"WAREHOUSE_TOKEN": token})
    k8s = kube_settings(settings, cluster, pending_timeout_s=10.0)
    async with running_stack(k8s) as stack:
        run = await submit(http, stack.api_url, example("dagster-steps"))
        status = await wait_run(http, stack.api_url, run["dagId"], timeout_s=90)
        assert status["status"] == "SUCCEEDED", status
        assert [t["state"] for t in status["tasks"]] == ["SUCCEEDED"] * 3, status

        # The secret reached the load step, which read transform's output from S3: its
        # log names the token's digest, no log or status holds the token itself.
        digest = hashlib.sha256(token.encode()).hexdigest()[:12]
        logs = {step: await task_logs(http, stack.api_url, run["dagId"], step) for step in STEPS}
        assert any(line.startswith("loaded 20 rows, signed ") and line.endswith(
            f"with credentials {digest}") for line in logs["load"]), logs["load"]
        assert token not in json.dumps(logs) and token not in json.dumps(status)

        # One Job per step, the Secret referenced by name by the load step alone.
        created = [e.obj for e in cluster.store.history
                   if e.resource == "jobs" and e.type == "ADDED"]
        by_task = {j["metadata"]["labels"]["helios.dev/task"]: j for j in created}
        assert sorted(by_task) == sorted(STEPS) and len(created) == 3, [
            j["metadata"]["name"] for j in created]
        for step, job in by_task.items():
            main = next(c for c in job["spec"]["template"]["spec"]["containers"]
                        if c["name"] == "main")
            assert main["image"] == "python:3.11-slim"
            refs = [s["secretRef"]["name"] for s in main.get("envFrom", [])]
            assert refs == (["warehouse-creds"] if step == "load" else []), (step, refs)
            assert token not in json.dumps(job)
            assert job["spec"]["ttlSecondsAfterFinished"] > 0
        await cluster.wait_for(lambda: not cluster.jobs() and not cluster.pods(), timeout=30)
