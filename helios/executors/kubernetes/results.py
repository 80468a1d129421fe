"""The watcher's side of a task's `.result` on Kubernetes: read the object the wait
container put (waiter.py) once the Job succeeded, with the local executor's bounds
(helios.results: at most 64 KiB of JSON). No object means the task wrote no result."""

from __future__ import annotations

import asyncio
from typing import Any

from helios.results import MAX_RESULT_BYTES, ResultError, parse_result


async def fetch_result(s3: Any, bucket: str, key: str, timeout_s: float = 30.0) -> Any:
    """The stored result, or None when there is none; ResultError when it is unusable.
    Other S3 errors propagate: the attempt is settled again later."""
    async def read() -> bytes | None:
        try:
            response = await s3.get_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        async with response["Body"] as body:
            if int(response.get("ContentLength") or 0) > MAX_RESULT_BYTES:
                raise ResultError(f"the stored result is over {MAX_RESULT_BYTES} bytes")
            data: bytes = await body.read(MAX_RESULT_BYTES + 1)
        return data

    data = await asyncio.wait_for(read(), timeout_s)
    return None if data is None else parse_result(data, "the stored result")
