"""What the example tests share: the examples' files, API calls, a generous poll."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.stack import call, runs_named, until

__all__ = ["call", "example", "put_template", "runs_named", "tasks_of", "until"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, file: str = "dag.yaml") -> str:
    return (EXAMPLES / name / file).read_text()


async def put_template(http: aiohttp.ClientSession, api: str, name: str) -> None:
    status, body = await call(http, "PUT", f"{api}/api/v1/templates/{name}",
                              data=example(name),
                              headers={"Content-Type": "application/yaml"})
    assert status == 201, body


def tasks_of(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in status["tasks"]}
