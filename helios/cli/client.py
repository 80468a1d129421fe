"""A small async client of the Helios HTTP API (used by the CLI and the benchmarks)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        if isinstance(body, dict):
            text = f"{body.get('title', status)}: {body.get('detail', '')}".rstrip(": ")
            for err in body.get("errors", []):
                text += f"\n  {err.get('field') or '(document)'}: {err.get('reason')}"
        else:
            text = f"HTTP {status}: {body}"
        super().__init__(text)


class Client:
    def __init__(self, base_url: str, session: aiohttp.ClientSession):
        self.base = base_url.rstrip("/") + "/api/v1"
        self.session = session

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            try:
                body: Any = json.loads(text) if text else None
            except ValueError:
                body = text
            if resp.status >= 400:
                raise ApiError(resp.status, body)
            return body

    async def submit_file(self, path: Path, use_cache: bool | None = None) -> dict[str, Any]:
        data = path.read_bytes()
        suffix = path.suffix.lower()
        ctype = "application/json" if suffix == ".json" else "application/yaml"
        params = {} if use_cache is None else {"useCache": str(use_cache).lower()}
        return await self._call("POST", "/dags", data=data, params=params,
                                headers={"Content-Type": ctype})

    async def status(self, dag_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/dags/{dag_id}")

    async def logs(self, dag_id: str, task: str) -> dict[str, Any]:
        return await self._call("GET", f"/dags/{dag_id}/tasks/{task}/logs")

    async def cancel(self, dag_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/dags/{dag_id}/cancel")

    async def retry(self, dag_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/dags/{dag_id}/retry")

    async def metrics(self, dag_name: str, limit: int = 10) -> dict[str, Any]:
        return await self._call("GET", f"/dags/{dag_name}/metrics", params={"limit": str(limit)})

    async def events(self, dag_id: str, last_event_id: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """The run's SSE feed, resuming transparently if the connection drops."""
        last = last_event_id
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                async with self.session.get(
                    f"{self.base}/dags/{dag_id}/events", headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
                ) as resp:
                    if resp.status >= 400:
                        raise ApiError(resp.status, await resp.json(content_type=None))
                    fields: dict[str, str] = {}
                    async for raw in resp.content:
                        line = raw.decode().rstrip("\r\n")
                        if line.startswith(":"):
                            continue
                        if line:
                            key, _, value = line.partition(":")
                            fields[key] = value.removeprefix(" ")
                            continue
                        if "data" in fields:
                            event = json.loads(fields["data"])
                            last = int(fields.get("id", last or 0))
                            yield event
                        fields = {}
                    return  # the server ended the feed after the terminal event
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                    aiohttp.ClientConnectionError):
                continue
