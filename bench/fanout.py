"""A forEach map of 10,000 instances on the embedded stack (services as processes).

    .venv/bin/python -m bench.fanout [--items 10000] [--max-parallel 0] [--fan-in 0]

`list` writes a JSON list of N items; `each` maps over it (each instance is a sandboxed
no-op that gets its item as an argument); `done` waits for all of them. `--fan-in`
makes every instance write a small output and `done` receive all N of them at
/artifacts/parts/{i}/part.txt. Prints figures; asserts only that the run succeeded.
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

from bench.common import pct
from helios.auth_tokens import dev_headers
from helios.cli.client import Client
from helios.devstack.procs import free_port
from helios.devstack.stack import dev_stack


def document(items: int, max_parallel: int, fan_in: bool) -> dict[str, Any]:
    make = f"import json; json.dump(list(range({items})), open('/artifacts/items.json', 'w'))"
    each: dict[str, Any] = {
        "name": "each", "image": "none", "command": ["/bin/true", "{{ item }}"],
        "forEach": {"fromTask": "list", "artifact": "items.json"},
    }
    if max_parallel:
        each["maxParallel"] = max_parallel
    last: dict[str, Any] = {"name": "done", "image": "none", "command": ["/bin/true"],
                            "depends_on": ["each"]}
    if fan_in:
        each["command"] = ["/bin/sh", "-c", 'echo "$1" > /artifacts/part.txt', "each",
                           "{{ item }}"]
        each["outputs"] = ["part.txt"]
        last = {"name": "done", "image": "none",
                "command": ["/bin/sh", "-c", "cat /artifacts/parts/*/part.txt | wc -l"],
                "inputs": [{"fromTask": "each", "name": "parts"}]}
    return {"apiVersion": "v1", "dagName": "bench-foreach", "tasks": [
        {"name": "list", "image": "none", "command": ["python3", "-c", make],
         "outputs": ["items.json"]}, each, last]}


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="helios-fanout-"))
    try:
        async with dev_stack(tmp / "data", api_port=free_port(), metrics_port=free_port(),
                             extra_env={"HELIOS_LOG_LEVEL": "WARNING"}) as stack, \
                aiohttp.ClientSession(headers=dev_headers(stack.data_dir)) as http:
            client = Client(stack.api_url, http)
            doc = document(args.items, args.max_parallel, args.fan_in)
            submitted = time.time()
            body = await client._call("POST", "/dags", data=json.dumps(doc),
                                      headers={"Content-Type": "application/json"})
            events = 0
            expanded_at = None
            async for event in client.events(body["dagId"]):
                events += 1
                if event.get("task") == "each" and event.get("state") == "RUNNING":
                    expanded_at = time.time()
            ended = time.time()
            started = time.perf_counter()
            status = await client.status(body["dagId"])
            status_s = time.perf_counter() - started
            assert status["status"] == "SUCCEEDED", status["status"]
            instances = [t for t in status["tasks"] if t.get("mapOf") == "each"]
            spans = [t["timings"]["finishedAt"] - t["timings"]["startedAt"]
                     for t in instances if t["timings"].get("finishedAt")]
            first = min(t["timings"]["startedAt"] for t in instances)
            last = max(t["timings"]["finishedAt"] for t in instances)
            tasks = {t["name"]: t for t in status["tasks"]}
            metrics = await client._call("GET", "/dags/bench-foreach/metrics?limit=1")
        print(json.dumps({
            "items": args.items, "maxParallel": args.max_parallel or None,
            "fanIn": args.fan_in,
            "submit_to_end_s": round(ended - submitted, 2),
            "submit_to_expanded_s": round((expanded_at or ended) - submitted, 2),
            "instances_first_start_to_last_finish_s": round(last - first, 2),
            "instances_per_s": round(len(instances) / (last - first), 1),
            "instance_run_ms_p50_p99": [round(pct(spans, 50) * 1000, 1),
                                        round(pct(spans, 99) * 1000, 1)],
            "done_log_state": tasks["done"]["state"],
            "sse_events": events,
            "status_get_s": round(status_s, 3),
            "metrics_last_run": {k: metrics["runs"][0].get(k) for k in (
                "status", "taskCount", "taskSucceeded", "durationMs")} if metrics.get("runs")
            else None,
        }, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--max-parallel", type=int, default=0)
    parser.add_argument("--fan-in", action="store_true")
    asyncio.run(main(parser.parse_args()))
