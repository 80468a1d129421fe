"""Shared helpers of the benchmarks: percentiles and waiting for a run through the API."""

from __future__ import annotations

import statistics
from typing import Any

from helios.cli.client import Client


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


async def run_to_end(client: Client, doc: dict[str, Any]) -> dict[str, Any]:
    """Submit, follow the SSE feed to its end, return the final status."""
    import json

    body = await client._call("POST", "/dags", data=json.dumps(doc),
                              headers={"Content-Type": "application/json"})
    async for _ in client.events(body["dagId"]):
        pass
    return await client.status(body["dagId"])
