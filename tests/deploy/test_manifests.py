"""The kustomize deploy: both overlays render, every object validates against the
Kubernetes OpenAPI schema, and the security properties deploy/README.md promises hold.
(NetworkPolicies: test_networkpolicies.py; the api's tokens: test_api_tokens.py.)

Plain synchronous tests; they need `kubectl` (Debian package `kubectl`) for its built-in
kustomize, and skip without it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .netpol import selects
from .render import (
    DEPLOY,
    DEV_SECRETS,
    IMAGE_REPO,
    K8S_VERSION,
    NAMESPACE,
    ROOT,
    SERVICES,
    STORES,
    TOKENS_SECRET,
    Obj,
    config,
    containers,
    env_of,
    kustomize,
    needs_kubectl,
    of_kind,
    one,
    pod_labels,
    pod_spec,
    rendered,
    service_deployment,
    task_job,
    workloads,
)

pytestmark = needs_kubectl

TASK_LABELS = {"app": "helios-task"}
# Volume types the "restricted" Pod Security profile admits.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}


# ------------------------------------------------------------------------------ schema


@pytest.mark.parametrize("target", ["overlays/dev", "overlays/prod", "extras/pod-guard"])
def test_every_object_validates_against_the_openapi_schema(target: str) -> None:
    objs = rendered(target)
    assert objs
    errors = []
    for obj in objs:
        ident = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{ident}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{ident}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_schema_validation_is_not_vacuous() -> None:
    """A typo in a field name and a wrong type must both be caught (strict mode)."""
    dep = one(rendered("overlays/dev"), "Deployment", "api")
    typo = yaml.safe_load(yaml.safe_dump(dep))
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    wrong_type = yaml.safe_load(yaml.safe_dump(dep))
    wrong_type["spec"]["replicas"] = "three"
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


# ------------------------------------------------------------------------------ layout


def test_dev_runs_the_whole_stack_in_cluster() -> None:
    objs = rendered("overlays/dev")
    assert set(of_kind(objs, "Deployment")) == set(SERVICES)
    assert set(of_kind(objs, "StatefulSet")) == set(STORES)
    assert "minio-bucket" in of_kind(objs, "Job")
    assert all(d["spec"]["replicas"] == 1 for d in workloads(objs) if "replicas" in d["spec"])
    assert not of_kind(objs, "Ingress")
    cfg = config(objs)
    assert cfg["HELIOS_NATS_URL"] == "nats://nats:4222"
    assert cfg["HELIOS_REDIS_URL"] == "redis://redis:6379/0"
    assert cfg["HELIOS_S3_ENDPOINT_URL"] == "http://minio:9000"
    # Every in-cluster URL names a Service that exists and exposes that port.
    services = of_kind(objs, "Service")
    for url in (cfg["HELIOS_NATS_URL"], cfg["HELIOS_REDIS_URL"], cfg["HELIOS_S3_ENDPOINT_URL"],
                cfg["HELIOS_METRICS_URL"]):
        m = re.match(r"^[a-z]+://([a-z0-9-]+):(\d+)", url)
        assert m, url
        host, port = m.group(1), int(m.group(2))
        assert host in services, url
        assert port in {p["port"] for p in services[host]["spec"]["ports"]}, url


def test_prod_uses_external_stores_and_scales_the_api() -> None:
    objs = rendered("overlays/prod")
    assert set(of_kind(objs, "Deployment")) == set(SERVICES)
    assert not of_kind(objs, "StatefulSet"), "prod must not run in-cluster stores"
    assert not of_kind(objs, "Job")
    cfg = config(objs)
    for key in ("HELIOS_NATS_URL", "HELIOS_REDIS_URL", "HELIOS_S3_ENDPOINT_URL"):
        host = re.sub(r"^[a-z]+://(?:[^@/]*@)?([^:/]+).*$", r"\1", cfg[key])
        assert host not in STORES, f"{key} still points at the in-cluster {host}"
    api, _ = service_deployment(objs, "api")
    assert api["spec"]["replicas"] == 3
    anti = pod_spec(api)["affinity"]["podAntiAffinity"]
    terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert any(
        t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        and selects(t["podAffinityTerm"]["labelSelector"], pod_labels(api))
        for t in terms
    )


def test_no_secret_values_anywhere() -> None:
    """No overlay ships a Secret: dev makes its own in the cluster (test_credentials.py),
    prod's are the operator's."""
    for overlay in ("dev", "prod"):
        assert not of_kind(rendered(f"overlays/{overlay}"), "Secret"), overlay
    for path in DEPLOY.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc and doc.get("kind") == "Secret"), path
            assert not (doc and "secretGenerator" in doc), path


def test_config_and_secret_references_resolve(objs: list[Obj]) -> None:
    configmaps = set(of_kind(objs, "ConfigMap"))
    # prod: both created by the operator; dev: both by the Job helios-dev-secrets.
    secrets = set(of_kind(objs, "Secret")) | {"helios-s3", TOKENS_SECRET}
    for workload in workloads(objs):
        for vol in pod_spec(workload).get("volumes", []):
            if "configMap" in vol:
                assert vol["configMap"]["name"] in configmaps, vol
            if "secret" in vol:
                assert vol["secret"]["secretName"] in secrets, vol
        for c in containers(pod_spec(workload)):
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    assert src["configMapRef"]["name"] in configmaps
                if "secretRef" in src:
                    assert src["secretRef"]["name"] in secrets
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["name"] in configmaps
                    assert ref["configMapKeyRef"]["key"] in config(objs)
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["name"] in secrets
                    assert ref["secretKeyRef"]["key"].startswith("HELIOS_S3_")


def test_everything_is_namespaced_and_nothing_is_cluster_wide(objs: list[Obj]) -> None:
    cluster_scoped = {o["kind"] for o in objs if "namespace" not in o["metadata"]}
    assert cluster_scoped == {"Namespace"}
    assert {o["metadata"]["namespace"] for o in objs if o["kind"] != "Namespace"} == {NAMESPACE}
    assert not {"ClusterRole", "ClusterRoleBinding"} & {o["kind"] for o in objs}
    for binding in of_kind(objs, "RoleBinding").values():
        assert binding["roleRef"]["kind"] == "Role"
        assert all(s["namespace"] == NAMESPACE for s in binding["subjects"])


def test_namespace_pod_security_labels(objs: list[Obj]) -> None:
    labels = one(objs, "Namespace", NAMESPACE)["metadata"]["labels"]
    # hostPath (the node cache) is forbidden by baseline as well as restricted, so task
    # pods need "privileged"; warn and audit still hold everything to "restricted".
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_task_image_follows_the_services_image(tmp_path: Path) -> None:
    """`images:` in an overlay retags the services and the task helper image together."""
    for overlay in ("dev", "prod"):
        objs = rendered(f"overlays/{overlay}")
        images = {c["image"] for d in of_kind(objs, "Deployment").values()
                  for c in pod_spec(d)["containers"]}
        assert images == {config(objs)["HELIOS_K8S_TASK_IMAGE"]}
        assert images.pop().startswith(IMAGE_REPO + ":")
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    kust = tmp_path / "deploy/overlays/prod/kustomization.yaml"
    doc = yaml.safe_load(kust.read_text())
    doc["images"] = [{"name": IMAGE_REPO, "digest": "sha256:" + "ab" * 32}]
    kust.write_text(yaml.safe_dump(doc))
    objs = kustomize(kust.parent)
    pinned = f"{IMAGE_REPO}@sha256:{'ab' * 32}"
    assert config(objs)["HELIOS_K8S_TASK_IMAGE"] == pinned
    for dep in of_kind(objs, "Deployment").values():
        assert pod_spec(dep)["containers"][0]["image"] == pinned


# ----------------------------------------------------------------------- pod security


def test_every_pod_meets_the_restricted_profile(objs: list[Obj]) -> None:
    """Every pod deploy/ creates (services, stores, the bucket Job) is "restricted"."""
    assert workloads(objs)
    for workload in workloads(objs):
        ident = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        psc = spec.get("securityContext", {})
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), ident
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", ident
        for vol in spec.get("volumes", []):
            kinds = set(vol) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{ident}: volume {vol['name']} is {kinds}"
        for c in containers(spec):
            where = f"{ident}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("privileged") is not True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert not any(p.get("hostPort") for p in c.get("ports", [])), where
            for key in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(key, {})), (
                    f"{where}: resources.{key}"
                )


@pytest.mark.parametrize(("inputs", "outputs"), [(True, True), (False, False)])
def test_task_pods_are_never_privileged(inputs: bool, outputs: bool) -> None:
    """Task pods cannot meet "restricted" (hostPath cache, user images that need root),
    but no container of theirs is privileged, escalates or keeps a capability beyond
    CHOWN (cache-owner's), the helpers run as the image's user, and the cache is mounted
    by Helios's helpers only."""
    spec = pod_spec(task_job(inputs, outputs))
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert spec["shareProcessNamespace"] is False
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert set(host_paths.values()) <= {config(rendered("overlays/dev"))[
        "HELIOS_K8S_NODE_CACHE_DIR"]}
    for c in containers(spec):
        sc = c["securityContext"]
        assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert set(sc["capabilities"].get("add", [])) <= {"CHOWN"}, c["name"]
        assert not any(p.get("hostPort") for p in c.get("ports", [])), c["name"]
        if c["name"] in ("downloader", "uploader"):
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
            assert sc["readOnlyRootFilesystem"] is True
        if {m["name"] for m in c["volumeMounts"]} & set(host_paths):
            assert c["name"] in ("cache-owner", "downloader"), c["name"]


def test_long_running_containers_have_probes(objs: list[Obj]) -> None:
    for workload in workloads(objs):
        if workload["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in pod_spec(workload)["containers"]:
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert "livenessProbe" in c and "readinessProbe" in c, where


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_deployment(objs: list[Obj], name: str) -> None:
    port, module = SERVICES[name]
    dep, c = service_deployment(objs, name)
    spec = pod_spec(dep)
    assert c["command"] == ["python", "-m", module]
    assert c["image"].startswith(IMAGE_REPO)
    assert c["ports"] == [{"name": "http", "containerPort": port}]
    assert env_of(c)["HELIOS_HTTP_PORT"]["value"] == str(port)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert spec["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert spec["enableServiceLinks"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    # SIGTERM drains within HELIOS_DRAIN_TIMEOUT_S; the preStop sleep comes first, and
    # both must fit in the grace period or the kubelet kills in-flight work.
    drain = float(config(objs)["HELIOS_DRAIN_TIMEOUT_S"])
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
    assert sleep + drain < spec["terminationGracePeriodSeconds"]
    svc = one(objs, "Service", name)
    assert svc["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    assert selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(dep))


def test_traffic_serving_services_roll_without_downtime(objs: list[Obj]) -> None:
    for name in ("api", "metrics"):
        dep, c = service_deployment(objs, name)
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep", name
    for name in ("scheduler", "watcher"):  # singletons: never two at once
        dep, _ = service_deployment(objs, name)
        assert dep["spec"]["replicas"] == 1
        assert dep["spec"]["strategy"]["type"] == "Recreate", name


def test_store_pods_keep_their_data_on_volumes() -> None:
    objs = rendered("overlays/dev")
    for name in STORES:
        sts = one(objs, "StatefulSet", name)
        assert sts["spec"]["serviceName"] in of_kind(objs, "Service")
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        (c,) = pod_spec(sts)["containers"]
        assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in c["volumeMounts"]
    nats = pod_spec(one(objs, "StatefulSet", "nats"))["containers"][0]
    assert nats["args"][:3] == ["-js", "-sd", "/data"]
    redis = pod_spec(one(objs, "StatefulSet", "redis"))["containers"][0]
    assert redis["args"][redis["args"].index("--appendonly") + 1] == "yes"


def test_dockerfile_is_multi_stage_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE)
    # The web page is built in a node stage first; the Python builder and the final stage follow.
    assert [alias for _, alias in stages] == ["web", "builder", ""]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.MULTILINE)
    final = text[text.rindex("\nFROM ") :]
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert not re.search(r"apt-get|pip install", final), "no build tools in the final stage"
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users == ["10001:10001"]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :][:1] == ["*"], ".dockerignore must be an allowlist"


# ------------------------------------------------------------------------------- RBAC


def rules_of(role: Obj) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_rbac_is_exactly_least_privilege(objs: list[Obj], overlay: str) -> None:
    roles = of_kind(objs, "Role")
    expected = {"helios-scheduler", "helios-watcher"}
    if overlay == "dev":  # creates the api's token Secret, and may do nothing else
        expected.add(DEV_SECRETS)
        assert rules_of(roles[DEV_SECRETS]) == {("", "secrets"): {"create"}}
    assert set(roles) == expected
    assert rules_of(roles["helios-scheduler"]) == {
        ("batch", "jobs"): {"create", "get", "list", "delete"},
    }
    assert rules_of(roles["helios-watcher"]) == {
        ("batch", "jobs"): {"get", "list", "watch", "delete"},
        ("", "pods"): {"get", "list", "watch"},
        ("", "pods/log"): {"get"},
    }
    bindings = of_kind(objs, "RoleBinding")
    assert set(bindings) == set(roles)
    for name, binding in bindings.items():
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}
        ]


