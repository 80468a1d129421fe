"""envFromSecrets on the local executor, end to end on the session servers: the task gets
the Secret's variables inside its sandbox (its own `env` winning), the value appears in
no log, status or event, nothing of it is left open in the sandbox, and a missing Secret
fails the attempt with SecretNotFound."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp

from helios.settings import Settings
from tests.stack import by_name, doc, follow, running_stack, sh, submit, task_logs, wait_run

TOKEN = "s3cr3t-w4reh0use = 'literal' $HOME"


async def test_secrets_reach_the_task_only(
    settings: Settings, http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o700)
    path = folder / "warehouse-creds.env"
    path.write_text(f"# the warehouse\nWAREHOUSE_TOKEN={TOKEN}\nMODE=from-secret\n")
    path.chmod(0o600)
    configured = settings.model_copy(update={
        "local": settings.local.model_copy(update={"secrets_dir": folder})})
    dag = doc(
        "secrets",
        sh("load", 'printf %s "$WAREHOUSE_TOKEN" | sha256sum; echo "mode=$MODE"; '
                   "ls -l /proc/self/fd/",
           envFromSecrets=["warehouse-creds"], env={"MODE": "from-env"}),
        sh("orphan", "echo never", envFromSecrets=["missing-creds"]),
    )
    async with running_stack(configured, only=("scheduler", "watcher", "api")) as stack:
        run = await submit(http, stack.api_url, dag)
        dag_id = run["dagId"]
        status = await wait_run(http, stack.api_url, dag_id)
        events = await follow(http, stack.api_url, dag_id)
        tasks = by_name(status)
        load_logs = await task_logs(http, stack.api_url, dag_id, "load")
        orphan_logs = await task_logs(http, stack.api_url, dag_id, "orphan")

    assert tasks["load"]["state"] == "SUCCEEDED", tasks["load"]
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    assert f"{digest}  -" in load_logs, load_logs
    assert "mode=from-env" in load_logs  # the task's env wins over the Secret
    assert not any("memfd" in line for line in load_logs)  # bwrap closed what it read

    orphan = tasks["orphan"]
    assert (orphan["state"], orphan["reason"]) == ("FAILED", "SecretNotFound"), orphan
    assert "missing-creds" in orphan["message"]
    assert any(line.startswith("[HELIOS] SecretNotFound: missing-creds")
               for line in orphan_logs), orphan_logs

    seen = json.dumps([status, events, load_logs, orphan_logs])
    assert "s3cr3t" not in seen and "from-secret" not in seen
