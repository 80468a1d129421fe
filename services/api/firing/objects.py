"""Object triggers: list a prefix, start one run per object version not seen before.
Objects already there when the trigger was created are recorded without a run, unless
the trigger says `existing: true`.

Each run gets `{{ trigger.key }}`, `.bucket`, `.etag`, `.size`, `.lastModified`, `.sha256`
(from the object's metadata, as Helios's uploads write it; else empty) and `.digest`
(`sha256:HEX`, else `etag:ETAG`). An object version is its ETag (a new upload of different bytes is a new version; the
same bytes uploaded again are not). The run id is derived from (trigger, bucket, key,
ETag) and the key is marked seen only after its run was started: a crash in between
starts the same run again, which is a no-op. Listing is paged (`objects_page` keys a
request) and bounded per poll (`objects_max_per_poll`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from helios.s3 import SHA256_META
from helios.schedules import ids
from helios.schedules.cron import rfc3339
from helios.schedules.records import ObjectSource, TriggerRecord
from services.api.firing import launching, store
from services.api.firing.context import FiringContext
from services.api.firing.params import render_params

log = logging.getLogger(__name__)


async def objects_pass(f: FiringContext) -> int:
    started = 0
    for trigger in await store.all_triggers(f.c.redis):
        if isinstance(trigger.body.source, ObjectSource):
            started += await poll(f, trigger, trigger.body.source)
    return started


async def poll(f: FiringContext, trigger: TriggerRecord, source: ObjectSource) -> int:
    bucket = source.bucket or f.c.settings.s3.bucket
    fields = {"trigger": trigger.name, "template": trigger.body.template, "bucket": bucket}
    if bucket not in f.allowed_buckets():
        log.warning("object trigger skipped: bucket not allowed", extra=fields)
        return 0
    started, looked, token = 0, 0, None
    while looked < f.settings.objects_max_per_poll:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": source.prefix,
                                  "MaxKeys": f.settings.objects_page}
        if token:
            kwargs["ContinuationToken"] = token
        page = await f.c.s3.list_objects_v2(**kwargs)
        contents = page.get("Contents", [])
        looked += len(contents)
        seen = await store.seen_etags(f.c.redis, trigger.name, [o["Key"] for o in contents])
        older: dict[str, str] = {}
        for obj, known in zip(contents, seen, strict=True):
            etag = str(obj.get("ETag", "")).strip('"')
            if known == etag:
                continue
            if known is None and not source.existing and _before(
                    obj, trigger.created_at, f.settings.objects_clock_skew_s):
                # There before the trigger: not a new object. Recorded, so that a later
                # upload of other bytes under this key is one.
                older[str(obj["Key"])] = etag
                continue
            started += await _fire(f, trigger, bucket, obj, etag, fields)
        await store.mark_all_seen(f.c.redis, trigger.name, older)
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            break
    return started


def _before(obj: dict[str, Any], created_at: float, skew_s: float) -> bool:
    """Written before `created_at`, by more than the clocks may disagree (an object near
    the line counts as new: firing once too often beats missing one). S3 dates a
    multipart upload by when it began: one begun before the trigger counts as there."""
    modified = obj.get("LastModified")
    return isinstance(modified, datetime) and modified.timestamp() < created_at - skew_s


async def _sha256(f: FiringContext, bucket: str, key: str) -> str:
    """The sha256 an object carries in its metadata (Helios's uploads do), else ""."""
    try:
        head = await f.c.s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # gone meanwhile, or not readable: the ETag still identifies it
        log.info("no sha256 for %s: %s", key[:200], type(exc).__name__)
        return ""
    value = str((head.get("Metadata") or {}).get(SHA256_META, ""))
    return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else ""


async def _fire(f: FiringContext, trigger: TriggerRecord, bucket: str, obj: dict[str, Any],
                etag: str, fields: dict[str, str]) -> int:
    key = str(obj["Key"])
    modified = obj.get("LastModified")
    sha256 = await _sha256(f, bucket, key)
    values = {"key": key, "etag": etag, "bucket": bucket, "size": int(obj.get("Size", 0)),
              "sha256": sha256, "digest": f"sha256:{sha256}" if sha256 else f"etag:{etag}",
              "lastModified": rfc3339(modified) if isinstance(modified, datetime) else ""}
    run_id = ids.object_run(trigger.name, bucket, key, etag)
    created = 0
    try:
        params = render_params(trigger.body.params, values)
        result = await launching.start(
            f.c, f.parser, trigger.body.template, run_id=run_id, params=params,
            logical_time=None, extra={"trigger": trigger.name, "objectKey": key[:1024]})
        created = int(result.created)
        log.info("object trigger fired", extra={**fields, "dagId": run_id, "key": key})
    except (launching.LaunchRefused, ValueError) as exc:
        # Never retried: an object its template cannot take would otherwise be retried
        # forever. The reason is in the log.
        log.warning("object trigger refused %s: %s", key[:200], exc, extra=fields)
    await store.mark_seen(f.c.redis, trigger.name, key, etag)
    return created
