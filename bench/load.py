"""Ordinary load: many runs of ONE DAG name from concurrent clients, on the embedded stack.

    .venv/bin/python -m bench.load [--runs 2000] [--clients 20]

Each client submits the seed example, waits for its run to end (polling its status) and
submits the next. At the end every run must have SUCCEEDED and still be readable, and
the metrics window of the name must hold the newest 100 of them. Prints throughput and
the peak resident memory (VmHWM) of each service process: the figures the README quotes.
Exits non-zero if any run was lost, stuck or wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from helios.auth_tokens import dev_headers
from helios.cli.client import Client
from helios.devstack.procs import free_port
from helios.devstack.stack import dev_stack

SEED = Path(__file__).resolve().parent.parent / "helios" / "examples" / "cache-test.yaml"
SERVICES = ("api", "scheduler", "watcher", "metrics")


def service_pids() -> dict[str, int]:
    """Our own children running `python -m services.<name>`."""
    me = os.getpid()
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        for name in SERVICES:
            if ppid == me and f"services.{name}".encode() in cmdline:
                found[name] = int(entry.name)
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """Current and peak resident set of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


async def wait_end(client: Client, dag_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        status = await client.status(dag_id)
        if status["status"] != "RUNNING" or time.monotonic() > deadline:
            return status
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 1.0)


async def main(args: argparse.Namespace) -> int:
    doc = yaml.safe_load(SEED.read_text())
    tmp = Path(tempfile.mkdtemp(prefix="helios-load-"))
    try:
        async with dev_stack(tmp / "data", api_port=free_port(), metrics_port=free_port(),
                             extra_env={"HELIOS_LOG_LEVEL": "WARNING"}) as stack, \
                aiohttp.ClientSession(headers=dev_headers(stack.data_dir)) as http:
            client = Client(stack.api_url, http)
            pids = service_pids()
            left = args.runs
            ids: list[str] = []
            ends: dict[str, str] = {}

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    body = await client._call("POST", "/dags", data=json.dumps(doc),
                                              headers={"Content-Type": "application/json"})
                    ids.append(body["dagId"])
                    status = await wait_end(client, body["dagId"], args.run_timeout_s)
                    ends[body["dagId"]] = status["status"]

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.clients)))
            elapsed = time.perf_counter() - started
            # Every run is still there, and ended as it should.
            lost = wrong = 0
            for dag_id in ids:
                try:
                    status = await client.status(dag_id)
                except Exception:
                    lost += 1
                    continue
                if status["status"] != "SUCCEEDED":
                    wrong += 1
            # Metrics are eventually consistent: give the last runs' events a moment.
            window: list[str] = []
            deadline = time.monotonic() + 60
            newest = set(ids[-100:])
            while time.monotonic() < deadline:
                metrics = await client.metrics(doc["dagName"], 100)
                window = [r["dagId"] for r in metrics["runs"]]
                if set(window) == newest:
                    break
                await asyncio.sleep(0.5)
            memory = {name: memory_kib(pid) for name, pid in pids.items()}
        report = {
            "runs": args.runs, "clients": args.clients, "seconds": round(elapsed, 1),
            "runs_per_s": round(args.runs / elapsed, 1),
            "succeeded": sum(1 for s in ends.values() if s == "SUCCEEDED"),
            "lost": lost, "wrong_or_stuck": wrong,
            "window_is_newest_100": set(window) == newest, "window_size": len(window),
            "peak_rss_mib": {n: round(m.get("VmHWM", 0) / 1024, 1) for n, m in memory.items()},
            "load_average": os.getloadavg(),
        }
        print(json.dumps(report, indent=2))
        ok = lost == 0 and wrong == 0 and report["window_is_newest_100"]
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--run-timeout-s", type=float, default=300.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
