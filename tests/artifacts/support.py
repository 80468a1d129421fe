"""Helpers of the artifact tests: publish bytes the way a producing task would."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from helios.artifacts.uploader import upload_outputs
from helios.messages import InputArtifact
from helios.settings import Settings


async def publish(
    s3: Any, settings: Settings, tmp: Path, files: dict[str, bytes], task: str = "producer"
) -> list[InputArtifact]:
    """Upload `files` as a producer's outputs; return them as a consumer's inputs."""
    workspace = tmp / f"producer-{uuid.uuid4().hex[:8]}"
    workspace.mkdir()
    for name, data in files.items():
        (workspace / name).write_bytes(data)
    outputs = await upload_outputs(
        f"run-{uuid.uuid4().hex[:12]}", task, list(files), workspace,
        s3=s3, bucket=settings.s3.bucket, emit=lambda line: None,
    )
    return [
        InputArtifact(name=o.name, from_task=task, artifact=o.name, key=o.key,
                      sha256=o.sha256, size=o.size)
        for o in outputs
    ]


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def s3_env(settings: Settings) -> dict[str, str]:
    """The HELIOS_S3_* environment of a helper process pointed at the test server."""
    s = settings.s3
    assert s.endpoint_url and s.access_key_id and s.secret_access_key
    return {
        "HELIOS_S3_ENDPOINT_URL": s.endpoint_url,
        "HELIOS_S3_BUCKET": s.bucket,
        "HELIOS_S3_ACCESS_KEY_ID": s.access_key_id.get_secret_value(),
        "HELIOS_S3_SECRET_ACCESS_KEY": s.secret_access_key.get_secret_value(),
    }
