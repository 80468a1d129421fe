"""`helios dev --executor kubernetes`: the stack on this machine, the tasks on a cluster.

What changes next to the local executor:
- the scheduler and the watcher use the kubeconfig and the namespace given; the local
  runner is not started (the watcher follows Jobs instead);
- the task pods reach S3 through a relay on the advertised address (relay.py), on a
  port kept across restarts; every other port of the stack stays on loopback;
- the namespace, the `helios-s3` Secret (this start's S3 keys, which the Job's helpers
  read, as deploy/ arranges it in a cluster) and the `helios-task` ServiceAccount the
  pods run as are created if missing; the Secret is rewritten at each start since the
  keys are new at each start (kube_prep.py, imported only then: the Kubernetes client
  is slow to import).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from helios.devstack.relay import Relay, s3_relay
from helios.settings import KubernetesSettings

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "helios"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DEFAULT_TASK_IMAGE = "helios:latest"
# Where a UDP "connect" is aimed to learn which local address the default route uses;
# documentation ranges: no packet is ever sent.
ROUTE_PROBES = ((socket.AF_INET, "198.51.100.1"), (socket.AF_INET6, "2001:db8::1"))


class ClusterError(RuntimeError):
    """The cluster cannot be used; the message is the one line to print."""


@dataclass(frozen=True)
class ClusterTarget:
    kubeconfig: Path
    namespace: str = DEFAULT_NAMESPACE
    advertise_address: str = "127.0.0.1"
    task_image: str = DEFAULT_TASK_IMAGE
    guessed: bool = False  # the address was guessed, not given

    def settings(self) -> KubernetesSettings:
        return KubernetesSettings(in_cluster=False, kubeconfig=str(self.kubeconfig),
                                  namespace=self.namespace, task_image=self.task_image)

    def env(self, task_s3_url: str) -> dict[str, str]:
        """The HELIOS_* settings of the services for this cluster."""
        return {
            "HELIOS_EXECUTOR": "kubernetes",
            "HELIOS_K8S_IN_CLUSTER": "false",
            "HELIOS_K8S_KUBECONFIG": str(self.kubeconfig),
            "HELIOS_K8S_NAMESPACE": self.namespace,
            "HELIOS_K8S_TASK_IMAGE": self.task_image,
            "HELIOS_K8S_TASK_S3_ENDPOINT_URL": task_s3_url,
        }


def guess_advertise_address() -> str | None:
    """The address of the interface the default route leaves by (a pod on a kind or
    minikube node, or on a machine of the same network, reaches this machine there)."""
    for family, probe in ROUTE_PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                address = str(sock.getsockname()[0])
        except OSError:
            continue
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return None


def check_advertise_address(value: str) -> str:
    """An IP address of this machine that pods can use (not a wildcard)."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ClusterError(f"--advertise-address {value!r} is not an IP address") from None
    if ip.is_unspecified or ip.is_multicast:
        raise ClusterError(f"--advertise-address {value} cannot be used: give the address "
                           "of this machine that the cluster's pods reach")
    return str(ip)


def find_kubeconfig(given: Path | None, environ: dict[str, str] | None = None) -> Path:
    """--kubeconfig, else the first file of $KUBECONFIG, else ~/.kube/config (as kubectl)."""
    env = os.environ if environ is None else environ
    if given is not None:
        path = given.expanduser()
    elif env.get("KUBECONFIG"):
        path = Path(env["KUBECONFIG"].split(os.pathsep)[0]).expanduser()
    else:
        path = Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"
    if not path.is_file():
        raise ClusterError(f"no kubeconfig at {path}: pass --kubeconfig")
    return path.resolve()


def make_target(kubeconfig: Path | None, namespace: str | None, advertise: str | None,
                task_image: str | None) -> ClusterTarget:
    """The options of `helios dev --executor kubernetes`, checked, with their defaults."""
    namespace = namespace or DEFAULT_NAMESPACE
    if not DNS_LABEL.fullmatch(namespace):
        raise ClusterError(f"--namespace {namespace!r} is not a DNS-1123 label")
    guessed = advertise is None
    if advertise is None:
        advertise = guess_advertise_address() or "127.0.0.1"
    return ClusterTarget(find_kubeconfig(kubeconfig), namespace,
                         check_advertise_address(advertise), task_image or DEFAULT_TASK_IMAGE,
                         guessed)


def target_from_options(executor: str, kubeconfig: Path | None = None,
                        namespace: str | None = None, advertise: str | None = None,
                        task_image: str | None = None) -> ClusterTarget | None:
    """`helios dev`'s options: None for the local executor, which takes none of the rest."""
    if executor == "kubernetes":
        return make_target(kubeconfig, namespace, advertise, task_image)
    given = {"--kubeconfig": kubeconfig, "--namespace": namespace,
             "--advertise-address": advertise, "--task-image": task_image}
    used = [name for name, value in given.items() if value is not None]
    if used:
        raise ClusterError(f"{', '.join(used)}: only with --executor kubernetes")
    return None


# --- the S3 relay ------------------------------------------------------------------------

RELAY_PORT_FILE = "s3-relay-port"


async def open_s3_relay(scope: contextlib.AsyncExitStack, target: ClusterTarget, s3_url: str,
                        data_dir: Path) -> Relay:
    """The S3 gateway (on loopback) relayed to the advertised address. The port is kept
    in the data dir and taken again at the next start when free, so Jobs created before a
    restart whose pods start after it still find S3 (with the new keys of the Secret)."""
    gateway = urlsplit(s3_url)
    assert gateway.hostname and gateway.port
    remembered = data_dir / RELAY_PORT_FILE
    try:
        port = int(remembered.read_text().strip())
    except (OSError, ValueError):
        port = 0
    for attempt in dict.fromkeys((port, 0)):
        try:
            relay = await scope.enter_async_context(
                s3_relay(target.advertise_address, attempt, gateway.hostname, gateway.port))
            break
        except OSError as exc:
            if attempt and exc.errno == errno.EADDRINUSE:
                log.warning("s3 relay port %d is taken; picking another", attempt)
                continue
            raise ClusterError(f"cannot listen on {target.advertise_address}: {exc.strerror}; "
                               "is it an address of this machine? (--advertise-address)") from None
    remembered.write_text(f"{relay.port}\n")
    return relay
