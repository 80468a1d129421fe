"""Pydantic models of the v1 DAG document.

Field-level rules live here; rules that need the whole document (unknown
dependencies, cycles, which output an input refers to) live in `graph.py`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from helios.params import MAX_PARAMS, ParamSpec

MAX_TASKS = 1000
MAX_INSTANCES = 10_000  # instances of one mapped task (forEach)
MAX_EXIT_TASKS = 100
MAX_WHEN = 4096
TRIGGER_RULES = ("all_succeeded", "all_done", "any_failed", "none_failed")
MAX_RETRIES = 20
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_INT64 = 2**63 - 1  # Kubernetes' integers; nothing bigger can be stored or sent on

# Every pattern here is checked with `re.fullmatch` (never `re.match`: `$` also matches
# before a trailing newline, so "FOO\n" would pass) and published as is in the OpenAPI
# document, where JSON Schema anchors it with ^...$: one string, one meaning, so a
# schema-driven client never gets a surprise 400. They avoid look-arounds, which
# pydantic's regex engine lacks, and use escapes both Python and ECMA-262 read alike.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Environment variable names as POSIX shells accept them; HELIOS_* is ours.
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_ENV_PREFIX = "HELIOS_"
# Image references are ASCII (OCI distribution); `\s` would differ between regex engines.
IMAGE = r"^[!-~]+$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"

# Characters a name must never carry (Unicode 14, as Python 3.11 ships it): controls (Cc),
# format characters (Cf: bidi overrides U+202A-U+202E and isolates U+2066-U+2069, zero
# widths, the BOM), line and paragraph separators (Zl, Zp). A newline in an output name
# would let a task forge `[HELIOS]` lines in its log; a bidi override makes a name read
# differently from what it is. Lone surrogates (Cs) are refused too, but left out of the
# published pattern: Rust-based schema validators cannot compile that range, and no
# valid UTF-8 document carries one.
# A unit test checks the list against the running Python's unicodedata.
HIDDEN_CHARS: tuple[tuple[int, int], ...] = (
    (0x0, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
    (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F),
    (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)


def _char(cp: int) -> str:
    # \uXXXX reads the same in Python, Rust and ECMA-262 regexes; astral characters are
    # written literally (ECMA-262 would need \u{...}, Python \U........).
    return f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp)


_HIDDEN = "".join(_char(a) if a == b else f"{_char(a)}-{_char(b)}" for a, b in HIDDEN_CHARS)
# A file name: no '/' or '\\', no hidden character, no '..' anywhere, not '.', not a
# leading '-'. Written without look-aheads: a first character that is neither '.' nor '-'
# or a '.' followed by a plain one, then plain characters each optionally after one '.'.
_PLAIN = f"[^/\\\\.{_HIDDEN}]"
_FIRST = f"[^/\\\\.\\-{_HIDDEN}]"
FILE_NAME = f"^(?:{_FIRST}|\\.{_PLAIN})(?:\\.?{_PLAIN})*\\.?$"
MAX_FILE_NAME = 255
NO_NUL = r"^[^\u0000]*$"
# command[0] is the program: some character other than ASCII whitespace, no NUL.
PROGRAM = r"^[^\u0000]*[^\u0000\t\n\v\f\r ][^\u0000]*$"

_DNS1123_RE = re.compile(DNS1123_LABEL)
_ENV_NAME_RE = re.compile(ENV_NAME)
_FILE_NAME_RE = re.compile(FILE_NAME)
_HIDDEN_RE = re.compile(f"[{_HIDDEN}\\ud800-\\udfff]")  # lone surrogates too, here
_PROGRAM_RE = re.compile(PROGRAM)


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and _DNS1123_RE.fullmatch(value) is not None


Name = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
Quantity = Annotated[str, StringConstraints(max_length=32, pattern=QUANTITY)]
# The NUL checks run in validators (precise messages); the schema states the same rule.
Arg = Annotated[str, StringConstraints(max_length=65536), WithJsonSchema(
    {"type": "string", "maxLength": 65536, "pattern": NO_NUL})]
CommandItem = Annotated[str, StringConstraints(min_length=1, max_length=65536), WithJsonSchema(
    {"type": "string", "minLength": 1, "maxLength": 65536, "pattern": NO_NUL})]
EnvValue = Annotated[str, StringConstraints(max_length=65536), WithJsonSchema(
    {"type": "string", "maxLength": 65536, "pattern": NO_NUL})]
FILE_NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_FILE_NAME,
                    "pattern": FILE_NAME,
                    "description": "A plain file name: no '/', '\\', '..', control or format "
                                   "characters, not '.', not starting with '-'."}


def check_file_name(value: str) -> str:
    """A plain file name placed under /artifacts: no path tricks, no option look-alikes,
    nothing hidden. Accepts exactly what FILE_NAME (plus the length bound) accepts."""
    if not value:
        raise ValueError("file name must not be empty")
    if len(value) > MAX_FILE_NAME:
        raise ValueError(f"file name longer than {MAX_FILE_NAME} characters")
    if "\x00" in value:
        raise ValueError("file name must not contain NUL")
    if "/" in value or "\\" in value:
        raise ValueError(f"file name {value!r} must not contain '/'")
    if value in (".", "..") or ".." in value:
        raise ValueError(f"file name {value!r} must not contain '..'")
    if value.startswith("-"):
        raise ValueError(f"file name {value!r} must not start with '-'")
    hidden = _HIDDEN_RE.search(value)
    if hidden:
        raise ValueError(f"file name {value!r} must not contain control or format characters "
                         f"(U+{ord(hidden.group()):04X})")
    if _FILE_NAME_RE.fullmatch(value) is None:  # unreachable if the checks above are complete
        raise ValueError(f"file name {value!r} is not a plain file name")
    return value


FileName = Annotated[str, AfterValidator(check_file_name), WithJsonSchema(FILE_NAME_SCHEMA)]


def _integral(value: Any) -> Any:
    """JSON has one number type: 15.0 is the integer 15 (JSON Schema says so too). Only
    integral floats are let through; "15", true and 15.5 still fail the strict check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def json_int(lo: int, hi: int | None = None) -> Any:
    """A bounded integer field that takes integral floats. The schema is written out:
    pydantic would publish the bounds of a before-validated type as unknown keywords."""
    schema: dict[str, Any] = {"type": "integer", "minimum": lo}
    if hi is not None:
        schema["maximum"] = hi
    return Annotated[int, BeforeValidator(_integral), Field(ge=lo, le=hi), WithJsonSchema(schema)]


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, strict=True)


