"""A Kubernetes stand-in for tests: a real HTTP API server (what kubernetes-asyncio talks
to), a Job controller with a garbage collector, and kubelets that run pods as local
sandboxed processes on simulated nodes.

    async with standin_cluster(tmp_path, nodes=["node-a", "node-b"]) as cluster:
        cluster.kubeconfig  # a kubeconfig file pointing at it
        cluster.api.expire()  # the next watch resume gets 410 Gone
        cluster.kubelet.nodes["node-a"].cordoned = True
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import web

from helios.devstack.procs import free_port

from .controller import Controllers
from .kubelet import Kubelet, Node
from .server import TOKEN, ApiServer
from .store import Store

NAMESPACE = "helios"


@dataclass
class Cluster:
    url: str
    kubeconfig: Path
    store: Store
    api: ApiServer
    kubelet: Kubelet
    controllers: Controllers
    namespace: str = NAMESPACE

    def node_dir(self, node: str) -> Path:
        """The folder behind a node's hostPath volumes (`/var/helios/cache` is below)."""
        return self.kubelet.root / node / "hostfs"

    def add_secret(self, name: str, data: dict[str, str]) -> None:
        self.store.create("secrets", self.namespace, {
            "metadata": {"name": name}, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})

    def jobs(self) -> list[dict]:
        return self.store.list("jobs", self.namespace)

    def pods(self) -> list[dict]:
        return self.store.list("pods", self.namespace)

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until `pred()` holds, re-checked at every change of the cluster's objects."""
        async with asyncio.timeout(timeout):
            while not pred():
                await self.store.next_change()


def write_kubeconfig(path: Path, url: str, namespace: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": url}}],
        "users": [{"name": "standin", "user": {"token": TOKEN}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin",
                                                     "namespace": namespace}}],
    }))
    return path


@contextlib.asynccontextmanager
async def standin_cluster(tmp: Path, nodes: Iterable[str] = ("node-a", "node-b"),
                          task_image: str = "helios:test", linger_s: float = 0.5
                          ) -> AsyncIterator[Cluster]:
    await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
    store = Store()
    controllers = Controllers(store)
    kubelet = Kubelet(store, tmp / "nodes", [Node(n) for n in nodes], task_image,
                      linger_s=linger_s)
    api = ApiServer(store, kubelet)
    api.on_delete = controllers.delete
    runner = web.AppRunner(api.app(), handle_signals=False, shutdown_timeout=0.05)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    url = f"http://127.0.0.1:{port}"
    cluster = Cluster(url, write_kubeconfig(tmp / "kubeconfig", url, NAMESPACE), store, api,
                      kubelet, controllers)
    try:
        yield cluster
    finally:
        api.break_watches()
        await kubelet.close()
        await controllers.close()
        await runner.cleanup()
