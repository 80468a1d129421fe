"""DEV OVERLAY ONLY: create the dev cluster's credentials, random, once.

Run by the Job helios-dev-secrets (dev-secrets.yaml) with the Helios image's Python and
the standard library only. It POSTs two Secrets to the Kubernetes API with the pod's
ServiceAccount token:

- `helios-api-tokens` (key `tokens`): the api's bearer tokens, one `write` and one
  `read` line (the format of HELIOS_AUTH_TOKENS_FILE);
- `helios-s3` (keys HELIOS_S3_ACCESS_KEY_ID, HELIOS_S3_SECRET_ACCESS_KEY): MinIO's root
  user, which Helios uses too.

Why not a kustomize secretGenerator: a generator can only hold literals, that is
credentials everyone who can read this repository knows. Task pods reach MinIO (their
downloader and uploader must), so a well-known S3 key would hand every task every run's
artifacts; a known API token, the API.

For each Secret: 201 created; 409 it exists and is left alone, so re-applying the
overlay (or the Job running again after its TTL) never rotates credentials under a
running stack; 401/403/404/422 a configuration error, reported and not retried; anything
else (API server starting, network) retried with a short backoff, then left to the Job's
backoffLimit. Values are never printed. Read them with
`kubectl -n helios get secret helios-api-tokens -o jsonpath='{.data.tokens}' | base64 -d`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.request

SA_DIR = os.environ.get("HELIOS_SA_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
TOKENS_SECRET = os.environ.get("HELIOS_TOKENS_SECRET", "helios-api-tokens")
S3_SECRET = os.environ.get("HELIOS_S3_SECRET", "helios-s3")
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # between attempts on transient errors
TIMEOUT_S = 10.0
PERMANENT = {401, 403, 404, 422}


def token_file(write_token: str, read_token: str) -> str:
    """The api's token file: one `scope token` line each (HELIOS_AUTH_TOKENS_FILE)."""
    return f"write {write_token}\nread {read_token}\n"


def wanted() -> list[tuple[str, dict[str, str]]]:
    """The Secrets to create, with fresh random values (URL-safe: MinIO's bucket Job puts
    the S3 keys in a URL)."""
    tokens = token_file(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
    s3 = {"HELIOS_S3_ACCESS_KEY_ID": "helios-" + secrets.token_hex(8),
          "HELIOS_S3_SECRET_ACCESS_KEY": secrets.token_hex(24)}
    return [(TOKENS_SECRET, {"tokens": tokens}), (S3_SECRET, s3)]


def secret_body(name: str, data: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/part-of": "helios", "helios.dev/dev-only": "true"},
            "annotations": {"helios.dev/created-by": "job/helios-dev-secrets"},
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def api_base() -> str:
    """The API server: an explicit URL (tests), else the in-cluster variables."""
    explicit = os.environ.get("HELIOS_K8S_API_URL")
    if explicit:
        return explicit.rstrip("/")
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _read(name: str) -> str:
    with open(os.path.join(SA_DIR, name), encoding="utf-8") as f:
        return f.read().strip()


def create_secret(base: str, namespace: str, body: dict[str, object], bearer: str) -> int:
    """POST the Secret; the HTTP status (201, 409, ...). Raises on network errors."""
    request = urllib.request.Request(
        f"{base}/api/v1/namespaces/{namespace}/secrets",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json",
                 "Accept": "application/json"},
    )
    context = None
    if base.startswith("https://"):
        context = ssl.create_default_context(cafile=os.path.join(SA_DIR, "ca.crt"))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def ensure(base: str, namespace: str, name: str, data: dict[str, str], bearer: str) -> bool:
    """Create one Secret unless it exists; False on a refusal or when retries run out."""
    body = secret_body(name, data)
    where = f"secret {namespace}/{name}"
    for attempt, delay in enumerate((*BACKOFF_S, None), start=1):
        try:
            status: int | None = create_secret(base, namespace, body, bearer)
        except (OSError, TimeoutError) as exc:  # URLError is an OSError
            print(f"{where}: attempt {attempt}: {base} unreachable: {exc}", flush=True)
            status = None
        if status == 201:
            print(f"{where} created with new random values", flush=True)
            return True
        if status == 409:
            print(f"{where} exists: left unchanged", flush=True)
            return True
        if status in PERMANENT:
            print(f"{where}: the API answered {status}; check the Role helios-dev-secrets",
                  flush=True)
            return False
        if status is not None:
            print(f"{where}: attempt {attempt}: the API answered {status}", flush=True)
        if delay is not None:
            time.sleep(delay)
    print(f"{where}: giving up; the Job retries", flush=True)
    return False


def main() -> int:
    namespace, bearer, base = _read("namespace"), _read("token"), api_base()
    for name, data in wanted():
        if not ensure(base, namespace, name, data, bearer):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
