"""DEV OVERLAY ONLY: create the Secret helios-api-tokens with fresh random tokens, once.

Run by the Job helios-token-init (api-tokens.yaml) with the Helios image's Python and
the standard library only. It POSTs the Secret to the Kubernetes API with the pod's
ServiceAccount token:

- 201: created; the api pods, which wait for the Secret, start.
- 409: it exists already. It is left alone, so re-applying the overlay (or the Job
  running again after its TTL) never rotates the tokens under a user's feet. To rotate:
  `kubectl -n helios delete secret helios-api-tokens job/helios-token-init` and re-apply;
  the api re-reads the mounted file when it changes.
- 401/403/404/422: a configuration error, reported and not retried. Anything else
  (API server starting, network) is retried with a short backoff, then left to the
  Job's backoffLimit.

The tokens are never printed. Read them with
`kubectl -n helios get secret helios-api-tokens -o jsonpath='{.data.tokens}' | base64 -d`.

Why a Job rather than a secretGenerator: a generator can only hold a literal, that is a
token known to everyone who can read this repository.
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
SECRET_NAME = os.environ.get("HELIOS_TOKENS_SECRET", "helios-api-tokens")
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # between attempts on transient errors
TIMEOUT_S = 10.0
PERMANENT = {401, 403, 404, 422}


def token_file(write_token: str, read_token: str) -> str:
    """The api's token file: one `scope token` line each (HELIOS_AUTH_TOKENS_FILE)."""
    return f"write {write_token}\nread {read_token}\n"


def secret_body(name: str, tokens: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/part-of": "helios", "helios.dev/dev-only": "true"},
            "annotations": {"helios.dev/created-by": "job/helios-token-init"},
        },
        "type": "Opaque",
        "data": {"tokens": base64.b64encode(tokens.encode()).decode()},
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


def main() -> int:
    namespace = _read("namespace")
    bearer = _read("token")
    base = api_base()
    tokens = token_file(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
    body = secret_body(SECRET_NAME, tokens)
    where = f"secret {namespace}/{SECRET_NAME}"
    for attempt, delay in enumerate((*BACKOFF_S, None), start=1):
        try:
            status = create_secret(base, namespace, body, bearer)
        except (OSError, TimeoutError) as exc:  # URLError is an OSError
            print(f"attempt {attempt}: {base} unreachable: {exc}", flush=True)
            status = None
        if status == 201:
            print(f"{where} created with a new write token and read token", flush=True)
            return 0
        if status == 409:
            print(f"{where} exists: left unchanged", flush=True)
            return 0
        if status in PERMANENT:
            print(f"{where}: the API answered {status}; check the Role helios-token-init",
                  flush=True)
            return 1
        if status is not None:
            print(f"attempt {attempt}: the API answered {status}", flush=True)
        if delay is not None:
            time.sleep(delay)
    print(f"{where}: giving up; the Job retries", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
