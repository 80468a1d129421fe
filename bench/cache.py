"""What the node cache saves: one producer of N MB, a fan-out of consumers, three ways.

    .venv/bin/python -m bench.cache [--sizes 1,64,512] [--fanout 8] [--data-dir DIR]

For each size, the same DAG runs with the cache off (`useCache: false`), cold (cache on,
node cache emptied just before) and warm (cache on, the bytes already cached). The
producer writes N MB that are the same on every run (AES-CTR keystream under a fixed key:
incompressible, yet the same sha256 each time), so a later run's consumers can hit;
memoization is off, so every run really runs the producer and uploads its output.

Reported per run: wall (the run's endedAt - startedAt), the fan-out phase (first
consumer queued -> last consumer finished), the time consumers spent placing their input
(scheduledAt -> startedAt), and the bytes fetched from S3: the sum over tasks of
`cache.bytesFetched`, which with the cache off counts every direct download. The metrics
service's own numbers for the run (bytesFetched, bytesSaved, cacheHit) are read back and
must agree. The stack's data dir and so its node cache are shared by every run (one node).

Cold means "emptied between runs, stack kept up" rather than "stack restarted": a restart
would also reset the services' connections and page-cache state and put start-up noise
into the one mode it is meant to compare. With the cache on, one node's consumers of one
object download it once (the others wait on its fetch lock and hit), so a cold run
fetches N MB, not fanout x N MB. A hit is placed by reflink where the file system allows
(XFS, btrfs) and by a full copy elsewhere (ext4, tmpfs): `--data-dir` on a reflink-capable
mount shows the difference. The default sizes take 1-2 minutes on a shared 2-core machine,
most of it the 512 MB case (8 x 512 MB downloaded with the cache off).
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

from bench.common import mean, run_to_end
from helios.auth_tokens import dev_headers
from helios.cli.client import Client
from helios.devstack.procs import free_port
from helios.devstack.stack import dev_stack

MiB = 1024 * 1024
MODES = ("off", "cold", "warm")
# A fixed key and IV: the same pseudo-random bytes on every run, at openssl's speed.
KEY, IV = "000102030405060708090a0b0c0d0e0f", "0" * 32
RUN_TIMEOUT_S = 600.0
METRICS_TIMEOUT_S = 30.0


def dag(size_mb: int, fanout: int, use_cache: bool) -> dict[str, Any]:
    produce = (f"head -c {size_mb * MiB} /dev/zero"
               f" | openssl enc -aes-128-ctr -K {KEY} -iv {IV} > /artifacts/data.bin")
    # `cat | wc -c` reads every byte (`wc -c` alone would only stat the file).
    consume = "cat /artifacts/data.bin | wc -c"
    return {
        "apiVersion": "v1", "dagName": f"bench-cache-{size_mb}mb", "useCache": use_cache,
        "tasks": [
            {"name": "produce", "image": "none", "command": ["/bin/sh", "-c", produce],
             "outputs": ["data.bin"]},
            *({"name": f"consume-{i}", "image": "none", "command": ["/bin/sh", "-c", consume],
               "inputs": [{"fromTask": "produce", "name": "data.bin"}]}
              for i in range(fanout)),
        ],
    }


def empty_cache(cache_dir: Path) -> None:
    """Cold start without restarting the stack. Safe only while no task runs: the node
    cache keeps no state outside its folder and recreates its subfolders on demand."""
    if cache_dir.exists():
        for child in cache_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


def measure(status: dict[str, Any]) -> dict[str, Any]:
    tasks = status["tasks"]
    producer = next(t["timings"] for t in tasks if t["name"] == "produce")
    timings = [t["timings"] for t in tasks if t["name"].startswith("consume-")]
    placing = [t["startedAt"] - t["scheduledAt"] for t in timings]
    return {
        "wall_s": round(status["endedAt"] - status["startedAt"], 3),
        # Generate + upload + report: the same work in every mode.
        "produce_s": round(min(t["queuedAt"] for t in timings) - producer["scheduledAt"], 3),
        "fanout_s": round(max(t["finishedAt"] for t in timings)
                          - min(t["queuedAt"] for t in timings), 3),
        "place_mean_s": round(mean(placing), 3),
        "place_max_s": round(max(placing), 3),
        "fetched_bytes": sum(t["cache"]["bytesFetched"] for t in tasks),
        "saved_bytes": sum(t["cache"]["bytesSaved"] for t in tasks),
        "hits": sum(t["cache"]["hits"] for t in tasks),
        "misses": sum(t["cache"]["misses"] for t in tasks),
    }


async def run_metrics(client: Client, dag_name: str, dag_id: str) -> dict[str, Any]:
    """The metrics service's record of the run; it lands just after the run's last event."""
    async with asyncio.timeout(METRICS_TIMEOUT_S):
        while True:
            body = await client.metrics(dag_name, limit=10)
            run = next((r for r in body["runs"] if r.get("dagId") == dag_id), None)
            if run and run.get("endTime"):
                return run
            await asyncio.sleep(0.1)


async def one_run(client: Client, doc: dict[str, Any]) -> dict[str, Any]:
    async with asyncio.timeout(RUN_TIMEOUT_S):
        status = await run_to_end(client, doc)
    assert status["status"] == "SUCCEEDED", (status["status"], status["dagId"])
    result = measure(status)
    m = await run_metrics(client, doc["dagName"], status["dagId"])
    result["metrics"] = {k: m.get(k) for k in ("durationMs", "bytesFetched", "bytesSaved",
                                                 "cacheHit")}
    # The metrics service must tell the same story as the run's own status.
    assert (m.get("bytesFetched"), m.get("bytesSaved")) == (
        result["fetched_bytes"], result["saved_bytes"]), (status["dagId"], m, result)
    return result


async def bench_size(client: Client, cache_dir: Path, size_mb: int, fanout: int
                     ) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for mode in MODES:
        if mode == "cold":
            empty_cache(cache_dir)
        runs[mode] = await one_run(client, dag(size_mb, fanout, use_cache=mode != "off"))
    off, warm = runs["off"], runs["warm"]
    return {
        "size_mb": size_mb, "fanout": fanout, **runs,
        "warm_over_off": {"wall": round(warm["wall_s"] / off["wall_s"], 3),
                          "fanout": round(warm["fanout_s"] / off["fanout_s"], 3)},
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (f"{'size':>6} {'mode':<5} {'wall s':>7} {'produce s':>9} {'fanout s':>8} "
            f"{'place s':>8} {'S3 MB':>7} {'hit/miss':>8} {'cacheHit':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        for mode in MODES:
            m = r[mode]
            size, hits = f"{r['size_mb']}MB", f"{m['hits']}/{m['misses']}"
            lines.append(
                f"{size:>6} {mode:<5} {m['wall_s']:>7.2f} {m['produce_s']:>9.2f} "
                f"{m['fanout_s']:>8.2f} {m['place_mean_s']:>8.2f} "
                f"{m['fetched_bytes'] / MiB:>7.0f} {hits:>8} {m['metrics']['cacheHit']!s:>8}")
        ratio = r["warm_over_off"]
        lines.append(f"{'':>6} warm/off: wall {ratio['wall']:.2f}, fan-out {ratio['fanout']:.2f}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="helios-bench-cache-", dir=args.data_dir))
    try:
        async with dev_stack(tmp / "data", api_port=free_port(), metrics_port=free_port(),
                             extra_env={"HELIOS_LOG_LEVEL": "WARNING"}) as stack, \
                aiohttp.ClientSession(headers=dev_headers(stack.data_dir)) as http:
            client = Client(stack.api_url, http)
            await one_run(client, dag(1, 1, use_cache=False))  # warm-up: imports, connections
            started = time.monotonic()
            results = [await bench_size(client, stack.data_dir / "cache", size, args.fanout)
                       for size in args.sizes]
            elapsed = time.monotonic() - started
        print(table(results))
        print(json.dumps({"fanout": args.fanout, "bench_s": round(elapsed, 1),
                          "results": results}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=[1, 64, 512],
                        help="producer output sizes in MB, comma-separated")
    parser.add_argument("--fanout", type=int, default=8, help="consumers of the output")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the stack's temporary data dir (and node cache) goes")
    asyncio.run(main(parser.parse_args()))
