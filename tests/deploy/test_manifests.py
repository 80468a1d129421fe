"""The kustomize deploy: both overlays render, every object validates against the
Kubernetes OpenAPI schema, and the security properties deploy/README.md promises hold.

Plain synchronous tests; they need `kubectl` (Debian package `kubectl`) for its built-in
kustomize, and skip without it.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBECTL = shutil.which("kubectl")
K8S_VERSION = "1.32"
NAMESPACE = "helios"
IMAGE_REPO = "ghcr.io/helios-project/helios"

pytestmark = pytest.mark.skipif(
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
TASK_LABELS = {"app": "helios-task"}
# Volume types the "restricted" Pod Security profile admits.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet", "CronJob")


# ---------------------------------------------------------------------------- rendering


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


@pytest.fixture(params=["dev", "prod"])
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objs(overlay: str) -> list[Obj]:
    return rendered(f"overlays/{overlay}")


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


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector match (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


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


def test_base_ships_no_secret_values() -> None:
    """Only the dev overlay generates credentials, and labels them as dev-only."""
    assert not of_kind(rendered("overlays/prod"), "Secret")
    base_files = [*(DEPLOY / "base").glob("*.yaml"), *(DEPLOY / "components").rglob("*.yaml")]
    for path in base_files:
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc and doc.get("kind") == "Secret"), path
            assert not (doc and "secretGenerator" in doc), path
    (secret,) = of_kind(rendered("overlays/dev"), "Secret").values()
    assert secret["metadata"]["name"] == "helios-s3"
    assert secret["metadata"]["labels"]["helios.dev/dev-only"] == "true"
    assert set(secret["data"]) == {"HELIOS_S3_ACCESS_KEY_ID", "HELIOS_S3_SECRET_ACCESS_KEY"}


def test_config_and_secret_references_resolve(objs: list[Obj]) -> None:
    configmaps = set(of_kind(objs, "ConfigMap"))
    secrets = set(of_kind(objs, "Secret")) | {"helios-s3"}  # prod: created by the operator
    for workload in workloads(objs):
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
    assert len(stages) == 2 and stages[0][1] == "builder"
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


def test_rbac_is_exactly_least_privilege(objs: list[Obj]) -> None:
    roles = of_kind(objs, "Role")
    assert set(roles) == {"helios-scheduler", "helios-watcher"}
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


def test_only_scheduler_and_watcher_get_an_api_token(objs: list[Obj]) -> None:
    accounts = of_kind(objs, "ServiceAccount")
    assert set(accounts) == {f"helios-{n}" for n in (*SERVICES, "task")}
    for name, sa in accounts.items():
        wants = name in ("helios-scheduler", "helios-watcher")
        assert sa["automountServiceAccountToken"] is wants, name
    for workload in workloads(objs):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        if name in SERVICES:
            assert spec["serviceAccountName"] == f"helios-{name}"
            assert spec["automountServiceAccountToken"] is (name in ("scheduler", "watcher"))
        else:  # stores and the bucket Job run under `default` and need no token
            assert "serviceAccountName" not in spec, name
            assert spec["automountServiceAccountToken"] is False, name


# ------------------------------------------------------------------- network policies


def _port_matches(rule_ports: list[Obj] | None, port: int, named: dict[str, int]) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        want = p.get("port")
        if want is None or want == port or named.get(str(want)) == port:
            return True
    return False


def _peer_matches(peers: list[Obj] | None, labels: dict[str, str] | None, ip: bool) -> bool:
    """Does a from/to list admit a pod of this namespace (labels) or an outside IP?"""
    if not peers:
        return True
    for peer in peers:
        if ip and "ipBlock" in peer:
            return True
        same_namespace = "podSelector" in peer and "namespaceSelector" not in peer
        if labels is not None and same_namespace and selects(peer["podSelector"], labels):
            return True
    return False


def _direction_allows(
    policies: list[Obj], kind: str, pod: dict[str, str],
    other: dict[str, str] | None, port: int, named: dict[str, int], ip: bool = False,
) -> bool:
    key = "ingress" if kind == "Ingress" else "egress"
    peer_key = "from" if kind == "Ingress" else "to"
    chosen = [p for p in policies
              if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod)]
    if not chosen:
        return True  # not isolated in this direction
    return any(
        _peer_matches(rule.get(peer_key), other, ip)
        and _port_matches(rule.get("ports"), port, named)
        for p in chosen
        for rule in p["spec"].get(key, [])
    )


class Net:
    """Evaluates the rendered NetworkPolicies for flows inside the namespace."""

    def __init__(self, objs: list[Obj]):
        self.policies = list(of_kind(objs, "NetworkPolicy").values())
        self.pods: dict[str, tuple[dict[str, str], dict[str, int]]] = {"task": (TASK_LABELS, {})}
        for w in workloads(objs):
            named = {p["name"]: p["containerPort"]
                     for c in pod_spec(w)["containers"] for p in c.get("ports", []) if "name" in p}
            self.pods[w["metadata"]["name"]] = (pod_labels(w), named)

    def flow(self, src: str, dst: str, port: int) -> bool:
        (src_labels, _), (dst_labels, dst_named) = self.pods[src], self.pods[dst]
        return _direction_allows(
            self.policies, "Egress", src_labels, dst_labels, port, dst_named
        ) and _direction_allows(self.policies, "Ingress", dst_labels, src_labels, port, dst_named)

    def egress_outside(self, src: str, port: int) -> bool:
        labels = self.pods[src][0]
        return _direction_allows(self.policies, "Egress", labels, None, port, {}, ip=True)

    def ingress_from_anywhere(self, dst: str, port: int) -> bool:
        labels, named = self.pods[dst]
        return _direction_allows(self.policies, "Ingress", labels, None, port, named, ip=True)


def test_default_deny_and_dns_for_every_pod(objs: list[Obj]) -> None:
    policies = of_kind(objs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    dns = policies["allow-dns"]["spec"]
    assert dns["podSelector"] == {} and dns["policyTypes"] == ["Egress"]
    (rule,) = dns["egress"]
    assert rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
    ]
    assert sorted((p["protocol"], p["port"]) for p in rule["ports"]) == [
        ("TCP", 53), ("UDP", 53)
    ]


def test_every_component_has_its_own_network_policy(objs: list[Obj]) -> None:
    net = Net(objs)
    broad = {"default-deny", "allow-dns", "prometheus-scrape"}
    specific = [p for p in net.policies if p["metadata"]["name"] not in broad]
    for name, (labels, _) in net.pods.items():
        assert any(selects(p["spec"]["podSelector"], labels) for p in specific), name


def test_network_flows_in_dev() -> None:
    net = Net(rendered("overlays/dev"))
    allowed = [
        *((svc, "nats", 4222) for svc in SERVICES),
        *((svc, "redis", 6379) for svc in SERVICES),
        *((svc, "minio", 9000) for svc in ("api", "scheduler", "watcher")),
        ("task", "minio", 9000),
        ("minio-bucket", "minio", 9000),
        ("api", "metrics", 8081),
    ]
    for flow in allowed:
        assert net.flow(*flow), f"{flow} should be allowed"
    denied = [
        ("metrics", "minio", 9000),
        ("task", "nats", 4222), ("task", "redis", 6379), ("task", "api", 8080),
        ("task", "metrics", 8081), ("scheduler", "metrics", 8081),
        ("api", "scheduler", 8082), ("minio-bucket", "redis", 6379),
        ("nats", "redis", 6379), ("redis", "minio", 9000),
        ("api", "nats", 8222), ("api", "redis", 6380),
    ]
    for flow in denied:
        assert not net.flow(*flow), f"{flow} should be denied"
    assert net.ingress_from_anywhere("api", 8080)
    ports = {**{name: port for name, (port, _) in SERVICES.items()}, **STORE_PORTS}
    for name, port in ports.items():
        assert net.ingress_from_anywhere(name, port) is (name == "api"), name
    assert not net.egress_outside("task", 443)


@pytest.mark.parametrize("overlay_name", ["dev", "prod"])
def test_only_scheduler_and_watcher_reach_the_api_server(overlay_name: str) -> None:
    net = Net(rendered(f"overlays/{overlay_name}"))
    for name in ("scheduler", "watcher"):
        assert net.egress_outside(name, 6443) and net.egress_outside(name, 443)
    for name in ("api", "metrics", "task"):
        assert not net.egress_outside(name, 6443), name


def test_network_flows_in_prod() -> None:
    net = Net(rendered("overlays/prod"))
    for svc in SERVICES:
        assert net.egress_outside(svc, 4222) and net.egress_outside(svc, 6379), svc
    for svc in ("api", "scheduler", "watcher", "task"):
        assert net.egress_outside(svc, 443), svc
    assert not net.egress_outside("metrics", 443)
    assert not net.egress_outside("task", 4222) and not net.egress_outside("task", 6379)
    assert net.flow("api", "metrics", 8081)
    assert not net.flow("task", "api", 8080)


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
    assert jobs.S3_SECRET in of_kind(rendered("overlays/dev"), "Secret")
