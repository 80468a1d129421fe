"""Upload a finished task's declared outputs with their sha256 and size.

Each file is hashed first, because the digest goes into the object's metadata, which S3
takes when the upload starts; the upload pass hashes again and fails if the bytes
changed in between. Outputs must be regular files: a symlink could point anywhere on
the machine that runs the uploader (the local executor's host) and exfiltrate it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helios import objects
from helios.artifacts import loglines
from helios.artifacts.errors import (
    USER_ARTIFACTS_DIR,
    ArtifactError,
    MissingOutputs,
    OutputChanged,
)
from helios.artifacts.files import CHUNK, in_thread
from helios.dag.model import check_file_name
from helios.messages import OutputArtifact
from helios.s3 import SHA256_META

__all__ = ["MissingOutputs", "OutputTooLarge", "upload_outputs"]

PART_SIZE = 8 * 1024 * 1024
MULTIPART_THRESHOLD = 2 * PART_SIZE
DEFAULT_PARALLEL = 4


class OutputTooLarge(ArtifactError):
    """The declared outputs together are larger than the attempt may upload."""

    def __init__(self, total: int, limit: int):
        self.total, self.limit = total, limit
        super().__init__(
            f"declared outputs total {total} bytes, over the limit of {limit} bytes per "
            "attempt (HELIOS_LOCAL_OUTPUT_MAX_BYTES); nothing was uploaded"
        )


async def upload_outputs(
    dag_id: str,
    task: str,
    outputs: list[str],
    artifacts_dir: Path,
    *,
    s3: Any,
    bucket: str,
    emit: Callable[[str], None],
    parallel: int = DEFAULT_PARALLEL,
    max_bytes: int | None = None,
) -> list[OutputArtifact]:
    """Upload every declared output, in declaration order; check all before uploading any.

    `max_bytes` caps their total apparent size (a sparse file counts in full: that is
    what an upload would send), checked before the first byte goes out."""
    for name in outputs:
        try:
            check_file_name(name)
        except ValueError as exc:
            raise ArtifactError(f"output {name!r}: {exc}") from None
    _check_present(outputs, artifacts_dir)
    if max_bytes is not None:
        total = sum(os.lstat(artifacts_dir / name).st_size for name in dict.fromkeys(outputs))
        if total > max_bytes:
            raise OutputTooLarge(total, max_bytes)
    limit = asyncio.Semaphore(parallel)

    async def one(name: str) -> OutputArtifact:
        async with limit:
            key = objects.output(dag_id, task, name)
            digest, size = await _upload(s3, bucket, key, name, artifacts_dir / name)
        emit(loglines.uploaded(name, size, digest, bucket, key))
        return OutputArtifact(name=name, key=key, sha256=digest, size=size)

    try:
        async with asyncio.TaskGroup() as group:
            jobs = [group.create_task(one(n), name=f"upload-output:{n}") for n in outputs]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return [job.result() for job in jobs]


def _check_present(outputs: list[str], artifacts_dir: Path) -> None:
    missing: list[str] = []
    irregular: list[str] = []
    for name in outputs:
        try:
            mode = os.lstat(artifacts_dir / name).st_mode
        except FileNotFoundError:
            missing.append(name)
            continue
        if not stat.S_ISREG(mode):
            irregular.append(name)
    if missing:
        raise MissingOutputs(missing)
    if irregular:
        raise ArtifactError(
            f"declared output(s) under {USER_ARTIFACTS_DIR} are not regular files "
            f"(symlinks and folders are refused): {', '.join(irregular)}"
        )


async def _upload(s3: Any, bucket: str, key: str, name: str, path: Path) -> tuple[str, int]:
    # O_NOFOLLOW: the file was checked above, but user code may have swapped it since.
    # Opened on the loop: an fd opened by a thread whose waiter was cancelled would leak.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        digest, size = await in_thread(_hash_fd, fd)
        meta = {SHA256_META: digest}
        if size <= MULTIPART_THRESHOLD:
            body = await in_thread(_pread_all, fd, size)
            if (hashlib.sha256(body).hexdigest(), len(body)) != (digest, size):
                raise OutputChanged(name)
            await s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=meta)
        else:
            await _multipart(s3, bucket, key, name, fd, (digest, size), meta)
    finally:
        os.close(fd)
    return digest, size


async def _multipart(
    s3: Any, bucket: str, key: str, name: str, fd: int,
    expected: tuple[str, int], meta: dict[str, str],
) -> None:
    upload = await s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=meta)
    upload_id = upload["UploadId"]
    try:
        h = hashlib.sha256()
        parts: list[dict[str, Any]] = []
        offset = 0
        while True:
            data = await in_thread(os.pread, fd, PART_SIZE, offset)
            if not data:
                break
            h.update(data)
            number = len(parts) + 1
            part = await s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts.append({"PartNumber": number, "ETag": part["ETag"]})
            offset += len(data)
        if (h.hexdigest(), offset) != expected:
            raise OutputChanged(name)
        await s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def _hash_fd(fd: int) -> tuple[str, int]:
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest(), offset


def _pread_all(fd: int, size: int) -> bytes:
    # One byte more than expected, so a file that grew is noticed by the caller.
    chunks: list[bytes] = []
    offset = 0
    while offset <= size:
        chunk = os.pread(fd, size + 1 - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
