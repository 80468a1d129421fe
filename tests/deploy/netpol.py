"""A small evaluator of Kubernetes NetworkPolicies (networking.k8s.io/v1), for tests.

Given the rendered policies and a few endpoints (pods with a namespace, labels, an IP
and named ports; or addresses outside the cluster), it answers "may A open a connection
to B on port P?" the way the API documents it:

- a pod is isolated for a direction when some policy of its namespace selects it with
  that direction in its policyTypes (absent policyTypes: Ingress, plus Egress when the
  policy has egress rules); a non-isolated direction allows everything;
- an isolated direction allows a connection when any rule of any selecting policy
  matches both the peer and the port (policies are additive, there is no deny rule);
- a connection needs the source's egress and the destination's ingress, each judged
  only for endpoints that are pods (an outside address has no policies);
- peers: `podSelector` alone means pods of the policy's namespace;
  `namespaceSelector` (with an optional `podSelector`) pods of matching namespaces;
  `ipBlock` a CIDR minus its `except` list. Whether an ipBlock matches pod IPs depends
  on the CNI (Calico: yes, Cilium: no); the evaluator assumes it does, which is the
  conservative reading for "must be denied" checks;
- ports: absent means all; protocol defaults to TCP; a named port resolves against the
  destination pod's container ports; `endPort` gives a range.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def selects(selector: Obj, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector match; `{}` selects everything."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace set) or an address outside the cluster (namespace None)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def _policy_types(policy: Obj) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def _in_block(ip: str, block: Obj) -> bool:
    addr = ipaddress.ip_address(ip)
    net = ipaddress.ip_network(block["cidr"])
    if addr.version != net.version or addr not in net:
        return False
    return not any(addr in ipaddress.ip_network(e) for e in block.get("except") or [])


class Network:
    def __init__(self, policies: list[Obj],
                 namespace_labels: Mapping[str, Mapping[str, str]] | None = None):
        self.policies = policies
        self._ns_labels = dict(namespace_labels or {})

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        # The API server sets this label on every namespace.
        return {**self._ns_labels.get(namespace, {}), "kubernetes.io/metadata.name": namespace}

    def _selecting(self, pod: Endpoint, direction: str) -> list[Obj]:
        return [p for p in self.policies
                if p["metadata"].get("namespace") == pod.namespace
                and direction in _policy_types(p)
                and selects(p["spec"].get("podSelector") or {}, pod.labels)]

    def _peer_matches(self, peer: Obj, policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            return _in_block(other.ip, peer["ipBlock"])
        if not other.is_pod:
            return False
        assert other.namespace is not None
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], self.namespace_labels(other.namespace)):
                return False
        elif other.namespace != policy_ns:
            return False
        return selects(peer.get("podSelector") or {}, other.labels)

    @staticmethod
    def _port_matches(rule_ports: list[Obj] | None, dst: Endpoint, port: int,
                      protocol: str) -> bool:
        if not rule_ports:
            return True
        for p in rule_ports:
            if p.get("protocol", "TCP") != protocol:
                continue
            want = p.get("port")
            if want is None:
                return True
            if isinstance(want, str):
                if dst.ports.get(want) == port:
                    return True
            elif int(want) <= port <= int(p.get("endPort") or want):
                return True
        return False

    def _direction_allows(self, pod: Endpoint, direction: str, other: Endpoint,
                          dst: Endpoint, port: int, protocol: str) -> bool:
        chosen = self._selecting(pod, direction)
        if not chosen:
            return True
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in chosen:
            ns = policy["metadata"]["namespace"]
            for rule in policy["spec"].get(rules_key) or []:
                peers = rule.get(peers_key)
                peer_ok = not peers or any(self._peer_matches(p, ns, other) for p in peers)
                if peer_ok and self._port_matches(rule.get("ports"), dst, port, protocol):
                    return True
        return False

    def egress_allows(self, src: Endpoint, dst: Endpoint, port: int,
                      protocol: str = "TCP") -> bool:
        """Do `src`'s policies let it send to `dst` (whatever `dst` admits)?"""
        return not src.is_pod or self._direction_allows(src, "Egress", dst, dst, port,
                                                          protocol)

    def ingress_allows(self, src: Endpoint, dst: Endpoint, port: int,
                       protocol: str = "TCP") -> bool:
        """Do `dst`'s policies admit `src` (whatever `src` may send)?"""
        return not dst.is_pod or self._direction_allows(dst, "Ingress", src, dst, port,
                                                          protocol)

    def allows(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """May `src` open a connection to `dst` on `port`? Both ends must agree."""
        return (self.egress_allows(src, dst, port, protocol)
                and self.ingress_allows(src, dst, port, protocol))
