"""`helios dev --executor kubernetes`: the stack here, the tasks on a cluster (the
stand-in), S3 relayed to the advertised address and nothing else beyond loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import re
import socket
from pathlib import Path

import aiohttp
import pytest

from helios.devstack.cluster import (
    ClusterError,
    ClusterTarget,
    check_advertise_address,
    find_kubeconfig,
    guess_advertise_address,
    make_target,
    open_s3_relay,
    target_from_options,
)
from helios.devstack.kube_prep import prepare_cluster
from helios.devstack.procs import free_port
from helios.devstack.relay import s3_relay
from tests.devstack.devproc import Dev, env_of
from tests.devstack.test_durable import SEED, ended, submit
from tests.k8s.standin import standin_cluster, write_kubeconfig

TASK_IMAGE = "helios:test"  # the stand-in runs this image's `python` from the venv


# --- pure parts ------------------------------------------------------------------------


def test_advertise_address_is_an_ip_of_this_machine_not_a_wildcard() -> None:
    assert check_advertise_address("10.0.0.7") == "10.0.0.7"
    assert check_advertise_address("fd00::1") == "fd00::1"
    for bad in ("0.0.0.0", "::", "kind.local", "224.0.0.1", "10.0.0.7; rm"):
        with pytest.raises(ClusterError):
            check_advertise_address(bad)
    guessed = guess_advertise_address()
    assert guessed is None or not ipaddress.ip_address(guessed).is_loopback


def test_kubeconfig_is_found_as_kubectl_finds_it(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    second.write_text("{}")
    with pytest.raises(ClusterError, match="pass --kubeconfig"):
        find_kubeconfig(None, {"KUBECONFIG": f"{first}{os.pathsep}{second}"})
    first.write_text("{}")
    assert find_kubeconfig(None, {"KUBECONFIG": f"{first}{os.pathsep}{second}"}) == first
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    assert find_kubeconfig(None, {"HOME": str(tmp_path)}) == tmp_path / ".kube" / "config"
    assert find_kubeconfig(second, {}) == second
    target = make_target(second, None, "192.0.2.9", None)
    assert (target.namespace, target.task_image, target.guessed) == ("helios", "helios:latest", False)
    env = target.env("http://192.0.2.9:9000")
    assert env["HELIOS_EXECUTOR"] == "kubernetes" and env["HELIOS_K8S_IN_CLUSTER"] == "false"
    assert env["HELIOS_K8S_TASK_S3_ENDPOINT_URL"] == "http://192.0.2.9:9000"


def test_cluster_options_need_the_kubernetes_executor(tmp_path: Path) -> None:
    assert target_from_options("local") is None
    with pytest.raises(ClusterError, match="--namespace, --task-image: only with --executor kubernetes"):
        target_from_options("local", namespace="x", task_image="i")
    (tmp_path / "kc").write_text("{}")
    target = target_from_options("kubernetes", tmp_path / "kc", "ns", "127.0.0.1", "img")
    with pytest.raises(ClusterError, match="DNS-1123"):
        target_from_options("kubernetes", tmp_path / "kc", "Bad_NS")
    assert target == ClusterTarget(tmp_path / "kc", "ns", "127.0.0.1", "img", guessed=False)


async def test_the_relay_keeps_its_port_and_refuses_an_address_not_of_this_machine(
        tmp_path: Path) -> None:
    gateway = "http://127.0.0.1:1"
    async with contextlib.AsyncExitStack() as scope:
        first = await open_s3_relay(scope, ClusterTarget(Path("kc")), gateway, tmp_path)
    async with contextlib.AsyncExitStack() as scope:
        again = await open_s3_relay(scope, ClusterTarget(Path("kc")), gateway, tmp_path)
        assert again.port == first.port  # free again: taken again
        # Taken (by the relay still open): another one, remembered in its place.
        other = await open_s3_relay(scope, ClusterTarget(Path("kc")), gateway, tmp_path)
        assert other.port != first.port
        assert (tmp_path / "s3-relay-port").read_text() == f"{other.port}\n"
    target = ClusterTarget(Path("kc"), advertise_address="203.0.113.77")  # TEST-NET-3
    async with contextlib.AsyncExitStack() as scope:
        with pytest.raises(ClusterError, match="is it an address of this machine"):
            await open_s3_relay(scope, target, gateway, tmp_path)


async def test_an_unreachable_cluster_is_one_clear_line(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{free_port()}", "helios")
    with pytest.raises(ClusterError, match="cannot reach the cluster of"):
        await prepare_cluster(ClusterTarget(kubeconfig), "k", "s")


async def test_the_relay_forwards_both_ways_and_half_closes() -> None:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read()  # until the client's EOF, which the relay must pass on
        w.write(data.upper())
        await w.drain()
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with s3_relay("127.0.0.1", 0, "127.0.0.1", port) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(b"x" * 1_000_000)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 10) == b"X" * 1_000_000
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


# --- end to end ------------------------------------------------------------------------


def _listeners(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state that `pids` hold."""
    table: dict[str, tuple[str, int]] = {}
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            table[fields[9]] = (socket.inet_ntop(family, raw), int(hex_port, 16))
    found = []
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            inode = link[len("socket:["):-1] if link.startswith("socket:[") else None
            if inode in table:
                found.append((pid, *table[inode]))
    return found


