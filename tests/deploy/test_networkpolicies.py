"""The NetworkPolicies of both overlays, evaluated (tests/deploy/netpol.py) over a small
world: every pod the overlay runs, a real task pod (built by the scheduler's Job
builder), cluster pods elsewhere (CoreDNS, the ingress controller, Prometheus, a
stranger) and outside addresses (public S3, the API server, cloud metadata, a private
host, the internet).

The promise (issue 8, point 8): task pods reach DNS and S3 and nothing else; nothing
reaches them; NATS, Redis and the Helios services admit only Helios's own pods (plus
Prometheus, and the ingress controller for the api), so even a task pod given more
egress by an extra policy reaches none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import yaml

from .netpol import Endpoint, Network, selects
from .render import (
    DEPLOY,
    DEV_SECRETS,
    NAMESPACE,
    SERVICES,
    STORE_PORTS,
    Obj,
    needs_kubectl,
    of_kind,
    pod_labels,
    pod_spec,
    rendered,
    task_job,
    workloads,
)

pytestmark = needs_kubectl

ELSEWHERE = [
    Endpoint("coredns", "10.244.1.2", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53}),
    Endpoint("ingress-nginx", "10.244.2.2", "ingress-nginx",
             {"app.kubernetes.io/name": "ingress-nginx",
              "app.kubernetes.io/component": "controller"}),
    Endpoint("prometheus", "10.244.3.2", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
    Endpoint("stranger", "10.244.4.2", "default", {"app": "curl"}),
]
OUTSIDE = [
    Endpoint("public-s3", "52.216.8.1"),
    Endpoint("kube-apiserver", "172.18.0.2"),
    Endpoint("cloud-metadata", "169.254.169.254"),
    Endpoint("private-host", "10.20.0.5"),  # e.g. prod's NATS or Redis inside the VPC
    Endpoint("internet", "93.184.216.34"),
]
# Every port anything here listens on, and a few common ones.
PROBE_PORTS = sorted({22, 53, 80, 443, 6443, 8222, 9090, *STORE_PORTS.values(),
                      *(port for port, _ in SERVICES.values())})
HELIOS_SERVICES = set(SERVICES)


@dataclass
class World:
    net: Network
    endpoints: dict[str, Endpoint]

    def __getitem__(self, name: str) -> Endpoint:
        return self.endpoints[name]

    def allows(self, src: str, dst: str, port: int, protocol: str = "TCP") -> bool:
        return self.net.allows(self[src], self[dst], port, protocol)

    def admitted(self, dst: str, port: int) -> set[str]:
        """Who may connect to `dst` on `port` as far as `dst`'s own policies go."""
        return {name for name, src in self.endpoints.items()
                if name != dst and self.net.ingress_allows(src, self[dst], port)}


def world(objs: list[Obj], extra_policies: list[Obj] | None = None) -> World:
    endpoints: dict[str, Endpoint] = {}
    for i, w in enumerate(workloads(objs), start=10):
        named = {p["name"]: p["containerPort"]
                 for c in pod_spec(w)["containers"] for p in c.get("ports", []) if "name" in p}
        name = w["metadata"]["name"]
        endpoints[name] = Endpoint(name, f"10.244.0.{i}", NAMESPACE, pod_labels(w), named)
    task_labels = task_job()["spec"]["template"]["metadata"]["labels"]
    endpoints["task"] = Endpoint("task", "10.244.0.200", NAMESPACE, task_labels)
    endpoints.update({e.name: e for e in [*ELSEWHERE, *OUTSIDE]})
    policies = [*of_kind(objs, "NetworkPolicy").values(), *(extra_policies or [])]
    return World(Network(policies), endpoints)


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
    w = world(objs)
    broad = {"default-deny", "allow-dns", "prometheus-scrape"}
    specific = [p for p in w.net.policies if p["metadata"]["name"] not in broad]
    for e in w.endpoints.values():
        if e.namespace == NAMESPACE:
            assert any(selects(p["spec"]["podSelector"], e.labels) for p in specific), e.name


def test_task_pods_reach_dns_and_s3_and_nothing_else(objs: list[Obj], overlay: str) -> None:
    w = world(objs)
    assert w.allows("task", "coredns", 53, "UDP") and w.allows("task", "coredns", 53, "TCP")
    s3 = ("minio", 9000) if overlay == "dev" else ("public-s3", 443)
    assert w.allows("task", *s3)
    reachable = {(dst, port) for dst in w.endpoints for port in PROBE_PORTS
                 if dst != "task" and w.allows("task", dst, port)}
    # prod, until the operator narrows the rule to the S3 endpoint's addresses: a public
    # S3 address cannot be told from any other public address.
    public_https = {("internet", 443)} if overlay == "prod" else set()
    assert reachable == {("coredns", 53), s3} | public_https


def test_nothing_reaches_a_task_pod(objs: list[Obj]) -> None:
    w = world(objs)
    for port in PROBE_PORTS:
        assert w.admitted("task", port) == set(), port


