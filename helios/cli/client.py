"""A small async client of the Helios HTTP API (used by the CLI and the benchmarks)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from helios.cli.feed import FeedError, FeedEvent, follow_feed


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

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any route under /api/v1: the decoded body, or ApiError."""
        return await self._call(method, path, **kwargs)

    async def submit_file(self, path: Path, use_cache: bool | None = None,
                          values: dict[str, str] | None = None) -> dict[str, Any]:
        data = path.read_bytes()
        suffix = path.suffix.lower()
        ctype = "application/json" if suffix == ".json" else "application/yaml"
        params = [] if use_cache is None else [("useCache", str(use_cache).lower())]
        # Parameter values as `param=NAME=VALUE`, read by the API as the declared types.
        params += [("param", f"{name}={value}") for name, value in (values or {}).items()]
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

    async def list_runs(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        return await self._call("GET", "/dags", params=params)

    async def metrics(self, dag_name: str, limit: int = 10) -> dict[str, Any]:
        return await self._call("GET", f"/dags/{dag_name}/metrics", params={"limit": str(limit)})

    async def feed(self, dag_id: str, last_event_id: int | None = None,
                   on_note: Callable[[str], None] | None = None) -> AsyncIterator[FeedEvent]:
        """The run's SSE feed with event ids, resumed through API restarts and dropped
        connections until the run's terminal event (see `helios.cli.feed`)."""
        try:
            async for event in follow_feed(self.session, f"{self.base}/dags/{dag_id}/events",
                                           last_event_id=last_event_id, on_note=on_note):
                yield event
        except FeedError as exc:
            raise ApiError(exc.status, exc.body) from None

    async def events(self, dag_id: str, last_event_id: int | None = None,
                     on_note: Callable[[str], None] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The run's events (without their ids) until its terminal event."""
        async for event in self.feed(dag_id, last_event_id, on_note):
            yield event.data
