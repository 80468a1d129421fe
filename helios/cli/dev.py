"""`helios dev`: the embedded stack in the foreground until Ctrl-C or SIGTERM.

Exits 0 after a clean stop; 1 with one line on stderr when a port is taken, the stack
cannot start, or a child keeps crashing (the supervisor restarts it a few times first).
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import sys
from pathlib import Path

from helios import logs
from helios.auth_tokens import usage_hint
from helios.devstack.cluster import ClusterError, ClusterTarget, target_from_options
from helios.devstack.stack import DataDirBusy, DevStack, PortInUse, dev_stack
from helios.devstack.supervise import CrashLoop


async def run_dev(data_dir: Path, port: int, metrics_port: int, *, executor: str = "local",
                  kubeconfig: Path | None = None, namespace: str | None = None,
                  advertise_address: str | None = None, task_image: str | None = None) -> int:
    # The supervisor's restarts are worth seeing on the terminal.
    logs.configure("helios-dev", "INFO", "text")
    try:
        cluster = target_from_options(executor, kubeconfig, namespace, advertise_address,
                                      task_image)
    except ClusterError as exc:
        print(f"helios dev: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"starting Helios (data in {data_dir}) ...", flush=True)
    try:
        return await _serve(data_dir, port, metrics_port, stop, cluster)
    except (PortInUse, DataDirBusy, CrashLoop, ClusterError) as exc:
        print(f"helios dev: {exc}", file=sys.stderr, flush=True)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"helios dev: could not start: {exc}", file=sys.stderr, flush=True)
    return 1


async def _until_stop_or_failure(stack: DevStack, stop: asyncio.Event) -> str | None:
    """Wait for Ctrl-C/SIGTERM (None) or for the supervisor to give up (its reason)."""
    waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(stack.supervisor.failed.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return stack.supervisor.failure


def cluster_banner(stack: DevStack) -> str:
    """What the user must know about where the tasks run ("" with the local executor)."""
    cluster, relay = stack.cluster, stack.relay
    if cluster is None or relay is None:
        return ""
    lines = [
        f"  tasks run on:        the cluster of {cluster.kubeconfig}, namespace {cluster.namespace}",
        f"  helper image:        {cluster.task_image} (--task-image; the cluster must be able "
        "to pull it)",
        f"  S3 for the pods:     {relay.url} (only this port listens beyond loopback; it "
        "needs the stack's keys, in Secret helios-s3)",
    ]
    if cluster.guessed:
        lines.append(f"                       {cluster.advertise_address} was guessed from the "
                     "default route; pass --advertise-address if pods reach this machine elsewhere")
    if ipaddress.ip_address(cluster.advertise_address).is_loopback:
        lines.append("  warning:             S3 is on loopback: only pods sharing this machine's "
                     "network can reach it")
    return "\n".join(lines) + "\n"


async def _serve(data_dir: Path, port: int, metrics_port: int, stop: asyncio.Event,
                 cluster: ClusterTarget | None = None) -> int:
    async with dev_stack(data_dir, api_port=port, metrics_port=metrics_port,
                         cluster=cluster) as stack:
        print(f"""Helios is ready in {stack.ready_s:.1f}s: {stack.api_url}

  API token (write):   {usage_hint(stack.data_dir)}
  submit the example:  helios submit --follow <your-dag.yaml>
  or with curl:        curl -X POST -H "Authorization: Bearer $HELIOS_TOKEN" \\
                         -H 'Content-Type: application/yaml' \\
                         --data-binary @dag.yaml {stack.api_url}/api/v1/dags
  web page:            {stack.api_url}/ (asks for the token once)
  API document:        {stack.api_url}/api/v1/openapi.json
  metrics:             curl -H "Authorization: Bearer $HELIOS_TOKEN" \\
                         '{stack.api_url}/api/v1/dags/cache-test/metrics?limit=10'
  service logs:        {stack.data_dir / 'logs'}
{cluster_banner(stack)}
Ctrl-C stops everything.""", flush=True)
        failure = await _until_stop_or_failure(stack, stop)
        print("stopping ...", flush=True)
    if failure:
        print(f"helios dev: {failure}", file=sys.stderr, flush=True)
        return 1
    print("stopped", flush=True)
    return 0
