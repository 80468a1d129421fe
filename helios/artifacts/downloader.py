"""Fill a task's workspace with its inputs: from the node cache, or from S3 (verified).

Used in-process by the local executor and by `python -m helios.downloader`, the init
container of a Kubernetes Job. One `[HELIOS]` line per input says where it came from.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from helios.artifacts import loglines
from helios.artifacts.cache import Fetch, NodeCache
from helios.artifacts.errors import ArtifactError, ObjectMissing
from helios.artifacts.files import CHUNK, in_thread, write_stream
from helios.dag.model import check_file_name
from helios.messages import CacheStats, InputArtifact

DEFAULT_PARALLEL = 8


async def place_inputs(
    inputs: list[InputArtifact],
    artifacts_dir: Path,
    *,
    s3: Any,
    bucket: str,
    cache: NodeCache | None,
    emit: Callable[[str], None],
    parallel: int = DEFAULT_PARALLEL,
) -> CacheStats:
    """Place every input at `artifacts_dir/{name}`; raise on the first failure.

    With `cache=None` (run `useCache: false` or task `cache: false`) objects go straight
    to the workspace and count neither as hits nor as misses, only as bytes fetched.
    Every object is checked against the InputArtifact's sha256 and size.
    """
    folders: set[Path] = {artifacts_dir}
    for item in inputs:
        try:
            parts = check_input_path(item.name)
        except ValueError as exc:
            raise ArtifactError(f"input {item.name!r}: {exc}") from None
        folders.add(artifacts_dir.joinpath(*parts[:-1]))
    for folder in sorted(folders):  # fan-in inputs live in /artifacts/{name}/{i}/
        await in_thread(folder.mkdir, parents=True, exist_ok=True)
    kinds: dict[str, str] = {}
    limit = asyncio.Semaphore(parallel)

    async def one(item: InputArtifact) -> None:
        async with limit:
            kinds[item.name] = await _place_one(item, artifacts_dir, s3, bucket, cache, emit)

    try:
        async with asyncio.TaskGroup() as group:
            for item in inputs:
                group.create_task(one(item), name=f"place-input:{item.name}")
    except BaseExceptionGroup as failures:
        raise _first(failures) from None
    sizes = {item.name: item.size for item in inputs}
    hits = [name for name, kind in kinds.items() if kind == "hit"]
    return CacheStats(
        hits=len(hits),
        misses=sum(1 for kind in kinds.values() if kind == "miss"),
        bytesSaved=sum(sizes[name] for name in hits),
        bytesFetched=sum(sizes[name] for name, kind in kinds.items() if kind != "hit"),
    )


def check_input_path(name: str) -> list[str]:
    """An input is placed at a plain file name, or (fan-in from a forEach task) at
    `{name}/{i}/{file}`: each part a plain file name, so nothing leaves /artifacts."""
    parts = name.split("/")
    if len(parts) not in (1, 3) or (len(parts) == 3 and not parts[1].isdigit()):
        raise ValueError("an input is placed at NAME or NAME/INDEX/FILE")
    for part in parts:
        check_file_name(part)
    return parts


async def _place_one(
    item: InputArtifact, artifacts_dir: Path, s3: Any, bucket: str,
    cache: NodeCache | None, emit: Callable[[str], None],
) -> str:
    dest = artifacts_dir / item.name
    what = f"input {item.name} (s3://{bucket}/{item.key})"
    fetch = s3_fetch(s3, bucket, item)
    if cache is None:
        await write_stream(dest, fetch, (item.sha256, item.size), what)
        emit(loglines.cache_disabled(item.name, item.size, item.sha256, bucket, item.key))
        return "disabled"
    placed = await cache.place(item.sha256, item.size, dest, fetch, what=what)
    if placed.dropped:
        emit(loglines.cache_dropped(item.name, item.sha256))
    if placed.hit:
        emit(loglines.cache_hit(item.name, item.size, item.sha256))
        return "hit"
    emit(loglines.cache_miss(item.name, item.size, item.sha256, bucket, item.key))
    return "miss"


def s3_fetch(s3: Any, bucket: str, item: InputArtifact) -> Fetch:
    """The object's bytes as a stream, failing fast when its length is already wrong."""

    async def chunks() -> AsyncGenerator[bytes, None]:
        try:
            response = await s3.get_object(Bucket=bucket, Key=item.key)
        except s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectMissing(item.name, bucket, item.key) from None
            raise
        async with response["Body"] as body:
            if response.get("ContentLength", item.size) != item.size:
                raise ArtifactError(
                    f"input {item.name}: s3://{bucket}/{item.key} is "
                    f"{response['ContentLength']} bytes, expected {item.size}"
                )
            while chunk := await body.read(CHUNK):
                yield chunk

    return chunks


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first leaf error: one clear reason beats a tree of them."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
