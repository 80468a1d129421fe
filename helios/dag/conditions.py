"""`when:` conditions: CEL expressions, compiled once, evaluated without running any code.

CEL (the language Kubernetes uses for validation rules) has no I/O, no loops beyond
macros over given lists, and no way to call into Python: `common-expression-language`
(Rust bindings) parses and evaluates it. An expression sees

- `params.NAME`: the run's parameter values,
- `tasks.NAME.state`, `tasks.NAME.exitCode`, `tasks.NAME.result` for upstream tasks
  (`tasks['list-shards']` for names with '-': CEL reads `a-b` as a subtraction),
- in exit handlers also `run.status` and `run.failedTasks`.

References are checked at submission (`references`): only declared parameters and
upstream tasks. To keep evaluation linear in the data a task may return (`result`, at
most 64 KiB), an expression holds at most one macro (`map`, `filter`, `all`, `exists`).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cel

MAX_MACROS = 1
# A macro's cost grows with the items it walks, and faster than linearly when its body
# copies a list (`l.map(x, l)` over 1,000 items took 30 s on the scheduler's loop): a
# condition with a macro may see at most this many list items in all (0.4 s at worst).
MAX_MACRO_ITEMS = 256
_MACRO = re.compile(r"\.\s*(map|filter|all|exists|exists_one)\s*\(")
_BINDER = re.compile(r"\.\s*(?:map|filter|all|exists|exists_one)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
# String literals (CEL quotes, raw and triple forms are rare; these cover the usual ones)
# and `//` comments, scanned left to right together: a comment must not hide a macro
# (`.//\nmap(`), nor a string's `//` start a comment. A raw string ends at its first
# quote (`r'\'` is one backslash): read as an escape, it would blank the code after it.
_STRING = re.compile(r"(?:[bB]?[rR]|[rR][bB])(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|\"[^\"\n]*\")|"
                     r"'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""
                     r"|//[^\n]*", re.DOTALL)
_ROOT = re.compile(r"(?<![\w.])(params|tasks|run)\b")
_MEMBER = re.compile(r"\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)|\s*\[\s*('[^'\\]*'|\"[^\"\\]*\")\s*\]")


# Never swallowed: stopping and cancellation go through.
_OURS = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit)


class ConditionError(ValueError):
    """The condition does not parse, refers to something unknown, or did not give a bool."""


@dataclass(frozen=True)
class References:
    params: frozenset[str] = field(default_factory=frozenset)
    tasks: frozenset[str] = field(default_factory=frozenset)
    run: bool = False
    # The tasks whose `result` the condition may read: `tasks.X.result`, or `tasks.X` taken
    # whole (a forEach task's result is its instances' results, read only when needed).
    results: frozenset[str] = field(default_factory=frozenset)


@lru_cache(maxsize=2048)
def compile_condition(text: str) -> cel.Program:
    try:
        return cel.compile(text)
    except _OURS:
        raise
    except BaseException as exc:  # a Rust panic surfaces as pyo3's PanicException
        raise ConditionError(_short(str(exc))) from None


def _code_only(text: str) -> str:
    """The condition with its strings and comments blanked out (same length)."""
    return _STRING.sub(lambda m: " " * len(m.group()), text)


@lru_cache(maxsize=2048)
def references(text: str) -> References:
    """The parameters and tasks the condition names; raises ConditionError if it does not
    parse, names them in a form we cannot check, or uses more than one macro."""
    program = compile_condition(text)
    code = _code_only(text)
    if len(_MACRO.findall(code)) > MAX_MACROS:
        raise ConditionError(f"at most {MAX_MACROS} macro (map, filter, all, exists) per condition")
    # Every free name must be one we provide (a macro's own variable is bound by it).
    bound = set(_BINDER.findall(code))
    unknown = sorted(set(program.variables()) - {"params", "tasks", "run"} - bound)
    if unknown:
        raise ConditionError(f"unknown name {unknown[0]!r}: a condition sees params, tasks"
                             " (and run, in onExit tasks)")
    params: set[str] = set()
    tasks: set[str] = set()
    results: set[str] = set()
    run = False
    for match in _ROOT.finditer(code):
        root = match.group(1)
        member = _MEMBER.match(text, match.end())
        if member is None:
            raise ConditionError(f"refer to {root} as {root}.NAME or {root}['NAME']")
        name = member.group(1) or member.group(2)[1:-1]
        if root == "params":
            params.add(name)
        elif root == "tasks":
            tasks.add(name)
            attr = _MEMBER.match(text, member.end())
            if attr is None or (attr.group(1) or attr.group(2)[1:-1]) == "result":
                results.add(name)
        else:
            if name not in ("status", "failedTasks"):
                raise ConditionError(f"run.{name} is unknown (run.status, run.failedTasks)")
            run = True
    return References(frozenset(params), frozenset(tasks), run, frozenset(results))


def _list_items(value: Any, budget: int) -> int:
    """How many list items `value` holds, at any depth (counting stops past `budget`)."""
    stack, seen = [value], 0
    while stack and seen <= budget:
        item = stack.pop()
        if isinstance(item, list):
            seen += len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return seen


def evaluate(text: str, context: dict[str, Any]) -> bool:
    """The condition's value in `context` (`params`, `tasks`, optionally `run`)."""
    program = compile_condition(text)
    if _MACRO.search(_code_only(text)):
        items = _list_items(context, MAX_MACRO_ITEMS)
        if items > MAX_MACRO_ITEMS:
            raise ConditionError(f"a condition with a macro may walk at most {MAX_MACRO_ITEMS}"
                                 f" list items in all; this one sees more than {MAX_MACRO_ITEMS}")
    try:
        value = program.execute(context)
    except _OURS:
        raise
    except BaseException as exc:  # KeyError, TypeError, ZeroDivisionError, a Rust panic...
        raise ConditionError(f"{type(exc).__name__}: {_short(str(exc))}") from None
    if not isinstance(value, bool):
        raise ConditionError(f"the condition gave {type(value).__name__} {_short(repr(value))},"
                             " not true or false")
    return value


def task_value(state: str, exit_code: int | None, result: Any) -> dict[str, Any]:
    """What `tasks.NAME` holds."""
    return {"state": state, "exitCode": exit_code, "result": result}


def _short(text: str) -> str:
    return " ".join(text.split())[:300]
