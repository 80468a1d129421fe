"""Orchestration overhead of the local executor, dispatch latency, submission throughput
and `helios dev` start-up time, on the embedded stack (services as separate processes).

    .venv/bin/python -m bench.orchestration [--tasks 200] [--submissions 2000]

Per-task overhead = (run wall time - time to spawn the same sandboxed processes) / tasks.
Dispatch latency = downstream task started - upstream task finished, along the chain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import mean, pct, run_to_end
from helios.auth_tokens import dev_headers
from helios.cli.client import Client
from helios.devstack.procs import free_port
from helios.devstack.stack import dev_stack
from helios.executors.local.sandbox import bwrap_argv

NOOP = ["/bin/true"]


def noop(name: str, deps: list[str]) -> dict[str, Any]:
    return {"name": name, "image": "none", "command": NOOP, "depends_on": deps}


def chain(n: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "dagName": "bench-chain",
            "tasks": [noop(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(n)]}


def fanout(n: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "dagName": "bench-fanout",
            "tasks": [noop(f"t{i}", []) for i in range(n)]}


async def spawn_baseline(n: int, parallel: int, workdir: Path) -> float:
    """Seconds to run `n` sandboxed no-op processes, `parallel` at a time."""
    bwrap = shutil.which("bwrap") or "bwrap"
    workdir.mkdir(parents=True, exist_ok=True)
    gate = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with gate:
            ws = workdir / f"w{i}"
            ws.mkdir(exist_ok=True)
            proc = await asyncio.create_subprocess_exec(*bwrap_argv(bwrap, ws, NOOP))
            await proc.wait()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


def wall_s(status: dict[str, Any]) -> float:
    return status["endedAt"] - status["startedAt"]


def breakdown(status: dict[str, Any]) -> dict[str, float]:
    """Median ms of each hop between an upstream finishing and its downstream starting."""
    tasks = {t["name"]: t for t in status["tasks"]}
    hops: dict[str, list[float]] = {"report+decide": [], "dispatch queue": [], "inputs+spawn": []}
    for t in status["tasks"]:
        for dep in t["dependsOn"]:
            up, down = tasks[dep]["timings"], t["timings"]
            hops["report+decide"].append(down["queuedAt"] - up["finishedAt"])
            hops["dispatch queue"].append(down["scheduledAt"] - down["queuedAt"])
            hops["inputs+spawn"].append(down["startedAt"] - down["scheduledAt"])
    return {k: round(pct(v, 50) * 1000, 2) for k, v in hops.items()}


def dispatch_latencies(status: dict[str, Any]) -> list[float]:
    tasks = {t["name"]: t for t in status["tasks"]}
    out = []
    for t in status["tasks"]:
        for dep in t["dependsOn"]:
            up, down = tasks[dep]["timings"], t["timings"]
            if up.get("finishedAt") and down.get("startedAt"):
                out.append(down["startedAt"] - up["finishedAt"])
    return out


async def submissions(api: str, total: int, concurrency: int,
                      headers: dict[str, str]) -> float:
    doc = json.dumps({"apiVersion": "v1", "dagName": "bench-submit",
                      "tasks": [noop("only", [])]}).encode()
    left = total

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(f"{api}/api/v1/dags", data=doc,
                                    headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 201, await resp.text()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="helios-bench-"))
    parallel = 32  # the local executor's default HELIOS_LOCAL_MAX_PARALLEL
    try:
        spawn_seq = await spawn_baseline(args.tasks, 1, tmp / "spawn")
        spawn_par = await spawn_baseline(args.tasks, parallel, tmp / "spawn")
        async with dev_stack(tmp / "data", api_port=free_port(), metrics_port=free_port(),
                             extra_env={"HELIOS_LOG_LEVEL": "WARNING"}) as stack, \
                aiohttp.ClientSession(headers=dev_headers(stack.data_dir)) as http:
            client = Client(stack.api_url, http)
            await run_to_end(client, chain(3))  # warm-up
            if args.only_chain:
                status = await run_to_end(client, chain(args.tasks))
                print(json.dumps({"wall_s": wall_s(status), "breakdown": breakdown(status)}))
                return
            results: dict[str, Any] = {"dev_ready_s": round(stack.ready_s, 2)}
            status = await run_to_end(client, chain(args.tasks))
            assert status["status"] == "SUCCEEDED", status["status"]
            lat = dispatch_latencies(status)
            results["chain"] = {
                "tasks": args.tasks, "wall_s": round(wall_s(status), 3),
                "spawn_only_s": round(spawn_seq, 3),
                "overhead_ms_per_task": round((wall_s(status) - spawn_seq) / args.tasks * 1000, 2),
                "dispatch_latency_ms": {"p50": round(pct(lat, 50) * 1000, 2),
                                        "p99": round(pct(lat, 99) * 1000, 2),
                                        "mean": round(mean(lat) * 1000, 2)},
                "latency_breakdown_p50_ms": breakdown(status),
            }
            status = await run_to_end(client, fanout(args.tasks))
            assert status["status"] == "SUCCEEDED", status["status"]
            results["fanout"] = {
                "tasks": args.tasks, "wall_s": round(wall_s(status), 3),
                "spawn_only_s": round(spawn_par, 3), "parallel": parallel,
                "overhead_ms_per_task": round((wall_s(status) - spawn_par) / args.tasks * 1000, 2),
            }
            results["submit_per_s"] = round(
                await submissions(stack.api_url, args.submissions, args.concurrency,
                                  dev_headers(stack.data_dir)), 1)
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only-chain", action="store_true", help="profile the chain only")
    asyncio.run(main(parser.parse_args()))