@pytest.mark.parametrize("extra", [None, "readme-https", "any"])
def test_helios_services_and_stores_admit_only_helios_pods(objs: list[Obj], overlay: str,
                                                           extra: str | None) -> None:
    """Judged at the destination alone: holds whatever egress a task pod is given."""
    w = world(objs, extra_task_egress(extra))
    expected = {
        "api": HELIOS_SERVICES | {"prometheus"} | ({"ingress-nginx"} if overlay == "prod"
                                                   else set()),
        "metrics": {"api", "prometheus"},
        "scheduler": {"prometheus"},
        "watcher": {"prometheus"},
    }
    if overlay == "dev":
        expected |= {"nats": HELIOS_SERVICES, "redis": HELIOS_SERVICES,
                     "minio": {"api", "scheduler", "watcher", "task", "minio-bucket"}}
    ports = {**{name: port for name, (port, _) in SERVICES.items()}, **STORE_PORTS}
    for name, admitted in expected.items():
        assert w.admitted(name, ports[name]) == admitted - {name}, name
        if name != "minio":
            for port in PROBE_PORTS:
                assert not w.allows("task", name, port), (name, port)
    for port in PROBE_PORTS:  # one-shot Jobs admit nobody
        for job in ("minio-bucket", DEV_SECRETS):
            if job in w.endpoints:
                assert w.admitted(job, port) == set(), (job, port)


def extra_task_egress(kind: str | None) -> list[Obj]:
    """Egress an operator might add for tasks: deploy/README.md's HTTPS example, or all."""
    if kind is None:
        return []
    if kind == "readme-https":
        text = (DEPLOY / "README.md").read_text()
        blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
        (doc,) = [yaml.safe_load(b) for b in blocks if "tasks-egress-https" in b]
    else:
        doc = {"metadata": {"name": "tasks-egress-all"},
               "spec": {"podSelector": {"matchLabels": {"app": "helios-task"}},
                        "policyTypes": ["Egress"], "egress": [{}]}}
    doc["metadata"]["namespace"] = NAMESPACE
    return [doc]


def test_the_readme_example_gives_tasks_https_and_no_more(objs: list[Obj]) -> None:
    w = world(objs, extra_task_egress("readme-https"))
    assert w.allows("task", "internet", 443)
    assert not w.allows("task", "internet", 80)
    for name in (*SERVICES, *STORE_PORTS):
        if name in w.endpoints and name != "minio":
            assert not w.allows("task", name, 443), name


def test_network_flows_in_dev() -> None:
    w = world(rendered("overlays/dev"))
    allowed = [
        *((svc, "nats", 4222) for svc in SERVICES),
        *((svc, "redis", 6379) for svc in SERVICES),
        *((svc, "minio", 9000) for svc in ("api", "scheduler", "watcher")),
        ("task", "minio", 9000),
        ("minio-bucket", "minio", 9000),
        ("api", "metrics", 8081),
        ("prometheus", "api", 8080),
        (DEV_SECRETS, "kube-apiserver", 443),
        (DEV_SECRETS, "kube-apiserver", 6443),
    ]
    for flow in allowed:
        assert w.allows(*flow), f"{flow} should be allowed"
    denied = [
        ("metrics", "minio", 9000),
        ("scheduler", "metrics", 8081), ("api", "scheduler", 8082),
        ("minio-bucket", "redis", 6379), ("nats", "redis", 6379), ("redis", "minio", 9000),
        ("api", "nats", 8222), ("api", "redis", 6380),
        ("stranger", "api", 8080), ("ingress-nginx", "api", 8080),  # dev has no Ingress
        (DEV_SECRETS, "nats", 4222), (DEV_SECRETS, "api", 8080), (DEV_SECRETS, "minio", 9000),
        ("task", "public-s3", 443), ("api", "internet", 443),
    ]
    for flow in denied:
        assert not w.allows(*flow), f"{flow} should be denied"


def test_network_flows_in_prod() -> None:
    w = world(rendered("overlays/prod"))
    for svc in SERVICES:
        assert w.allows(svc, "private-host", 4222) and w.allows(svc, "private-host", 6379), svc
    for svc in ("api", "scheduler", "watcher"):
        assert w.allows(svc, "public-s3", 443), svc
    assert not w.allows("metrics", "public-s3", 443)
    assert w.allows("api", "metrics", 8081)
    assert w.allows("ingress-nginx", "api", 8080)
    assert not w.allows("stranger", "api", 8080)
    assert not w.allows("ingress-nginx", "metrics", 8081)
    # Tasks: public S3 on 443, but no private, link-local or in-cluster address.
    for dst in ("kube-apiserver", "cloud-metadata", "private-host", "ingress-nginx"):
        assert not w.allows("task", dst, 443), dst
    assert not w.allows("task", "private-host", 4222)
    assert not w.allows("task", "private-host", 6379)


@pytest.mark.parametrize("overlay_name", ["dev", "prod"])
def test_only_scheduler_and_watcher_reach_the_api_server(overlay_name: str) -> None:
    """Of the pods in the namespace. On 443 in prod, the api, scheduler and watcher's S3
    rule admits any address until narrowed (they hold no token the API server accepts
    for anything but what RBAC grants); task pods are kept off private addresses."""
    w = world(rendered(f"overlays/{overlay_name}"))
    callers = {"scheduler", "watcher"} | ({DEV_SECRETS} if overlay_name == "dev" else set())
    ours = [name for name, e in w.endpoints.items() if e.namespace == NAMESPACE]
    for port in (443, 6443):
        reach = {name for name in ours if w.allows(name, "kube-apiserver", port)}
        s3_clients = {"api"} if overlay_name == "prod" and port == 443 else set()
        assert reach == callers | s3_clients, port
        assert "task" not in reach
