"""The records of schedules, backfills and triggers: what a client sends, what is stored.

Owned by the api service (see `helios.keys`). Models are validated on the way in (a bad
body is a 400 naming the field) and on the way out of Valkey (a record that does not
decode is an error, never passed through).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator

from helios.schedules.cron import Cron, CronError, parse_cron
from helios.schedules.plan import MAX_CATCHUP, Policy, Spec

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # a DNS-1123 label, like dagName
MAX_BACKFILL_RUNS = 1000
MAX_PARALLEL = 50
# Every tick reads every schedule, every poll lists every object trigger's prefix: bounded.
MAX_SCHEDULES = 1000
MAX_TRIGGERS = 200
Params = dict[str, JsonValue]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


FIRST_YEAR, LAST_YEAR = 1970, 9000  # cron arithmetic stays far from datetime's limits


def _in_range(value: datetime | None, name: str) -> None:
    if value is None:
        return
    try:
        year = value.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"'{name}' must be between the years {FIRST_YEAR} and {LAST_YEAR}")


class ScheduleBody(_Body):
    """`PUT /api/v1/templates/{name}/schedule`."""

    cron: str = Field(min_length=1, max_length=120,
                      description="5 fields, or 6 with seconds first, or @daily etc.")
    timezone: str = Field("UTC", min_length=1, max_length=64, description="IANA zone name.")
    catchup: bool = Field(True, description="After downtime, run every missed time "
                                            "(bounded by maxCatchup); false: only the latest.")
    max_catchup: int = Field(10, ge=1, le=MAX_CATCHUP, alias="maxCatchup")
    concurrency_policy: Policy = Field(Policy.ALLOW, alias="concurrencyPolicy")
    start: AwareDatetime | None = Field(None, description="No time before this fires.")
    end: AwareDatetime | None = Field(None, description="No time after this fires.")
    paused: bool = False
    params: Params = Field(default_factory=dict, description="Parameters of every run.")

    @model_validator(mode="after")
    def _valid(self) -> ScheduleBody:
        try:
            parse_cron(self.cron, self.timezone)
        except CronError as exc:
            raise ValueError(str(exc)) from None
        _in_range(self.start, "start")
        _in_range(self.end, "end")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def parsed(self) -> Cron:
        return parse_cron(self.cron, self.timezone)

    def spec(self) -> Spec:
        return Spec(cron=self.parsed(), catchup=self.catchup, max_catchup=self.max_catchup,
                    policy=self.concurrency_policy, start=self.start, end=self.end,
                    paused=self.paused)


class ScheduleRecord(_Body):
    template: str
    body: ScheduleBody
    created_at: float = Field(alias="createdAt")
    updated_at: float = Field(alias="updatedAt")


class ScheduleState(BaseModel):
    """Written only by the firing loop (and reset by create/resume)."""

    model_config = ConfigDict(populate_by_name=True)

    cursor: float = Field(description="The newest scheduled time handled (epoch seconds).")
    last_run_id: str | None = Field(None, alias="lastRunId")
    last_time: float | None = Field(None, alias="lastTime")
    fired: int = 0
    skipped: int = 0
    last_error: str | None = Field(None, alias="lastError")


class BackfillBody(_Body):
    """`POST /api/v1/templates/{name}/backfills`."""

    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to")
    max_parallel: int = Field(1, ge=1, le=MAX_PARALLEL, alias="maxParallel")
    params: Params = Field(default_factory=dict)
    rerun: bool = Field(False, description="Run times that already ran again.")
    cron: str | None = Field(None, min_length=1, max_length=120,
                             description="Times to run; default: the template's schedule.")
    timezone: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _valid(self) -> BackfillBody:
        _in_range(self.start, "from")
        _in_range(self.end, "to")
        if self.end < self.start:
            raise ValueError("'to' must not be before 'from'")
        if self.cron is not None:
            try:
                parse_cron(self.cron, self.timezone or "UTC")
            except CronError as exc:
                raise ValueError(str(exc)) from None
        return self


ItemState = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"]
DONE_ITEMS = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"})


class BackfillItem(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    time: datetime
    run_id: str = Field(alias="runId")
    state: ItemState = "PENDING"


class BackfillSpec(_Body):
    id: str
    template: str
    body: BackfillBody
    cron: str
    timezone: str
    created_at: float = Field(alias="createdAt")


BackfillState = Literal["RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"]


def backfill_view(spec: BackfillSpec, items: list[BackfillItem], state: str,
                  ended_at: float | None) -> dict[str, Any]:
    counts = {s: 0 for s in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED",
                             "SKIPPED")}
    for item in items:
        counts[item.state] += 1
    return {
        "id": spec.id, "template": spec.template, "state": state,
        "from": spec.body.start.isoformat(), "to": spec.body.end.isoformat(),
        "cron": spec.cron, "timezone": spec.timezone, "maxParallel": spec.body.max_parallel,
        "rerun": spec.body.rerun, "params": spec.body.params, "createdAt": spec.created_at,
        "endedAt": ended_at, "total": len(items),
        "progress": {k.lower(): v for k, v in counts.items()},
        "runs": [{"time": i.time.isoformat(), "runId": i.run_id, "state": i.state}
                 for i in items],
    }


class ObjectSource(_Body):
    kind: Literal["objects"]
    prefix: str = Field(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$",
                        description="Key prefix watched for new objects.")
    bucket: str | None = Field(None, min_length=3, max_length=63,
                               pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                               description="Default: the artifacts bucket.")
    existing: bool = Field(False, description=(
        "Also start runs for the objects already under the prefix when the trigger is "
        "created. Default: only objects written from then on (within a few seconds of "
        "clock skew between the API and the object store) start runs."))


class SuccessSource(_Body):
    kind: Literal["runSucceeded"]
    template: str = Field(pattern=NAME_PATTERN, max_length=63,
                          description="The stored DAG whose successful runs fire this one.")


Source = Annotated[ObjectSource | SuccessSource, Field(discriminator="kind")]


class TriggerBody(_Body):
    """`PUT /api/v1/triggers/{name}`: start `template` when `source` says so."""

    template: str = Field(pattern=NAME_PATTERN, max_length=63)
    source: Source
    params: Params = Field(default_factory=dict, description=(
        "Parameters of each run; strings may use {{ trigger.key }}, {{ trigger.etag }}, "
        "{{ trigger.digest }}, {{ trigger.sha256 }}, {{ trigger.bucket }}, {{ trigger.size }}, "
        "{{ trigger.lastModified }} (objects) or {{ trigger.runId }}, {{ trigger.template }}, "
        "{{ trigger.logicalTime }} (runSucceeded)."))


class TriggerRecord(_Body):
    name: str
    body: TriggerBody
    created_at: float = Field(alias="createdAt")


TRIGGER_FIELDS = {
    "objects": ("key", "etag", "digest", "sha256", "bucket", "size", "lastModified"),
    "runSucceeded": ("runId", "template", "logicalTime"),
}
