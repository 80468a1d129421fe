"""The API server's defaulting of pod specs, for the fields the stand-in acts on.

As the real API server does on create (pkg/apis/core/v1/defaults.go): a container
without `imagePullPolicy` gets `Always` when its image has the `latest` tag or no tag
(and no digest), `IfNotPresent` otherwise; a pod spec without
`terminationGracePeriodSeconds` gets 30. A Job's pod template is defaulted when the Job
is created, so what the Job controller copies into its pod is already complete.
"""

from __future__ import annotations

from typing import Any

GRACE_DEFAULT_S = 30


def default_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("terminationGracePeriodSeconds", GRACE_DEFAULT_S)
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if not container.get("imagePullPolicy"):
                container["imagePullPolicy"] = default_pull_policy(str(container.get("image")))


def apply(resource: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` as it would be stored (defaulted in place, and returned)."""
    if resource == "pods":
        pod_spec(body.setdefault("spec", {}))
    elif resource == "jobs":
        template = body.setdefault("spec", {}).setdefault("template", {})
        pod_spec(template.setdefault("spec", {}))
    return body
