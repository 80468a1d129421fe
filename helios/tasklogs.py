"""Where task log lines go: Redis (`dag:{dagId}:task:{name}:logs`) and, per attempt,
an object `dags/{dagId}/tasks/{task}/logs/{attempt}.log` in the artifacts bucket.

Redis keeps at most `log_max_bytes` of each attempt (HELIOS_LOG_MAX_BYTES): past that
the attempt's lines end with one `TRUNCATED` line naming the archived object, which
holds the whole log, and the cut is recorded (`keys.task_log_cuts`) for the API. The
watcher writes both; everyone else reads them through this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from helios import keys, objects

ATTEMPT_BANNER = "[HELIOS] ---- attempt {attempt} ----"
TRUNCATED = "[HELIOS] log truncated after {kept} bytes; full log: {url}"
PART_BYTES = 8 * 1024 * 1024  # multipart part size of an archived log (S3 minimum is 5 MiB)


@dataclass(frozen=True)
class LogCut:
    """Where an attempt's lines in Redis stop: after `kept_bytes`; all of it is at `url`."""

    attempt: int
    kept_bytes: int
    url: str

    def as_json(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "keptBytes": self.kept_bytes, "fullLog": self.url}


def line_bytes(line: str) -> int:
    """What a line costs against the cap: its UTF-8 bytes and the newline."""
    return len(line.encode(errors="replace")) + 1


def archive_url(bucket: str, dag_id: str, task: str, attempt: int) -> str:
    return f"s3://{bucket}/{objects.log(dag_id, task, attempt)}"


def cap_lines(lines: Sequence[str], max_bytes: int) -> tuple[list[str], int | None]:
    """The leading lines that fit in `max_bytes`, and the bytes kept if some were cut."""
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = line_bytes(line)
        if used + cost > max_bytes:
            return kept, used
        kept.append(line)
        used += cost
    return kept, None


def record_cut(pipe: Any, dag_id: str, task: str, cut: LogCut) -> None:
    """Queue, on a pipeline (ideally the MULTI that appends the attempt's last lines), the
    truncation line and the cut's record."""
    pipe.rpush(keys.task_logs(dag_id, task), TRUNCATED.format(kept=cut.kept_bytes, url=cut.url))
    pipe.hset(keys.task_log_cuts(dag_id, task), str(cut.attempt),
              orjson.dumps(cut.as_json()).decode())


async def append_lines(redis: aioredis.Redis, dag_id: str, task: str, lines: Sequence[str]) -> None:
    if lines:
        await redis.rpush(keys.task_logs(dag_id, task), *lines)


async def append_cut(redis: aioredis.Redis, dag_id: str, task: str, cut: LogCut) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        record_cut(pipe, dag_id, task, cut)
        await pipe.execute()


async def read_lines(
    redis: aioredis.Redis, dag_id: str, task: str, start: int = 0, end: int = -1
) -> list[str]:
    return [str(line) for line in await redis.lrange(keys.task_logs(dag_id, task), start, end)]


async def read_cuts(redis: aioredis.Redis, dag_id: str, task: str) -> list[LogCut]:
    """The task's truncated attempts, oldest first."""
    raw = await redis.hgetall(keys.task_log_cuts(dag_id, task))
    cuts = []
    for value in raw.values():
        d = orjson.loads(value)
        cuts.append(LogCut(int(d["attempt"]), int(d["keptBytes"]), str(d["fullLog"])))
    return sorted(cuts, key=lambda c: c.attempt)


async def archive_attempt(
    s3: Any, bucket: str, dag_id: str, task: str, attempt: int, text: str
) -> str:
    """Store one attempt's whole log as an object; returns its key."""
    key = objects.log(dag_id, task, attempt)
    await s3.put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType="text/plain")
    return key


async def archive_file(
    s3: Any, bucket: str, dag_id: str, task: str, attempt: int, path: Path
) -> str:
    """Store one attempt's log from its spool file, a part at a time (memory stays at one
    part whatever the size); returns the object key."""
    key = objects.log(dag_id, task, attempt)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first = await asyncio.to_thread(os.pread, fd, PART_BYTES, 0)
        if len(first) < PART_BYTES:
            await s3.put_object(Bucket=bucket, Key=key, Body=first, ContentType="text/plain")
            return key
        upload = await s3.create_multipart_upload(Bucket=bucket, Key=key,
                                                  ContentType="text/plain")
        upload_id = upload["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            data, offset = first, 0
            while data:
                number = len(parts) + 1
                part = await s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                            PartNumber=number, Body=data)
                parts.append({"PartNumber": number, "ETag": part["ETag"]})
                offset += len(data)
                data = await asyncio.to_thread(os.pread, fd, PART_BYTES, offset)
            await s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                               MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
        return key
    finally:
        os.close(fd)
