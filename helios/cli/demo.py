"""`helios demo`: the README's first command. Starts the embedded stack, runs the seed
example twice (cache miss, then hit), prints the downloader's lines and the metrics."""

from __future__ import annotations

import asyncio
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

from helios.auth_tokens import dev_headers
from helios.cli.client import Client
from helios.cli.main import follow
from helios.cli.render import metrics_table
from helios.devstack.stack import DataDirBusy, PortInUse, dev_stack
from helios.devstack.supervise import CrashLoop

SEED = "examples/cache-test.yaml"


async def _settled_metrics(client: Client, name: str, dag_id: str) -> dict[str, Any]:
    """Metrics are written just after a run's last event: wait (briefly) until they are."""
    deadline = time.monotonic() + 10
    while True:
        metrics = await client.metrics(name, 10)
        runs = metrics.get("runs") or []
        if (runs and runs[0].get("dagId") == dag_id and runs[0].get("endTime")) or (
                time.monotonic() > deadline):
            return metrics
        await asyncio.sleep(0.1)


async def run_demo(data_dir: Path, port: int, metrics_port: int, file: Path | None) -> int:
    try:
        return await _demo(data_dir, port, metrics_port, file)
    except (PortInUse, DataDirBusy, CrashLoop) as exc:
        print(f"helios demo: {exc}", file=sys.stderr, flush=True)
        return 1


async def _demo(data_dir: Path, port: int, metrics_port: int, file: Path | None) -> int:
    if file is None:
        file = Path(str(resources.files("helios").joinpath(SEED)))
    print(f"starting the embedded stack (data in {data_dir}) ...", flush=True)
    async with dev_stack(data_dir, api_port=port, metrics_port=metrics_port) as stack, \
            aiohttp.ClientSession(headers=dev_headers(stack.data_dir)) as http:
        print(f"ready in {stack.ready_s:.1f}s at {stack.api_url}\n", flush=True)
        client = Client(stack.api_url, http)
        ok = True
        name = last_id = ""
        for run in (1, 2):
            body = await client.submit_file(file)
            name, last_id = body["dagName"], body["dagId"]
            print(f"== run {run}: {name} {body['dagId']}", flush=True)
            final = await follow(client, body["dagId"])
            ok &= final == "SUCCEEDED"
            status = await client.status(body["dagId"])
            for task in status["tasks"]:
                lines = (await client.logs(body["dagId"], task["name"]))["lines"]
                print(f"   logs of {task['name']}:")
                for line in lines:
                    print(f"     {line}")
            print(flush=True)
        metrics = await _settled_metrics(client, name, last_id)
        print(f"== metrics of {name} (GET /api/v1/dags/{name}/metrics?limit=10)")
        print(metrics_table(metrics))
    print("\nstopped the embedded stack", flush=True)
    return 0 if ok else 1
