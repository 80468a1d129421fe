"""What a run was started from: the api's submission record and its one typed reader.

`dag:{dagId}:submission` (hash, written once by the api when the run is stored, in the
same MULTI as its definition) holds what the stored definition alone does not say:

- `params`: JSON object, the value of every declared parameter;
- `source`: the document as submitted (JSON), present only when rendering changed it
  (`dag:{dagId}:definition` is the rendered one); resubmit starts again from it;
- `logicalTime`: RFC 3339, `{{ run.logicalTime }}` (the submit time of an unscheduled run);
- `template`, `templateVersion`: the stored DAG and version the run came from, if any;
- `resubmitOf`: the run this one was resubmitted from, if any;
- any extra string fields a launcher adds (e.g. the schedule that fired it).
"""

from __future__ import annotations

from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from helios import keys


class SubmissionRecord(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    params: dict[str, Any] = Field(default_factory=dict)
    source: bytes | None = None
    logical_time: str | None = Field(default=None, alias="logicalTime")
    template: str | None = None
    template_version: int | None = Field(default=None, alias="templateVersion")
    resubmit_of: str | None = Field(default=None, alias="resubmitOf")
    extra: dict[str, str] = Field(default_factory=dict)

    def to_hash(self) -> dict[str, str | bytes]:
        out: dict[str, str | bytes] = {"params": orjson.dumps(self.params)}
        if self.source is not None:
            out["source"] = self.source
        for name, value in (("logicalTime", self.logical_time), ("template", self.template),
                            ("templateVersion", self.template_version),
                            ("resubmitOf", self.resubmit_of)):
            if value is not None:
                out[name] = str(value)
        for name, value in self.extra.items():
            out.setdefault(name, value)
        return out

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> SubmissionRecord:
        fields = {k.decode(): v for k, v in raw.items()}
        known = {"params", "source", "logicalTime", "template", "templateVersion", "resubmitOf"}
        version = fields.get("templateVersion")
        logical = fields.get("logicalTime")
        template = fields.get("template")
        resubmit = fields.get("resubmitOf")
        return cls(
            params=orjson.loads(fields["params"]) if "params" in fields else {},
            source=fields.get("source"),
            logical_time=logical.decode() if logical else None,
            template=template.decode() if template else None,
            template_version=int(version) if version else None,
            resubmit_of=resubmit.decode() if resubmit else None,
            extra={k: v.decode(errors="replace") for k, v in fields.items() if k not in known},
        )

    def summary(self) -> dict[str, Any]:
        """The JSON a run's status shows of it."""
        out: dict[str, Any] = {"params": self.params, "logicalTime": self.logical_time}
        if self.template is not None:
            out["template"] = {"name": self.template, "version": self.template_version}
        if self.resubmit_of is not None:
            out["resubmitOf"] = self.resubmit_of
        return out


async def read_submission(redis: aioredis.Redis, dag_id: str) -> SubmissionRecord | None:
    """The run's submission record; None for a run stored before records existed (or gone).
    Reads raw bytes whatever the client's decoding: `source` is a document."""
    raw = cast("dict[Any, Any]", await redis.hgetall(keys.submission(dag_id)))
    if not raw:
        return None
    as_bytes = {(k if isinstance(k, bytes) else k.encode()): (v if isinstance(v, bytes) else v.encode())
                for k, v in raw.items()}
    return SubmissionRecord.from_hash(as_bytes)
