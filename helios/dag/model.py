"""Pydantic models of the v1 DAG document.

Field-level rules live here; rules that need the whole document (unknown
dependencies, cycles, which output an input refers to) live in `graph.py`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

MAX_TASKS = 1000
MAX_RETRIES = 20
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Environment variable names as POSIX shells accept them; HELIOS_* is ours.
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"

def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and re.match(DNS1123_LABEL, value) is not None


Name = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
Quantity = Annotated[str, StringConstraints(max_length=32, pattern=QUANTITY)]
Arg = Annotated[str, StringConstraints(max_length=65536)]


def check_file_name(value: str) -> str:
    """A plain file name placed under /artifacts: no path tricks, no option look-alikes."""
    if not value:
        raise ValueError("file name must not be empty")
    if len(value) > 255:
        raise ValueError("file name longer than 255 characters")
    if "\x00" in value:
        raise ValueError("file name must not contain NUL")
    if "/" in value or "\\" in value:
        raise ValueError(f"file name {value!r} must not contain '/'")
    if value in (".", "..") or ".." in value:
        raise ValueError(f"file name {value!r} must not contain '..'")
    if value.startswith("-"):
        raise ValueError(f"file name {value!r} must not start with '-'")
    return value


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, strict=True)


class InputSpec(Strict):
    from_task: Name = Field(alias="fromTask", description="The producing task.")
    name: str = Field(description="File name placed at /artifacts/{name}.")
    artifact: str | None = Field(
        default=None,
        description="The producer's output to use; optional when the producer has one output.",
    )

    _check_name = field_validator("name", "artifact")(
        lambda v: v if v is None else check_file_name(v)
    )


class ResourceList(Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(Strict):
    requests: ResourceList | None = None
    limits: ResourceList | None = None


class Toleration(Strict):
    key: str | None = Field(default=None, max_length=253)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds", ge=0)


class Task(Strict):
    name: Name
    image: str = Field(min_length=1, max_length=512, pattern=r"^[^\s]+$")
    command: list[Arg] = Field(min_length=1, max_length=4096)
    args: list[Arg] = Field(default_factory=list, max_length=4096)
    env: dict[str, Annotated[str, StringConstraints(max_length=65536)]] = Field(
        default_factory=dict
    )
    depends_on: list[Name] = Field(default_factory=list, alias="depends_on")
    inputs: list[InputSpec] = Field(default_factory=list, max_length=1000)
    outputs: list[str] = Field(default_factory=list, max_length=1000)
    retries: int = Field(default=0, ge=0, le=MAX_RETRIES)
    timeout_seconds: int | None = Field(
        default=None, alias="timeoutSeconds", ge=1, le=MAX_TIMEOUT_SECONDS
    )
    resources: Resources | None = None
    node_selector: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, alias="nodeSelector"
    )
    cache: bool = Field(default=True, description="Per-task opt-out of the node cache.")
    memoize: bool = Field(default=False, description="Reuse an earlier identical attempt.")
    cache_version: str | None = Field(default=None, alias="cacheVersion", max_length=128)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    service_account_name: Name | None = Field(default=None, alias="serviceAccountName")
    image_pull_secrets: list[Name] = Field(
        default_factory=list, alias="imagePullSecrets", max_length=16
    )
    env_from_secrets: list[Name] = Field(
        default_factory=list, alias="envFromSecrets", max_length=16
    )

    @field_validator("command")
    @classmethod
    def _command_not_blank(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("command[0] (the program) must not be empty")
        if any("\x00" in part for part in value):
            raise ValueError("command must not contain NUL")
        return value

    @field_validator("args")
    @classmethod
    def _args_no_nul(cls, value: list[str]) -> list[str]:
        if any("\x00" in part for part in value):
            raise ValueError("args must not contain NUL")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not re.match(ENV_NAME, key):
                raise ValueError(f"env name {key!r} is not a valid variable name")
            if key.startswith("HELIOS_"):
                raise ValueError(f"env name {key!r} is reserved (HELIOS_ prefix)")
            if "\x00" in val:
                raise ValueError(f"env {key!r} must not contain NUL")
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: list[str]) -> list[str]:
        for item in value:
            check_file_name(item)
        if len(set(value)) != len(value):
            raise ValueError("outputs must not repeat a file name")
        return value

    @model_validator(mode="after")
    def _inputs_unique(self) -> Task:
        names = [i.name for i in self.inputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"inputs place the same file twice: {', '.join(dupes)}")
        return self

    @property
    def dependencies(self) -> list[str]:
        """Explicit dependencies plus the producers of inputs, in first-seen order."""
        seen: dict[str, None] = dict.fromkeys(self.depends_on)
        for spec in self.inputs:
            seen.setdefault(spec.from_task, None)
        return list(seen)


class Dag(Strict):
    api_version: Literal["v1"] = Field(alias="apiVersion")
    dag_name: Name = Field(alias="dagName")
    use_cache: bool = Field(default=True, alias="useCache")
    tasks: list[Task] = Field(min_length=1, max_length=MAX_TASKS)

    @cached_property
    def by_name(self) -> dict[str, Task]:
        return {t.name: t for t in self.tasks}

    def task(self, name: str) -> Task:
        return self.by_name[name]

    @cached_property
    def children(self) -> dict[str, list[str]]:
        """Task name -> the tasks that depend on it directly (computed once per DAG)."""
        out: dict[str, list[str]] = {t.name: [] for t in self.tasks}
        for task in self.tasks:
            for dep in task.dependencies:
                if dep in out:
                    out[dep].append(task.name)
        return out

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_defaults=False, mode="json")
