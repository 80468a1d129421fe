"""`helios dev`: the embedded stack in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from helios.auth_tokens import usage_hint
from helios.devstack.stack import dev_stack


async def run_dev(data_dir: Path, port: int, metrics_port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"starting Helios (data in {data_dir}) ...", flush=True)
    async with dev_stack(data_dir, api_port=port, metrics_port=metrics_port) as stack:
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

Ctrl-C stops everything.""", flush=True)
        await stop.wait()
        print("stopping ...", flush=True)
    print("stopped", flush=True)
    return 0
