"""Declared parameters of a DAG and the values a run gives them (pure: no I/O).

A DAG declares `params:`, a list of `{name, type, default, description, enum, pattern}`;
`type` is string (the default), int, number, bool or list. A parameter without a default
(or with `default: null`) is required. A run supplies values as JSON; a string given for
an int, number, bool or list parameter is read as that type's text form (`-p n=5` on the
command line): `5`, `0.5`, `true`/`false`, a JSON array or comma-separated items.
Anything else of the wrong type is an error naming the parameter.

`pattern` (string parameters) must match the whole value. It is run by the Rust regex
engine pydantic ships (linear time, no look-arounds or back-references): a submitted
pattern cannot stall the API with catastrophic backtracking.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic_core import SchemaError, SchemaValidator, ValidationError, core_schema

PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_PARAMS = 100
MAX_STRING = 65_536
MAX_LIST = 10_000
MAX_VALUES_BYTES = 256 * 1024  # all of a run's values, JSON-encoded
MAX_PATTERN = 512
ParamType = Literal["string", "int", "number", "bool", "list"]
_INT_TEXT = re.compile(r"-?[0-9]{1,18}")


class ParamSpec(BaseModel):
    """One declared parameter."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, strict=True)

    name: str = Field(min_length=1, max_length=128, pattern=PARAM_NAME,
                      description="Referenced as {{ params.NAME }}.")
    type: ParamType = Field(default="string", description="string, int, number, bool or list.")
    default: JsonValue = Field(default=None,
                               description="The value when a run gives none; none: required.")
    description: str = Field(default="", max_length=2048)
    enum: list[JsonValue] | None = Field(default=None, min_length=1, max_length=256,
                                         description="The only values allowed.")
    pattern: str | None = Field(default=None, min_length=1, max_length=MAX_PATTERN,
                                description="A regex a string value must match whole "
                                            "(Rust regex syntax: no look-arounds).")

    @property
    def required(self) -> bool:
        return self.default is None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.pattern is not None:
            if self.type != "string":
                raise ValueError("pattern applies to string parameters only")
            _pattern(self.pattern)  # raises ValueError when it does not compile
        if self.enum is not None:
            for i, item in enumerate(self.enum):
                problem = _type_problem(self.type, item)
                if problem:
                    raise ValueError(f"enum[{i}] {problem}")
        if self.default is not None:
            try:
                check_value(self, self.default)
            except ValueError as exc:
                raise ValueError(f"default: {exc}") from None
        return self


@dataclass(frozen=True, slots=True)
class ParamProblem:
    name: str
    reason: str


class ParamError(ValueError):
    """The supplied values do not fit the declared parameters; every problem is listed."""

    def __init__(self, problems: list[ParamProblem]):
        self.problems = problems[:100]
        super().__init__("; ".join(f"params.{p.name}: {p.reason}" for p in self.problems[:10]))


@lru_cache(maxsize=256)
def _pattern(pattern: str) -> SchemaValidator:
    try:
        return SchemaValidator(core_schema.str_schema(pattern=f"^(?:{pattern})$",
                                                      regex_engine="rust-regex"))
    except SchemaError as exc:
        first = str(exc).strip().splitlines()[-1][:200]
        raise ValueError(f"pattern does not compile: {first}") from None