class InputSpec(Strict):
    from_task: Name = Field(alias="fromTask", description="The producing task.")
    name: FileName = Field(description="File name placed at /artifacts/{name}.")
    artifact: FileName | None = Field(
        default=None,
        description="The producer's output to use; optional when the producer has one output.",
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
    toleration_seconds: json_int(0, MAX_INT64) | None = Field(  # type: ignore[valid-type]
        default=None, alias="tolerationSeconds")


PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# `forEach: "{{ params.models }}"` is read as `forEach: {param: models}`.
_PARAM_REF = re.compile(r"\{\{\s*params\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class ForEachParam(Strict):
    param: str = Field(max_length=128, pattern=PARAM_NAME,
                       description="A list parameter of the run: one instance per item.")


class ForEachFrom(Strict):
    from_task: Name = Field(alias="fromTask", description="The upstream task that wrote the list.")
    artifact: FileName | None = Field(
        default=None, description="Its output holding a JSON list; optional with one output.")


def _for_each_ref(value: Any) -> Any:
    if isinstance(value, str):
        match = _PARAM_REF.fullmatch(value.strip())
        if match is None:
            raise ValueError("a string forEach must be a parameter reference: {{ params.NAME }}")
        return {"param": match.group(1)}
    return value


# The bound is checked by `Task._items_bound` (one clear message); the schema states it.
ItemList = Annotated[list[JsonValue], WithJsonSchema(
    {"type": "array", "maxItems": MAX_INSTANCES, "items": {}})]
ForEach = Annotated[
    ItemList | ForEachParam | ForEachFrom,
    BeforeValidator(_for_each_ref),
    Field(description="Map over items: a literal list (at most 10000), {param: NAME} or "
                      "\"{{ params.NAME }}\" (a list parameter), or {fromTask, artifact} (a "
                      "JSON list an upstream task wrote). One instance `task[i]` per item."),
]


class Task(Strict):
    name: Name
    image: str = Field(min_length=1, max_length=512, pattern=IMAGE,
                       description="A container image reference: visible ASCII, no spaces.")
    command: list[CommandItem] = Field(
        min_length=1, max_length=4096,
        json_schema_extra={"prefixItems": [
            {"type": "string", "maxLength": 65536, "pattern": PROGRAM}]},
        description="The program and its arguments; no item is empty, the program not blank.",
    )
    args: list[Arg] = Field(default_factory=list, max_length=4096)
    env: dict[str, EnvValue] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": {
            "type": "string", "pattern": ENV_NAME,
            "not": {"type": "string", "pattern": f"^{RESERVED_ENV_PREFIX}"}}},
        description=f"Variable names are shell names; the {RESERVED_ENV_PREFIX} prefix is reserved.",
    )
    depends_on: list[Name] = Field(default_factory=list, alias="depends_on")
    inputs: list[InputSpec] = Field(default_factory=list, max_length=1000)
    outputs: list[FileName] = Field(
        default_factory=list, max_length=1000, json_schema_extra={"uniqueItems": True}
    )
    retries: json_int(0, MAX_RETRIES) = 0  # type: ignore[valid-type]
    timeout_seconds: json_int(1, MAX_TIMEOUT_SECONDS) | None = Field(  # type: ignore[valid-type]
        default=None, alias="timeoutSeconds"
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
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, alias="imagePullPolicy",
        description="Kubernetes only; unset: HELIOS_K8S_IMAGE_PULL_POLICY, else Kubernetes' rule.",
    )
    env_from_secrets: list[Name] = Field(
        default_factory=list, alias="envFromSecrets", max_length=16
    )
    for_each: ForEach | None = Field(default=None, alias="forEach")
    max_parallel: json_int(1, MAX_INSTANCES) | None = Field(  # type: ignore[valid-type]
        default=None, alias="maxParallel",
        description="At most this many instances of a forEach task run at once.")
    when: str | None = Field(
        default=None, min_length=1, max_length=MAX_WHEN,
        description="A CEL condition over params.NAME and tasks.NAME.state|exitCode|result; "
                    "false makes the task SKIPPED.")
    trigger: Literal["all_succeeded", "all_done", "any_failed", "none_failed"] = Field(
        default="all_succeeded", description="When the task may run, given its dependencies.")

    @field_validator("command")
    @classmethod
    def _command_not_blank(cls, value: list[str]) -> list[str]:
        if any("\x00" in part for part in value):
            raise ValueError("command must not contain NUL")
        if _PROGRAM_RE.fullmatch(value[0]) is None:
            raise ValueError("command[0] (the program) must not be empty")
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
            if _ENV_NAME_RE.fullmatch(key) is None:
                raise ValueError(f"env name {key!r} is not a valid variable name")
            if key.startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"env name {key!r} is reserved (HELIOS_ prefix)")
            if "\x00" in val:
                raise ValueError(f"env {key!r} must not contain NUL")
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: list[str]) -> list[str]:
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

    @field_validator("for_each")
    @classmethod
    def _items_bound(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_INSTANCES:
            raise ValueError(f"forEach has {len(value)} items; at most {MAX_INSTANCES} allowed")
        return value

    @property
    def dependencies(self) -> list[str]:
        """Explicit dependencies plus the producers of inputs, in first-seen order."""
        seen: dict[str, None] = dict.fromkeys(self.depends_on)
        for spec in self.inputs:
            seen.setdefault(spec.from_task, None)
        if isinstance(self.for_each, ForEachFrom):
            seen.setdefault(self.for_each.from_task, None)
        return list(seen)


INSTANCE_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\[(0|[1-9][0-9]{0,4})\])?$"


