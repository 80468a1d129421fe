"""Schedule, backfill and trigger bodies: strict validation (what the OpenAPI schema says)
and `{{ trigger.* }}` parameters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from helios.schedules.plan import Policy
from helios.schedules.records import TRIGGER_FIELDS, BackfillBody, ScheduleBody, TriggerBody
from services.api.firing.params import check_params, render_params


def schedule(raw: bytes) -> ScheduleBody:
    return ScheduleBody.model_validate_json(raw, strict=True)


def test_a_schedule_body_with_every_field() -> None:
    body = schedule(b'{"cron": "0 2 * * *", "timezone": "Europe/Berlin", "catchup": false,'
                    b' "maxCatchup": 3, "concurrencyPolicy": "Replace",'
                    b' "start": "2026-01-01T00:00:00Z", "end": "2026-12-31T00:00:00+01:00",'
                    b' "paused": true, "params": {"day": "x", "n": 3}}')
    spec = body.spec()
    assert spec.policy is Policy.REPLACE and not spec.catchup and spec.max_catchup == 3
    assert spec.paused and spec.cron.timezone == "Europe/Berlin"


@pytest.mark.parametrize("raw", [
    b'{"cron": "* * * * *", "catchup": "true"}',          # no coercion: "true" is a string
    b'{"cron": "* * * * *", "maxCatchup": "5"}',
    b'{"cron": "* * * * *", "maxCatchup": 0}',
    b'{"cron": "* * * * *", "concurrencyPolicy": "forbid"}',
    b'{"cron": "* * * * *", "start": "2026-01-01T00:00:00"}',  # no offset
    b'{"cron": "* * * * *", "start": 1767225600}',
    b'{"cron": "* * * * *", "start": "9999-12-31T23:00:00-05:00"}',  # past datetime's range
    b'{"cron": "* * * * *", "end": "1969-12-31T00:00:00Z"}',
    b'{"cron": "* * * * *", "start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}',
    b'{"cron": "* * * * *", "unknown": 1}',
    b'{"cron": "@every 5m"}',
    b'{"timezone": "UTC"}',
    b'[]',
])
def test_invalid_schedule_bodies_are_refused(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        schedule(raw)


def test_backfill_and_trigger_bodies() -> None:
    body = BackfillBody.model_validate_json(
        b'{"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "maxParallel": 3}',
        strict=True)
    assert body.max_parallel == 3 and not body.rerun
    with pytest.raises(ValidationError):
        BackfillBody.model_validate_json(
            b'{"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}', strict=True)
    with pytest.raises(ValidationError):
        BackfillBody.model_validate_json(
            b'{"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "maxParallel": 99}',
            strict=True)
    trigger = TriggerBody.model_validate_json(
        b'{"template": "train", "source": {"kind": "runSucceeded", "template": "prepare"}}',
        strict=True)
    assert trigger.source.kind == "runSucceeded"
    for bad in (b'{"template": "t", "source": {"kind": "cron"}}',
                b'{"template": "t", "source": {"kind": "objects", "prefix": ""}}',
                b'{"template": "t", "source": {"kind": "objects", "prefix": "a\\u0000"}}',
                b'{"template": "T", "source": {"kind": "objects", "prefix": "a/"}}'):
        with pytest.raises(ValidationError):
            TriggerBody.model_validate_json(bad, strict=True)


def test_trigger_params_know_only_their_source_fields() -> None:
    params = {"key": "{{ trigger.key }}", "tag": "etag-{{trigger.etag}}", "n": 5}
    assert check_params(params, TRIGGER_FIELDS["objects"]) == []
    problems = check_params(params, TRIGGER_FIELDS["runSucceeded"])
    assert problems and "trigger.key" in problems[0]
    assert render_params(params, {"key": "in/a.csv", "etag": "abc"}) == {
        "key": "in/a.csv", "tag": "etag-abc", "n": 5}
    with pytest.raises(ValueError):
        render_params({"x": "{{ trigger.nope }}"}, {"key": "k"})
