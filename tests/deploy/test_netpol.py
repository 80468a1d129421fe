"""The NetworkPolicy evaluator that tests/deploy relies on, checked against the rules the
Kubernetes documentation states (pure: no cluster)."""

from __future__ import annotations

from typing import Any

from .netpol import Endpoint, Network, selects

NS = "app"
WEB = Endpoint("web", "10.0.0.1", NS, {"role": "web"}, {"http": 8080})
DB = Endpoint("db", "10.0.0.2", NS, {"role": "db"}, {"pg": 5432})
OTHER_NS_WEB = Endpoint("web2", "10.0.1.1", "other", {"role": "web"})
OUTSIDE = Endpoint("outside", "203.0.113.7")


def policy(name: str, selector: dict[str, Any], types: list[str] | None = None,
           ingress: list[Any] | None = None, egress: list[Any] | None = None,
           namespace: str = NS) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selector}
    if types is not None:
        spec["policyTypes"] = types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


DENY_ALL = policy("deny", {}, ["Ingress", "Egress"])


def test_selectors() -> None:
    assert selects({}, {"a": "1"})
    assert selects({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"})
    assert not selects({"matchLabels": {"a": "1"}}, {"a": "2"})
    expr = {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]},
                                 {"key": "b", "operator": "DoesNotExist"}]}
    assert selects(expr, {"a": "2"}) and not selects(expr, {"a": "2", "b": "x"})
    assert selects({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
                   {})


def test_no_policy_allows_and_default_deny_denies() -> None:
    assert Network([]).allows(WEB, DB, 5432)
    net = Network([DENY_ALL])
    assert not net.allows(WEB, DB, 5432)
    assert not net.allows(OUTSIDE, WEB, 8080)  # ingress isolation alone stops it
    assert not net.allows(WEB, OUTSIDE, 443)  # egress isolation alone stops it
    assert Network([DENY_ALL]).allows(OTHER_NS_WEB, OUTSIDE, 443)  # other namespace


def test_both_ends_must_admit_a_flow() -> None:
    egress = policy("web-out", {"matchLabels": {"role": "web"}}, ["Egress"],
                    egress=[{"to": [{"podSelector": {"matchLabels": {"role": "db"}}}]}])
    ingress = policy("db-in", {"matchLabels": {"role": "db"}}, ["Ingress"],
                     ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "web"}}}]}])
    assert not Network([DENY_ALL, egress]).allows(WEB, DB, 5432)
    assert not Network([DENY_ALL, ingress]).allows(WEB, DB, 5432)
    assert Network([DENY_ALL, egress, ingress]).allows(WEB, DB, 5432)
    assert not Network([DENY_ALL, egress, ingress]).allows(DB, WEB, 8080)


def test_policy_types_default_from_the_spec() -> None:
    # No policyTypes and no egress section: ingress isolation only.
    only_in = policy("in", {"matchLabels": {"role": "db"}}, ingress=[])
    assert not Network([only_in]).allows(WEB, DB, 5432)
    assert Network([only_in]).allows(DB, WEB, 8080)
    with_egress = policy("both", {"matchLabels": {"role": "db"}}, egress=[])
    assert not Network([with_egress]).allows(DB, WEB, 8080)


def test_pod_selector_alone_means_the_policy_namespace() -> None:
    admit_web = policy("db-in", {"matchLabels": {"role": "db"}}, ["Ingress"],
                       ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "web"}}}]}])
    net = Network([admit_web])
    assert net.allows(WEB, DB, 5432)
    assert not net.allows(OTHER_NS_WEB, DB, 5432)


def test_namespace_and_pod_selector_in_one_peer_are_anded() -> None:
    both = {"namespaceSelector": {"matchLabels": {"team": "x"}},
            "podSelector": {"matchLabels": {"role": "web"}}}
    ns_only = {"namespaceSelector": {"matchLabels": {"team": "x"}}}
    labels = {"other": {"team": "x"}}
    stranger = Endpoint("s", "10.0.1.2", "other", {"role": "batch"})
    anded = Network([policy("p", {}, ["Ingress"], ingress=[{"from": [both]}])], labels)
    assert anded.allows(OTHER_NS_WEB, DB, 1) and not anded.allows(stranger, DB, 1)
    assert not anded.allows(WEB, DB, 1)  # namespace `app` lacks team=x
    ored = Network([policy("p", {}, ["Ingress"], ingress=[{"from": [ns_only]}])], labels)
    assert ored.allows(stranger, DB, 1)
    by_name = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}
    assert Network([policy("p", {}, ["Ingress"], ingress=[{"from": [by_name]}])]).allows(
        stranger, DB, 1)


def test_ip_blocks_with_exceptions_also_match_pod_ips() -> None:
    out = policy("out", {}, ["Egress"], egress=[{"to": [{"ipBlock": {
        "cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16"]}}]}])
    net = Network([out])
    assert net.allows(WEB, OUTSIDE, 443)
    assert not net.allows(WEB, DB, 5432)  # 10.0.0.2 is excepted
    assert not net.allows(WEB, Endpoint("imds", "169.254.169.254"), 80)
    assert Network([policy("any", {}, ["Egress"], egress=[{"to": [
        {"ipBlock": {"cidr": "0.0.0.0/0"}}]}])]).allows(WEB, DB, 5432)
    v6 = policy("v6", {}, ["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "::/0"}}]}])
    assert not Network([v6]).allows(WEB, OUTSIDE, 443)


def test_ports_protocols_names_and_ranges() -> None:
    def net(ports: list[Any]) -> Network:
        return Network([policy("p", {}, ["Ingress"], ingress=[{"ports": ports}])])

    assert net([{"port": 5432}]).allows(WEB, DB, 5432)
    assert not net([{"port": 5432}]).allows(WEB, DB, 5433)
    assert not net([{"protocol": "UDP", "port": 5432}]).allows(WEB, DB, 5432)
    assert net([{"protocol": "UDP", "port": 53}]).allows(WEB, DB, 53, "UDP")
    assert net([{"port": "pg"}]).allows(WEB, DB, 5432)  # DB names 5432 "pg"
    assert not net([{"port": "http"}]).allows(WEB, DB, 8080)  # DB has no "http"
    assert net([{"port": 8000, "endPort": 9000}]).allows(WEB, DB, 8500)
    assert not net([{"port": 8000, "endPort": 9000}]).allows(WEB, DB, 9001)
    assert net([{"protocol": "TCP"}]).allows(WEB, DB, 1)
    assert net([]).allows(WEB, DB, 1)
