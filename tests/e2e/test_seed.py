"""The seed example end to end on the local executor, twice: miss, then hit."""

from __future__ import annotations

from importlib import resources

import aiohttp

from helios.settings import Settings
from tests.stack import running_stack, submit, wait_run

SEED = resources.files("helios").joinpath("examples/cache-test.yaml").read_text()


async def test_seed_twice_miss_then_hit(settings: Settings) -> None:
    async with running_stack(settings) as stack, aiohttp.ClientSession() as http:
        first = await submit(http, stack.api_url, SEED)
        status = await wait_run(http, stack.api_url, first["dagId"])
        assert status["status"] == "SUCCEEDED", status
        async with http.get(f"{stack.api_url}/api/v1/dags/{first['dagId']}/tasks/process-data/logs") as r:
            logs = (await r.json())["lines"]
        assert "test data" in logs
        assert any(line.startswith("[HELIOS] Cache miss input.txt") for line in logs), logs

        second = await submit(http, stack.api_url, SEED)
        status = await wait_run(http, stack.api_url, second["dagId"])
        assert status["status"] == "SUCCEEDED", status
        async with http.get(f"{stack.api_url}/api/v1/dags/{second['dagId']}/tasks/process-data/logs") as r:
            logs = (await r.json())["lines"]
        assert any(line.startswith("[HELIOS] Cache hit input.txt") for line in logs), logs
