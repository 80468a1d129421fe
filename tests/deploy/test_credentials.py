"""Credentials in the deploy. The api's bearer tokens (issue 8, point 5): both overlays
mount the Secret helios-api-tokens and point HELIOS_AUTH_TOKENS_FILE at it, and no other
pod (task pods included) can read it. Dev creates that Secret and helios-s3 with random
values in the cluster (deploy/overlays/dev/make_dev_secrets.py, run here against a
stand-in API server); prod expects the operator to create both. No credential is in the
repository.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from helios.auth_tokens import parse_tokens

from .render import (
    DEPLOY,
    DEV_SECRETS,
    NAMESPACE,
    TOKENS_FILE,
    TOKENS_SECRET,
    Obj,
    containers,
    env_of,
    needs_kubectl,
    of_kind,
    one,
    pod_spec,
    rendered,
    service_deployment,
    task_job,
    workloads,
)

SCRIPT = DEPLOY / "overlays/dev/make_dev_secrets.py"


def tokens_volumes(spec: Obj) -> list[Obj]:
    return [v for v in spec.get("volumes", [])
            if v.get("secret", {}).get("secretName") == TOKENS_SECRET]


@needs_kubectl
def test_api_reads_tokens_from_the_mounted_secret(objs: list[Obj]) -> None:
    dep, api = service_deployment(objs, "api")
    spec = pod_spec(dep)
    assert env_of(api)["HELIOS_AUTH_TOKENS_FILE"] == {"name": "HELIOS_AUTH_TOKENS_FILE",
                                                      "value": TOKENS_FILE}
    (vol,) = tokens_volumes(spec)
    secret = vol["secret"]
    assert secret["items"] == [{"key": "tokens", "path": os.path.basename(TOKENS_FILE)}]
    assert not secret.get("optional"), "without tokens the api must not start open"
    assert secret["defaultMode"] == 0o440
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
    (mount,) = [m for m in api["volumeMounts"] if m["name"] == vol["name"]]
    # The directory, not a subPath: a rotated Secret reaches running pods.
    assert mount == {"name": vol["name"], "mountPath": os.path.dirname(TOKENS_FILE),
                     "readOnly": True}


@needs_kubectl
def test_no_other_pod_sees_the_tokens(objs: list[Obj]) -> None:
    for w in [*workloads(objs), task_job()]:
        if w["metadata"]["name"] == "api":
            continue
        spec = pod_spec(w)
        assert not tokens_volumes(spec), w["metadata"]["name"]
        for c in containers(spec):
            assert "HELIOS_AUTH_TOKENS_FILE" not in env_of(c)
            refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})]
            refs += [s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s]
            assert TOKENS_SECRET not in refs, w["metadata"]["name"]


@needs_kubectl
def test_no_credential_is_shipped_in_any_overlay() -> None:
    for overlay in ("dev", "prod"):
        assert not of_kind(rendered(f"overlays/{overlay}"), "Secret"), overlay
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"HELIOS_S3_SECRET_ACCESS_KEY=(?!\.\.\.)\S", text), path
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert not re.search(r"^\s*(read|write)\s+\S{16,}\s*$", path.read_text(),
                                 re.MULTILINE), f"{path} holds what looks like a token line"


@needs_kubectl
def test_dev_creates_its_credentials_in_the_cluster() -> None:
    objs = rendered("overlays/dev")
    job = one(objs, "Job", DEV_SECRETS)
    spec = pod_spec(job)
    (c,) = spec["containers"]
    assert c["command"] == ["python", "/opt/helios-dev/make_dev_secrets.py"]
    made = {env_of(c)["HELIOS_TOKENS_SECRET"]["value"], env_of(c)["HELIOS_S3_SECRET"]["value"]}
    # Exactly the Secrets the overlay's pods reference (besides none of their own).
    referenced = set()
    for w in workloads(objs):
        for vol in pod_spec(w).get("volumes", []):
            referenced |= {vol["secret"]["secretName"]} if "secret" in vol else set()
        for cont in containers(pod_spec(w)):
            referenced |= {s["secretRef"]["name"] for s in cont.get("envFrom", [])
                           if "secretRef" in s}
            referenced |= {e["valueFrom"]["secretKeyRef"]["name"] for e in cont.get("env", [])
                           if "secretKeyRef" in e.get("valueFrom", {})}
    assert made == referenced == {TOKENS_SECRET, "helios-s3"}
    # The script the Job runs is this repository's file, byte for byte.
    (vol,) = [v for v in spec["volumes"] if "configMap" in v]
    script = one(objs, "ConfigMap", vol["configMap"]["name"])
    assert script["data"]["make_dev_secrets.py"] == SCRIPT.read_text()
    assert c["image"] == service_deployment(objs, "api")[1]["image"]  # Python is there


@needs_kubectl
def test_prod_expects_operator_made_secrets() -> None:
    objs = rendered("overlays/prod")
    assert DEV_SECRETS not in of_kind(objs, "Job")
    readme = (DEPLOY / "README.md").read_text()
    for name in (TOKENS_SECRET, "helios-s3"):
        assert f"kubectl -n {NAMESPACE} create secret generic {name}" in readme
    assert "--from-file=tokens=" in readme


# ----------------------------------------------- the dev script against a stand-in API


@dataclass
class StandIn:
    """Answers POST .../secrets with the next queued status; records what it got."""

    statuses: list[int]
    requests: list[dict[str, Any]] = field(default_factory=list)


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append({"path": self.path, "headers": dict(self.headers),
                                   "body": json.loads(body)})
            status = state.statuses.pop(0)
            payload = json.dumps({"kind": "Status", "code": status}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def api_server() -> Iterator[tuple[str, StandIn]]:
    state = StandIn(statuses=[])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, name="standin-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run_script(url: str, sa_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HELIOS_K8S_API_URL": url,
           "HELIOS_SA_DIR": str(sa_dir), "HELIOS_TOKENS_SECRET": TOKENS_SECRET}
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def sa_dir(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("sa-token-123\n")
    (tmp_path / "namespace").write_text(NAMESPACE)
    return tmp_path


def decoded(request: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in request["body"]["data"].items()}


def test_script_creates_both_secrets_with_fresh_values(
        api_server: tuple[str, StandIn], sa_dir: Path) -> None:
    url, state = api_server
    state.statuses += [201, 201, 201, 201]
    first, second = run_script(url, sa_dir), run_script(url, sa_dir)
    assert first.returncode == 0 and second.returncode == 0, first.stdout + first.stderr
    assert len(state.requests) == 4
    for req in state.requests:
        assert req["path"] == f"/api/v1/namespaces/{NAMESPACE}/secrets"
        assert req["headers"]["Authorization"] == "Bearer sa-token-123"
        assert req["body"]["metadata"]["labels"]["helios.dev/dev-only"] == "true"
    names = [r["body"]["metadata"]["name"] for r in state.requests]
    assert names == [TOKENS_SECRET, "helios-s3"] * 2
    s3, s3_again = decoded(state.requests[1]), decoded(state.requests[3])
    assert set(s3) == {"HELIOS_S3_ACCESS_KEY_ID", "HELIOS_S3_SECRET_ACCESS_KEY"}
    assert len(s3["HELIOS_S3_SECRET_ACCESS_KEY"]) >= 40
    assert s3["HELIOS_S3_SECRET_ACCESS_KEY"] != s3_again["HELIOS_S3_SECRET_ACCESS_KEY"]
    # MinIO's bucket Job puts both keys in a URL (MC_HOST_local): URL-safe only.
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", v) for v in s3.values())
    for value in s3.values():  # never printed
        assert value not in first.stdout and value not in first.stderr
    text = decoded(state.requests[0])["tokens"]
    # The api's own parser accepts the file (b64token characters, length, distinct).
    assert [e.scope for e in parse_tokens(text)] == ["write", "read"]
    pairs = [line.split(" ") for line in text.splitlines()]
    assert [scope for scope, _ in pairs] == ["write", "read"]
    tokens = [token for _, token in pairs]
    assert len(set(tokens)) == 2 and all(len(t) >= 40 for t in tokens)
    again = decoded(state.requests[2])["tokens"]
    assert not set(tokens) & {line.split(" ")[1] for line in again.splitlines()}
    for token in tokens:  # never printed
        assert token not in first.stdout and token not in first.stderr
    assert "created" in first.stdout


def test_script_leaves_existing_secrets_alone(api_server: tuple[str, StandIn],
                                             sa_dir: Path) -> None:
    url, state = api_server
    state.statuses += [409, 201]
    out = run_script(url, sa_dir)
    assert out.returncode == 0 and "left unchanged" in out.stdout and "created" in out.stdout
    assert len(state.requests) == 2


def test_script_retries_transient_errors_but_not_refusals(api_server: tuple[str, StandIn],
                                                          sa_dir: Path) -> None:
    url, state = api_server
    state.statuses += [503, 201, 201]
    assert run_script(url, sa_dir).returncode == 0
    assert len(state.requests) == 3
    state.statuses.append(403)
    refused = run_script(url, sa_dir)
    assert refused.returncode == 1 and "403" in refused.stdout
    assert len(state.requests) == 4  # not retried, and the next Secret not attempted
