"""The OpenAPI part of schedules, backfills and triggers (merged by `services.api.openapi`).

Request bodies come from the pydantic models that validate them; what the schema cannot
say (a cron expression's meaning, a zone's existence, end after start) is in the 400's
description.
"""

from __future__ import annotations

from typing import Any

from helios.schedules.records import NAME_PATTERN, BackfillBody, ScheduleBody, TriggerBody
from services.api.openapi_parts import json_response as _json
from services.api.openapi_parts import problem as _problem

_NAME = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": NAME_PATTERN}
_TEMPLATE = {"name": "name", "in": "path", "required": True, "schema": _NAME,
             "description": "The stored DAG's name"}
_TRIGGER = {"name": "trigger", "in": "path", "required": True, "schema": _NAME,
            "description": "The trigger's name"}
_BACKFILL = {"name": "id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
_NEXT = {"name": "next", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "maximum": 100},
         "description": "How many next fire times to show"}
_REF = "#/components/schemas/{model}"


def _body(ref: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_EMPTY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "maxProperties": 0}}}}
_UNAVAILABLE = _problem("A backing service (or every document parser) is unavailable; retry")
_BODY_ERRORS = {"408": _problem("The body did not arrive in time"),
                "413": _problem("Body too large (256 KiB)"),
                "415": _problem("Not application/json"), "503": _UNAVAILABLE}
_NO_SCHEDULE = _problem("No such stored DAG, or it has no schedule")
_NO_TEMPLATE = _problem("No such stored DAG")


def _schema(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, ref_template=_REF)
    return schema, schema.pop("$defs", {})


