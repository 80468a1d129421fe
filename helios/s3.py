"""S3 client factory and the few object operations Helios needs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from helios.settings import S3Settings

SHA256_META = "sha256"


@contextlib.asynccontextmanager
async def open_s3(settings: S3Settings) -> AsyncIterator[Any]:
    session = get_session()
    config = AioConfig(
        connect_timeout=settings.timeout_s,
        read_timeout=settings.timeout_s,
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"},
        max_pool_connections=64,
        # SeaweedFS and MinIO accept the classic checksum behaviour only.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    kwargs: dict[str, Any] = {"region_name": settings.region, "config": config}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    if settings.access_key_id and settings.secret_access_key:
        kwargs["aws_access_key_id"] = settings.access_key_id.get_secret_value()
        kwargs["aws_secret_access_key"] = settings.secret_access_key.get_secret_value()
    async with session.create_client("s3", **kwargs) as client:
        yield client


async def ensure_bucket(client: Any, bucket: str) -> None:
    try:
        await client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError:
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            await client.create_bucket(Bucket=bucket)