def test_only_pods_that_call_the_kubernetes_api_get_a_token(objs: list[Obj],
                                                               overlay: str) -> None:
    """Scheduler and watcher (and dev's one-shot token Job); never the api, metrics, the
    stores, or a task pod."""
    accounts = of_kind(objs, "ServiceAccount")
    expected = {f"helios-{n}" for n in (*SERVICES, "task")}
    assert set(accounts) == expected | ({DEV_SECRETS} if overlay == "dev" else set())
    for name, sa in accounts.items():
        wants = name in ("helios-scheduler", "helios-watcher")
        assert sa["automountServiceAccountToken"] is wants, name
    for workload in workloads(objs):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        if name in SERVICES:
            assert spec["serviceAccountName"] == f"helios-{name}"
            assert spec["automountServiceAccountToken"] is (name in ("scheduler", "watcher"))
        elif name == DEV_SECRETS:  # opts in on the pod; its account stays off by default
            assert spec["serviceAccountName"] == DEV_SECRETS
            assert spec["automountServiceAccountToken"] is True
        else:  # stores and the bucket Job run under `default` and need no token
            assert "serviceAccountName" not in spec, name
            assert spec["automountServiceAccountToken"] is False, name
    task = pod_spec(task_job())
    assert task["serviceAccountName"] in accounts
    assert task["automountServiceAccountToken"] is False
    assert accounts[task["serviceAccountName"]]["automountServiceAccountToken"] is False


