"""Deterministic run ids: what makes every firing exactly-once.

A run started by a schedule, a backfill, a trigger or a chained success gets an id
derived from what caused it (uuid5, 32 hex digits like every run id). Starting a run
with an id that already exists is a no-op (`launch` is idempotent), so a loop that fires
twice, an api restarted between starting a run and recording it, or two api replicas
firing the same time all end with one run.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from helios.schedules.cron import as_utc

# Fixed forever: changing it would let every past time fire again.
NAMESPACE = uuid.UUID("6d1c6f0e-2f4b-5c0e-9a57-4a1f1c2b7e30")


def _id(*parts: str) -> str:
    return uuid.uuid5(NAMESPACE, "\x00".join(parts)).hex


def _seconds(at: datetime) -> str:
    return str(int(as_utc(at).timestamp()))


def scheduled(template: str, at: datetime) -> str:
    """The run of a template's schedule at one time (a backfill without rerun shares it:
    a time that already ran is not run again)."""
    return _id("schedule", template, _seconds(at))


def backfill_rerun(backfill_id: str, template: str, at: datetime) -> str:
    """A backfill with rerun: a new run per (backfill, time)."""
    return _id("backfill", backfill_id, template, _seconds(at))


def object_run(trigger: str, bucket: str, key: str, etag: str) -> str:
    """One run per object version (its ETag) per trigger."""
    return _id("object", trigger, bucket, key, etag)


def chained(upstream_run: str, trigger: str) -> str:
    """The run a chaining trigger starts after one upstream run succeeded."""
    return _id("chain", upstream_run, trigger)


def webhook(template: str, idempotency_key: str) -> str:
    """A webhook call with an Idempotency-Key: the same key starts one run."""
    return _id("webhook", template, idempotency_key)