def _type_problem(kind: ParamType, value: object) -> str | None:
    """Why `value` (already decoded) is not of `kind`, or None."""
    if kind == "string":
        if not isinstance(value, str):
            return f"must be a string, not {_json_type(value)}"
        if len(value) > MAX_STRING:
            return f"longer than {MAX_STRING} characters"
        if "\x00" in value:
            return "must not contain NUL"
        return None
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
        return None if ok else f"must be an integer (64-bit), not {_json_type(value)}"
    if kind == "number":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value))
        return None if ok else f"must be a number, not {_json_type(value)}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"must be true or false, not {_json_type(value)}"
    if not isinstance(value, list):
        return f"must be a list, not {_json_type(value)}"
    if len(value) > MAX_LIST:
        return f"has {len(value)} items; at most {MAX_LIST} allowed"
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def from_text(kind: ParamType, text: str) -> object:
    """A value given as text (`-p name=text`) read as `kind`; ValueError if it is not one."""
    if kind == "string":
        return text
    if kind == "int":
        if _INT_TEXT.fullmatch(text.strip()):
            return int(text)
        raise ValueError(f"must be an integer, not {text[:40]!r}")
    if kind == "number":
        try:
            number = float(text) if _INT_TEXT.fullmatch(text.strip()) is None else int(text)
        except ValueError:
            raise ValueError(f"must be a number, not {text[:40]!r}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"must be a finite number, not {text[:40]!r}")
        return number
    if kind == "bool":
        if text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        raise ValueError(f"must be true or false, not {text[:40]!r}")
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            decoded = json.loads(stripped)
        except ValueError:
            raise ValueError(f"is not a JSON list: {text[:40]!r}") from None
        if isinstance(decoded, list):
            return decoded
    return [] if not stripped else [item.strip() for item in stripped.split(",")]


def check_value(spec: ParamSpec, value: object) -> object:
    """The value, converted from text when a string is given for a non-string type;
    ValueError with the reason when it does not fit the declaration."""
    if isinstance(value, str) and spec.type != "string":
        value = from_text(spec.type, value)
    elif spec.type == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 5.0 is the integer 5
    problem = _type_problem(spec.type, value)
    if problem:
        raise ValueError(problem)
    if spec.enum is not None and not any(_same(value, item) for item in spec.enum):
        shown = ", ".join(json.dumps(item)[:40] for item in spec.enum[:20])
        raise ValueError(f"must be one of {shown}")
    if spec.pattern is not None:
        try:
            _pattern(spec.pattern).validate_python(value)
        except ValidationError:
            raise ValueError(f"does not match the pattern {spec.pattern[:100]!r}") from None
    return value


def _same(a: object, b: object) -> bool:
    # 1 == True in Python; JSON tells them apart.
    return (type(a) is type(b) and a == b) or (
        isinstance(a, int | float) and isinstance(b, int | float)
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def resolve(specs: Sequence[ParamSpec], supplied: Mapping[str, object]) -> dict[str, Any]:
    """Every declared parameter's value for one run: supplied values checked and
    converted, defaults for the others. Raises ParamError listing every problem."""
    problems: list[ParamProblem] = []
    declared = {spec.name: spec for spec in specs}
    for name in supplied:
        if name not in declared:
            known = ", ".join(declared) or "none"
            problems.append(ParamProblem(str(name)[:128],
                                         f"no such parameter (declared: {known})"))
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.name in supplied:
            try:
                values[spec.name] = check_value(spec, supplied[spec.name])
            except ValueError as exc:
                problems.append(ParamProblem(spec.name, str(exc)))
        elif spec.required:
            problems.append(ParamProblem(spec.name, "required parameter has no value"
                                         + (f" ({spec.description[:100]})" if spec.description else "")))
        else:
            values[spec.name] = spec.default
    if not problems:
        size = len(json.dumps(values, ensure_ascii=False))
        if size > MAX_VALUES_BYTES:
            problems.append(ParamProblem("*", f"the values take {size} bytes; at most "
                                              f"{MAX_VALUES_BYTES} allowed"))
    if problems:
        raise ParamError(problems)
    return values


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """`name=value` strings (the CLI's `-p` and the `param` query parameter) as a mapping;
    ValueError for an item without `=` or with a bad name. The last of a repeated name wins."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or re.fullmatch(PARAM_NAME, name) is None:
            raise ValueError(f"{item[:60]!r} is not NAME=VALUE (NAME: letters, digits, '_')")
        out[name] = value
    return out
