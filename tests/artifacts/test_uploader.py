"""upload_outputs against the real S3 server."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from helios import objects
from helios.artifacts.errors import ArtifactError
from helios.artifacts.files import sha256_file
from helios.artifacts.loglines import LogSummary
from helios.artifacts.uploader import MULTIPART_THRESHOLD, MissingOutputs, upload_outputs
from helios.settings import Settings

from .support import random_bytes


async def test_outputs_are_uploaded_with_their_digest(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    files = {
        "output.txt": b"test data\n",
        "empty": b"",
        "big.bin": random_bytes(MULTIPART_THRESHOLD + 123),  # takes the multipart path
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    dag_id = f"run-{uuid.uuid4().hex[:8]}"
    lines: list[str] = []
    outputs = await upload_outputs(
        dag_id, "gen", list(files), tmp_path, s3=s3, bucket=settings.s3.bucket,
        emit=lines.append,
    )

    assert [o.name for o in outputs] == list(files)  # declaration order
    for out in outputs:
        digest, size = sha256_file(tmp_path / out.name)
        assert (out.key, out.sha256, out.size) == (
            objects.output(dag_id, "gen", out.name), digest, size
        )
        head = await s3.head_object(Bucket=settings.s3.bucket, Key=out.key)
        assert head["Metadata"]["sha256"] == digest
        assert head["ContentLength"] == size
    txt = outputs[0]
    assert (
        f"[HELIOS] Uploaded output.txt (10 bytes, sha256 {txt.sha256}) "
        f"to s3://{settings.s3.bucket}/{txt.key}"
    ) in lines

    summary = LogSummary()
    for line in lines:
        summary.feed(line)
    assert sorted(summary.outputs, key=lambda o: o.name) == sorted(outputs, key=lambda o: o.name)


async def test_missing_outputs_fail_before_any_upload(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "present.txt").write_bytes(b"here")
    dag_id = f"run-{uuid.uuid4().hex[:8]}"
    with pytest.raises(MissingOutputs) as caught:
        await upload_outputs(
            dag_id, "t", ["a.txt", "present.txt", "b.txt"], tmp_path,
            s3=s3, bucket=settings.s3.bucket, emit=lambda line: None,
        )
    assert caught.value.names == ["a.txt", "b.txt"]
    assert str(caught.value) == "declared output(s) not found under /artifacts: a.txt, b.txt"
    listing = await s3.list_objects_v2(Bucket=settings.s3.bucket, Prefix=objects.run_prefix(dag_id))
    assert listing.get("KeyCount", 0) == 0


async def test_symlinks_and_folders_are_refused(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    os.symlink("/etc/hostname", tmp_path / "leak.txt")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ArtifactError, match=r"not regular files .*: leak\.txt, dir"):
        await upload_outputs(
            "run-x", "t", ["leak.txt", "dir"], tmp_path,
            s3=s3, bucket=settings.s3.bucket, emit=lambda line: None,
        )