def _schemas() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, model in (("ScheduleBody", ScheduleBody), ("BackfillBody", BackfillBody),
                        ("TriggerBody", TriggerBody)):
        schema, defs = _schema(model)
        out.update(defs)
        out[name] = schema
    out["Schedule"] = {"type": "object", "properties": {
        "template": {"type": "string"}, "cron": {"type": "string"},
        "timezone": {"type": "string"}, "paused": {"type": "boolean"},
        "state": {"type": "object", "description": "cursor (the newest time handled), "
                  "lastRunId, lastTime, fired, skipped, lastError"},
        "nextFireTimes": {"type": "array", "items": {"type": "string", "format": "date-time"}},
    }}
    out["ScheduleList"] = {"type": "object", "properties": {
        "schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}}}
    out["Backfill"] = {"type": "object", "properties": {
        "id": {"type": "string"}, "template": {"type": "string"},
        "state": {"type": "string",
                  "enum": ["RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"]},
        "total": {"type": "integer"},
        "progress": {"type": "object", "description": "pending, running, succeeded, failed, "
                     "cancelled, skipped (already ran): counts of times"},
        "runs": {"type": "array", "items": {"type": "object", "properties": {
            "time": {"type": "string"}, "runId": {"type": "string"},
            "state": {"type": "string"}}}},
    }}
    out["BackfillList"] = {"type": "object", "properties": {
        "backfills": {"type": "array", "items": {"$ref": "#/components/schemas/Backfill"}}}}
    out["Trigger"] = {"type": "object", "properties": {
        "name": {"type": "string"}, "template": {"type": "string"},
        "source": {"type": "object"}, "params": {"type": "object"},
        "createdAt": {"type": "number"}}}
    out["TriggerList"] = {"type": "object", "properties": {
        "triggers": {"type": "array", "items": {"$ref": "#/components/schemas/Trigger"}}}}
    return out


SCHEMAS = _schemas()

_SCHEDULE_400 = _problem(
    "Invalid schedule (errors name each field): beyond this schema, `cron` is 5 fields, or "
    "6 with seconds first, or an @alias, without R or H fields; `timezone` an IANA zone; "
    "`end` after `start`, both between the years 1970 and 9000; `params` fit the stored "
    "DAG's declared parameters")

PATHS: dict[str, Any] = {
    "/schedules": {"get": {
        "summary": "Every schedule with its next fire times", "operationId": "listSchedules",
        "parameters": [_NEXT],
        "responses": {"200": _json("The schedules", "ScheduleList"), "400": _problem("Bad next"),
                      "503": _UNAVAILABLE}}},
    "/templates/{name}/schedule": {
        "put": {"summary": "Attach (or replace) the stored DAG's schedule",
                "operationId": "putSchedule", "parameters": [_TEMPLATE, _NEXT],
                "requestBody": _body("ScheduleBody"),
                "responses": {"200": _json("Replaced", "Schedule"),
                              "201": _json("Created", "Schedule"), "400": _SCHEDULE_400,
                              "404": _NO_TEMPLATE,
                              "409": _problem("Too many schedules (1000)"), **_BODY_ERRORS}},
        "get": {"summary": "The schedule, its state and next fire times",
                "operationId": "getSchedule", "parameters": [_TEMPLATE, _NEXT],
                "responses": {"200": _json("The schedule", "Schedule"),
                              "400": _problem("Bad next"), "404": _NO_SCHEDULE,
                              "503": _UNAVAILABLE}},
        "delete": {"summary": "Remove the schedule", "operationId": "deleteSchedule",
                   "parameters": [_TEMPLATE],
                   "responses": {"204": {"description": "Removed"}, "404": _NO_SCHEDULE,
                                 "503": _UNAVAILABLE}},
    },
    "/templates/{name}/schedule/pause": {"post": {
        "summary": "Pause the schedule (nothing fires)", "operationId": "pauseSchedule",
        "parameters": [_TEMPLATE, _NEXT], "requestBody": _EMPTY,
        "responses": {"200": _json("Paused", "Schedule"), "400": _problem("A body was sent"),
                      "404": _NO_SCHEDULE, **_BODY_ERRORS}}},
    "/templates/{name}/schedule/resume": {"post": {
        "summary": "Resume the schedule from now (the pause's times are not caught up)",
        "operationId": "resumeSchedule", "parameters": [_TEMPLATE, _NEXT],
        "requestBody": _EMPTY,
        "responses": {"200": _json("Resumed", "Schedule"), "400": _problem("A body was sent"),
                      "404": _NO_SCHEDULE, **_BODY_ERRORS}}},
    "/templates/{name}/backfills": {"post": {
        "summary": "Run every scheduled time between from and to (at most maxParallel at "
                   "once; times that ran already are skipped unless rerun)",
        "operationId": "createBackfill", "parameters": [_TEMPLATE],
        "requestBody": _body("BackfillBody"),
        "responses": {"201": _json("Created", "Backfill"), "400": _problem(
            "Invalid body: beyond this schema, `to` not before `from`, both between the "
            "years 1970 and 9000, a valid `cron` (or a schedule on the stored DAG), 1..1000 "
            "times in the range, params that fit"),
            "404": _NO_TEMPLATE, "409": _problem("Too many backfills running (100)"),
            **_BODY_ERRORS}}},
    "/backfills": {"get": {
        "summary": "The latest backfills (without their runs)", "operationId": "listBackfills",
        "parameters": [{"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100}}],
        "responses": {"200": _json("Newest first", "BackfillList"),
                      "400": _problem("Bad limit"), "503": _UNAVAILABLE}}},
    "/backfills/{id}": {"get": {
        "summary": "A backfill and its progress", "operationId": "getBackfill",
        "parameters": [_BACKFILL],
        "responses": {"200": _json("The backfill", "Backfill"),
                      "404": _problem("No such backfill"), "503": _UNAVAILABLE}}},
    "/backfills/{id}/cancel": {"post": {
        "summary": "Cancel a backfill: no further run starts, its running runs are cancelled",
        "operationId": "cancelBackfill", "parameters": [_BACKFILL], "requestBody": _EMPTY,
        "responses": {"202": {"description": "Cancelling", "content": {"application/json": {
            "schema": {"type": "object"}}}},
            "400": _problem("A body was sent"), "404": _problem("No such backfill"),
            "409": _problem("The backfill already ended"), **_BODY_ERRORS}}},
    "/templates/{name}/trigger": {"post": {
        "summary": "Webhook: start a run; the JSON body is its parameters. An "
                   "Idempotency-Key header makes a repeated delivery start one run",
        "operationId": "triggerTemplate",
        # The optional `Idempotency-Key` header (1..200 printable ASCII characters) is
        # described, not declared: HTTP strips a header's outer spaces, so no schema of it
        # could tell a fuzzer's valid values from its invalid ones.
        "description": "Header `Idempotency-Key` (optional, 1..200 printable ASCII "
                       "characters): the same key starts one run; repeats answer 200.",
        "parameters": [_TEMPLATE],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": True}}}},
        "responses": {"201": _json("Stored and queued", "Submitted"),
                      "200": _json("The run this Idempotency-Key started", "Submitted"),
                      "400": _problem("Parameters that do not fit (each named)"),
                      "404": _NO_TEMPLATE, **_BODY_ERRORS}}},
    "/triggers": {"get": {
        "summary": "Every stored trigger", "operationId": "listTriggers",
        "responses": {"200": _json("The triggers", "TriggerList"), "503": _UNAVAILABLE}}},
    "/triggers/{trigger}": {
        "put": {"summary": "Store a trigger: new objects under an S3 prefix, or the success "
                           "of another stored DAG's run, start `template`",
                "operationId": "putTrigger", "parameters": [_TRIGGER],
                "requestBody": _body("TriggerBody"),
                "responses": {"200": _json("Replaced", "Trigger"),
                              "201": _json("Created", "Trigger"), "400": _problem(
                                  "Invalid trigger: unknown {{ trigger.* }} references, "
                                  "parameters the stored DAG does not declare, a bucket "
                                  "not allowed, a DAG triggering itself"),
                              "404": _NO_TEMPLATE,
                              "409": _problem("The trigger exists with another source, "
                                              "or there are too many triggers (200)"),
                              **_BODY_ERRORS}},
        "get": {"summary": "A trigger", "operationId": "getTrigger", "parameters": [_TRIGGER],
                "responses": {"200": _json("The trigger", "Trigger"),
                              "404": _problem("No such trigger"), "503": _UNAVAILABLE}},
        "delete": {"summary": "Remove a trigger (and its record of what it fired)",
                   "operationId": "deleteTrigger", "parameters": [_TRIGGER],
                   "responses": {"204": {"description": "Removed"},
                                 "404": _problem("No such trigger"), "503": _UNAVAILABLE}},
    },
}
