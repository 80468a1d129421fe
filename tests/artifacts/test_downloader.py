"""place_inputs against the real S3 server: hits, misses, verification, concurrency."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from helios.artifacts import loglines
from helios.artifacts.cache import NodeCache
from helios.artifacts.downloader import place_inputs
from helios.artifacts.errors import ArtifactError, DigestMismatch, ObjectMissing
from helios.messages import CacheStats, InputArtifact
from helios.settings import Settings

from .support import publish, random_bytes


async def place(
    s3: Any, settings: Settings, inputs: list[InputArtifact], workspace: Path,
    cache: NodeCache | None,
) -> tuple[CacheStats, list[str]]:
    lines: list[str] = []
    stats = await place_inputs(
        inputs, workspace, s3=s3, bucket=settings.s3.bucket, cache=cache, emit=lines.append
    )
    return stats, lines


async def test_miss_then_hit(s3: Any, settings: Settings, tmp_path: Path) -> None:
    files = {"input.txt": b"test data\n", "model (v2).bin": random_bytes(300_000), "empty": b""}
    inputs = await publish(s3, settings, tmp_path, files)
    cache = NodeCache(tmp_path / "cache", 10**9)
    size = sum(len(v) for v in files.values())

    stats, lines = await place(s3, settings, inputs, tmp_path / "w1", cache)
    assert stats == CacheStats(hits=0, misses=3, bytesSaved=0, bytesFetched=size)
    by_name = {i.name: i for i in inputs}
    txt = by_name["input.txt"]
    assert loglines.cache_miss(
        "input.txt", 10, txt.sha256, settings.s3.bucket, txt.key
    ) in lines
    assert (
        f"[HELIOS] Cache miss input.txt (10 bytes, sha256 {txt.sha256[:12]}) "
        f"fetched from s3://{settings.s3.bucket}/{txt.key}"
    ) in lines

    stats, lines = await place(s3, settings, inputs, tmp_path / "w2", cache)
    assert stats == CacheStats(hits=3, misses=0, bytesSaved=size, bytesFetched=0)
    assert f"[HELIOS] Cache hit input.txt (10 bytes, sha256 {txt.sha256[:12]})" in lines
    for name, data in files.items():
        assert (tmp_path / "w2" / name).read_bytes() == data
        entry = cache.entry(by_name[name].sha256)
        assert os.stat(entry).st_mode & 0o777 == 0o444
        assert os.stat(entry).st_ino != os.stat(tmp_path / "w2" / name).st_ino


async def test_cache_disabled_goes_straight_to_the_workspace(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    [item] = await publish(s3, settings, tmp_path, {"input.txt": b"abc"})
    stats, lines = await place(s3, settings, [item], tmp_path / "w", None)
    assert stats == CacheStats(hits=0, misses=0, bytesSaved=0, bytesFetched=3)
    assert lines == [
        f"[HELIOS] Cache disabled input.txt (3 bytes, sha256 {item.sha256[:12]}) "
        f"fetched from s3://{settings.s3.bucket}/{item.key}"
    ]
    assert (tmp_path / "w" / "input.txt").read_bytes() == b"abc"
    assert not (tmp_path / "cache").exists()


async def test_corrupted_entry_is_dropped_and_fetched_again(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    data = random_bytes(50_000)
    [item] = await publish(s3, settings, tmp_path, {"data.bin": data})
    cache = NodeCache(tmp_path / "cache", 10**9)
    await place(s3, settings, [item], tmp_path / "w1", cache)

    # Rewrite the bytes in place and put the mtime back: only ctime gives it away.
    entry = cache.entry(item.sha256)
    before = os.stat(entry)
    os.chmod(entry, 0o644)
    entry.write_bytes(b"X" * len(data))
    os.utime(entry, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.chmod(entry, 0o444)

    stats, lines = await place(s3, settings, [item], tmp_path / "w2", cache)
    assert (stats.hits, stats.misses, stats.bytes_fetched) == (0, 1, len(data))
    assert lines[0] == loglines.cache_dropped("data.bin", item.sha256)
    assert lines[1].startswith("[HELIOS] Cache miss data.bin")
    assert (tmp_path / "w2" / "data.bin").read_bytes() == data
    assert entry.read_bytes() == data

    # A truncated entry is caught by its size alone.
    os.truncate(entry, 10)
    stats, lines = await place(s3, settings, [item], tmp_path / "w3", cache)
    assert (stats.hits, stats.misses) == (0, 1)
    assert (tmp_path / "w3" / "data.bin").read_bytes() == data


async def test_fetched_bytes_must_match_the_recorded_digest(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    [good] = await publish(s3, settings, tmp_path, {"a.txt": b"hello"})
    forged = good.model_copy(update={"sha256": "0" * 64, "name": "b.txt"})
    cache = NodeCache(tmp_path / "cache", 10**9)
    for c in (cache, None):
        with pytest.raises(DigestMismatch, match=r"input b.txt .*expected sha256 0{64}"):
            await place(s3, settings, [good, forged], tmp_path / "w", c)
        assert not (tmp_path / "w" / "b.txt").exists()
    assert not cache.contains("0" * 64)
    # The sibling's failure cancels the good fetch or not, by timing; either way no
    # temp file (reservation) survives.
    leftovers = {p.name for p in (tmp_path / "cache" / "sha256").rglob("*") if p.is_file()}
    assert leftovers <= {good.sha256}

    wrong_size = good.model_copy(update={"size": 6})
    with pytest.raises(ArtifactError, match="is 5 bytes, expected 6"):
        await place(s3, settings, [wrong_size], tmp_path / "w2", None)

    # (With a digest the cache holds, S3 is never asked: content addressing.)
    missing = good.model_copy(update={"key": good.key + ".nope", "sha256": "1" * 64})
    for c in (cache, None):
        with pytest.raises(ObjectMissing, match=r"object s3://\S+\.nope does not exist"):
            await place(s3, settings, [missing], tmp_path / "w3", c)


async def test_concurrent_placements_download_once(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    data = random_bytes(4 * 1024 * 1024)
    [item] = await publish(s3, settings, tmp_path, {"big.bin": data})
    # Eight caches on one root behave like eight processes: only flock connects them.
    caches = [NodeCache(tmp_path / "cache", 10**9) for _ in range(8)]
    results = await asyncio.gather(*(
        place(s3, settings, [item], tmp_path / f"w{i}", cache) for i, cache in enumerate(caches)
    ))
    stats = [s for s, _ in results]
    assert sum(s.misses for s in stats) == 1
    assert sum(s.hits for s in stats) == 7
    assert sum(s.bytes_fetched for s in stats) == len(data)
    for i in range(8):
        assert (tmp_path / f"w{i}" / "big.bin").read_bytes() == data


async def test_a_bad_input_name_is_refused(s3: Any, settings: Settings, tmp_path: Path) -> None:
    [item] = await publish(s3, settings, tmp_path, {"a.txt": b"a"})
    evil = item.model_copy(update={"name": "../escape.txt"})
    with pytest.raises(ArtifactError, match=r"escape\.txt"):
        await place(s3, settings, [evil], tmp_path / "w", None)
    assert not (tmp_path / "escape.txt").exists()