# --------------------------------------------------------------- availability, ingress


def test_every_workload_has_a_disruption_budget_that_allows_drains(objs: list[Obj]) -> None:
    pdbs = list(of_kind(objs, "PodDisruptionBudget").values())
    for workload in workloads(objs):
        if workload["kind"] == "Job":
            continue
        name = workload["metadata"]["name"]
        (pdb,) = [p for p in pdbs if selects(p["spec"]["selector"], pod_labels(workload))]
        # maxUnavailable >= 1 never blocks a node drain, even with one replica.
        assert pdb["spec"].get("maxUnavailable", 0) >= 1, name
        assert "minAvailable" not in pdb["spec"], name
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", name


def test_prod_ingress_keeps_sse_streaming() -> None:
    objs = rendered("overlays/prod")
    ingress = one(objs, "Ingress", "api")
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": "api", "port": {"name": "http"}}]
    assert ingress["spec"]["tls"]


# --------------------------------------------------------------------------- extras


def test_pod_guard_allows_only_the_cache_hostpath() -> None:
    objs = rendered("extras/pod-guard")
    assert {o["kind"] for o in objs} == {
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"
    }
    policy = one(objs, "ValidatingAdmissionPolicy", "helios-pod-guard")
    binding = one(objs, "ValidatingAdmissionPolicyBinding", "helios-pod-guard")
    assert binding["spec"]["policyName"] == "helios-pod-guard"
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
    }
    cache_dir = config(rendered("overlays/dev"))["HELIOS_K8S_NODE_CACHE_DIR"]
    hostpath_rule = [v for v in policy["spec"]["validations"] if "hostPath" in v["expression"]]
    assert len(hostpath_rule) == 1 and f"'{cache_dir}'" in hostpath_rule[0]["expression"]


