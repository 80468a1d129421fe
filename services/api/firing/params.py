"""Parameters of triggered runs: `{{ trigger.NAME }}` inside a trigger's string values.

The same template syntax as DAG documents (`helios.templating`); only the `trigger` root
is known here (the template's own `{{ params.X }}` are rendered later, by `launch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from helios import templating


def check_params(params: Mapping[str, Any], known: Iterable[str]) -> list[str]:
    """Problems of a trigger's params (empty when fine): unknown `trigger.*` references."""
    paths = [f"trigger.{name}" for name in known]
    problems = []
    for name, value in params.items():
        if isinstance(value, str):
            problems += [f"params.{name}: {p}" for p in templating.check(value, paths)]
    return problems


def render_params(params: Mapping[str, Any], values: Mapping[str, object]) -> dict[str, Any]:
    """String values rendered with `trigger` = `values`; others passed as they are.
    Raises ValueError (templating.TemplateError) on a reference without a value."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        out[name] = templating.render(value, {"trigger": values}) if isinstance(value, str) \
            else value
    return out