async def test_helios_dev_runs_the_seed_on_a_cluster(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with standin_cluster(tmp_path / "k8s", task_image=TASK_IMAGE) as cluster:
        dev = Dev(tmp_path / "data", args=["--executor", "kubernetes", "--kubeconfig",
                                           str(cluster.kubeconfig), "--task-image", TASK_IMAGE])
        try:
            await dev.start()
            dag_id = await submit(dev, http, SEED)
            try:
                final = await ended(dev, http, dag_id, timeout_s=90)
            except AssertionError as exc:  # say where it stuck
                pods = {p["metadata"]["name"]: p["status"] for p in cluster.pods()}
                raise AssertionError(f"{exc}\nrun: {await dev.get(http, f'/dags/{dag_id}')}"
                                     f"\npods: {pods}") from None
            assert final["status"] == "SUCCEEDED", final["tasks"]
            # It ran on the cluster's nodes, not in the local runner.
            assert {t["node"] for t in final["tasks"]} <= set(cluster.kubelet.nodes)
            _, logs = await dev.get(http, f"/dags/{dag_id}/tasks/process-data/logs")
            assert "test data" in logs["lines"]
            assert any("[HELIOS] Cache miss input.txt" in line for line in logs["lines"])

            banner = "".join(dev.output)
            relay_url = re.search(r"S3 for the pods:\s+(http://\S+)", banner)
            assert relay_url, banner
            host, port = relay_url.group(1).removeprefix("http://").rsplit(":", 1)
            assert host == (guess_advertise_address() or "127.0.0.1")

            # The Jobs' helpers were given the relay and the start's keys, via Secret.
            jobs = [e.obj for e in cluster.store.history if e.resource == "jobs" and e.type == "ADDED"]
            helpers = [c for j in jobs for c in j["spec"]["template"]["spec"]["initContainers"]
                       + j["spec"]["template"]["spec"]["containers"] if c["image"] == TASK_IMAGE]
            endpoints = {v["value"] for c in helpers for v in c.get("env", [])
                         if v["name"] == "HELIOS_S3_ENDPOINT_URL"}
            assert endpoints == {relay_url.group(1)}
            children = dev.children()
            service_env = env_of(children["watcher"])
            assert service_env["HELIOS_EXECUTOR"] == "kubernetes"
            assert service_env["HELIOS_S3_ENDPOINT_URL"].startswith("http://127.0.0.1:")
            secret = cluster.store.get("secrets", "helios", "helios-s3")
            data = {**{k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()},
                    **(secret.get("stringData") or {})}
            assert data["HELIOS_S3_ACCESS_KEY_ID"] == service_env["HELIOS_S3_ACCESS_KEY_ID"]
            assert cluster.store.get("serviceaccounts", "helios", "helios-task")

            # Beyond loopback only the relay listens, and S3 there refuses a stranger.
            assert dev.proc
            listening = _listeners([dev.proc.pid, *children.values()])
            outside = [entry for entry in listening if not ipaddress.ip_address(entry[1]).is_loopback]
            if host != "127.0.0.1":
                assert outside == [(dev.proc.pid, host, int(port))], listening
            else:
                assert outside == [], listening
            async with aiohttp.ClientSession() as anonymous, \
                    anonymous.get(f"{relay_url.group(1)}/helios-artifacts/dags/") as resp:
                assert resp.status == 403
        finally:
            await dev.close()