# ------------------------------------------------------- contract with the Job builder


def test_task_jobs_fit_this_deploy() -> None:
    """The names the scheduler's Job builder uses exist here, so task pods get their
    ServiceAccount, S3 Secret, NetworkPolicies and cache path."""
    jobs = pytest.importorskip("helios.executors.kubernetes.jobs")
    labels = pytest.importorskip("helios.executors.kubernetes.labels")
    from helios.settings import KubernetesSettings

    assert {labels.L_APP: labels.APP} == TASK_LABELS
    assert jobs.HELPER_UID == 10001  # the Dockerfile's USER
    for overlay in ("dev", "prod"):
        objs = rendered(f"overlays/{overlay}")
        assert jobs.DEFAULT_SERVICE_ACCOUNT in of_kind(objs, "ServiceAccount")
        cfg = config(objs)
        default = KubernetesSettings.model_fields["node_cache_dir"].default
        assert cfg["HELIOS_K8S_NODE_CACHE_DIR"] == default
        assert cfg["HELIOS_CACHE_DIR"] == jobs.CACHE_MOUNT
    made = env_of(pod_spec(one(rendered("overlays/dev"), "Job", DEV_SECRETS))["containers"][0])
    assert made["HELIOS_S3_SECRET"]["value"] == jobs.S3_SECRET