class RunTask(Task):
    """A task as dispatched: an instance of a forEach task is named `task[i]` and carries
    its rendered command; every other task is dispatched as written."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=70,  # type: ignore[assignment]
                                           pattern=INSTANCE_NAME)]


class Dag(Strict):
    api_version: Literal["v1"] = Field(alias="apiVersion")
    dag_name: Name = Field(alias="dagName")
    use_cache: bool = Field(default=True, alias="useCache")
    params: list[ParamSpec] = Field(
        default_factory=list, max_length=MAX_PARAMS,
        description="Declared parameters, referenced as {{ params.NAME }} in command, args, env.")
    tasks: list[Task] = Field(min_length=1, max_length=MAX_TASKS)
    on_exit: list[Task] = Field(
        default_factory=list, alias="onExit", max_length=MAX_EXIT_TASKS,
        description="Tasks run after every other task is terminal, whatever the result.")

    @cached_property
    def all_tasks(self) -> list[Task]:
        """The tasks, then the exit handlers (`onExit`)."""
        return [*self.tasks, *self.on_exit]

    @cached_property
    def by_name(self) -> dict[str, Task]:
        return {t.name: t for t in self.all_tasks}

    def task(self, name: str) -> Task:
        return self.by_name[name]

    @cached_property
    def children(self) -> dict[str, list[str]]:
        """Task name -> the tasks that depend on it directly (computed once per DAG)."""
        out: dict[str, list[str]] = {t.name: [] for t in self.all_tasks}
        for task in self.all_tasks:
            for dep in task.dependencies:
                if dep in out:
                    out[dep].append(task.name)
        return out

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_defaults=False, mode="json")
