"""schemathesis hooks for the API fuzz run (`SCHEMATHESIS_HOOKS=bench.st_hooks`).

JSON Schema states every field rule of a DAG (the OpenAPI document does), but not the
rules that relate fields to each other: task names unique, dependencies naming other
tasks without a cycle, inputs naming an output of an earlier task, input names unique
per task. The 400's description in the document lists them. A DAG drawn from the schema
alone almost always breaks one of them, so `positive_data_acceptance` would only ever
see 400s. This hook repairs those cross-references in *positive* cases, by renaming and
dropping entries, using values that are themselves schema-valid: a case stays valid by
the schema, and every field rule still reaches the API as generated. Negative cases
are left alone (a repair could turn them valid).
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from schemathesis import Case, HookContext

LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _unique_name(wanted: Any, index: int, taken: set[str]) -> str:
    if isinstance(wanted, str) and LABEL.fullmatch(wanted) and len(wanted) <= 63 \
            and wanted not in taken:
        return wanted
    name = f"t{index}"
    while name in taken:
        name += "x"
    return name


def _static(task: dict[str, Any]) -> dict[str, Any]:
    task = {k: v for k, v in task.items() if k != "when"}
    if not isinstance(task.get("forEach"), list):
        task.pop("forEach", None)
        task.pop("maxParallel", None)
    return task


def consistent_dag(body: Any) -> Any:
    """The same document with its cross-references made consistent (a pure function)."""
    if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
        return body
    tasks = [t for t in body["tasks"] if isinstance(t, dict)]
    if len(tasks) != len(body["tasks"]):
        return body
    # The dynamic fields relate tasks too (`when` names params and upstream tasks,
    # `forEach` an upstream output or a parameter, exit handlers share the name space):
    # a positive case keeps literal forEach lists and drops the rest.
    body = {k: v for k, v in body.items() if k != "onExit"}
    tasks = [_static(t) for t in tasks]
    taken: set[str] = set()
    earlier: dict[str, list[str]] = {}  # name -> outputs, for tasks already placed
    repaired = []
    for index, task in enumerate(tasks):
        task = dict(task)
        task["name"] = _unique_name(task.get("name"), index, taken)
        taken.add(task["name"])
        if isinstance(task.get("depends_on"), list):
            task["depends_on"] = [d for d in task["depends_on"] if d in earlier]
        if isinstance(task.get("inputs"), list):
            kept, placed = [], set()
            for spec in task["inputs"]:
                if not isinstance(spec, dict):
                    continue
                outputs = earlier.get(spec.get("fromTask"))  # type: ignore[arg-type]
                if not outputs or spec.get("name") in placed:
                    continue
                artifact = spec.get("artifact")
                if (artifact is None and len(outputs) != 1) or (
                        artifact is not None and artifact not in outputs):
                    continue
                kept.append(spec)
                placed.add(spec.get("name"))
            task["inputs"] = kept
        outputs = task.get("outputs")
        earlier[task["name"]] = list(outputs) if isinstance(outputs, list) else []
        repaired.append(task)
    return {**body, "tasks": repaired}


def without_templates(body: Any) -> Any:
    """No declared parameters (a generated one may lack a value or have a default of
    another type) and no `{{` in command, args or env (it must form a reference): both
    are rules between fields, listed in the 400's description. `{{` becomes `{}`, which
    keeps every length bound."""
    if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
        return body

    def plain(value: Any) -> Any:
        return value.replace("{{", "{}") if isinstance(value, str) else value

    tasks = []
    for task in body["tasks"]:
        if isinstance(task, dict):
            task = dict(task)
            for key in ("command", "args"):
                if isinstance(task.get(key), list):
                    task[key] = [plain(v) for v in task[key]]
            if isinstance(task.get("env"), dict):
                task["env"] = {k: plain(v) for k, v in task["env"].items()}
        tasks.append(task)
    return {**body, "tasks": tasks, **({"params": []} if "params" in body else {})}


# The routes whose body is a DAG document.
DOCUMENT_ROUTES = {("POST", "/dags"), ("PUT", "/templates/{name}")}
# Schedules, backfills and triggers: rules the schema cannot state (a cron expression's
# meaning, end after start, times in the range, params that fit the stored DAG).
# Run requests: which params a stored DAG or run declares is not in the schema.
RUN_ROUTES = {("POST", "/templates/{name}/runs"), ("POST", "/dags/{dagId}/resubmit")}
FIRING_ROUTES = {("PUT", "/templates/{name}/schedule"), ("POST", "/templates/{name}/backfills"),
                 ("PUT", "/triggers/{trigger}"), ("POST", "/templates/{name}/trigger")}


def firing_body(route: tuple[str, str], body: Any) -> Any:
    """A positive schedule/backfill/trigger body made consistent: a valid cron and zone,
    one or two times in a backfill's range, no params (the stored DAG drawn from the pool
    declares none: see `without_templates`)."""
    from helios.schedules.cron import CronError, parse_cron

    if not isinstance(body, dict):
        return body
    if route == ("POST", "/templates/{name}/trigger"):
        return {}
    body = {**body, "params": {}}
    if route == ("PUT", "/triggers/{trigger}"):
        source = body.get("source")
        if isinstance(source, dict):
            body["source"] = {k: v for k, v in source.items() if k != "bucket"}
        return body
    try:
        parse_cron(str(body.get("cron", "")), str(body.get("timezone") or "UTC"))
    except CronError:
        body.update(cron="0 0 * * *", timezone="UTC")
    # Times between the years 1970 and 9000 (the 400's description says so).
    if route == ("PUT", "/templates/{name}/schedule"):
        body.pop("end", None)
        if body.get("start") is not None:
            body["start"] = "2026-01-01T00:00:00Z"
        return body
    body.update({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
                 "cron": "0 0 * * *", "timezone": "UTC"})
    return body


@schemathesis.hook
def map_case(context: HookContext, case: Case) -> Case:
    operation = context.operation
    meta = case.meta
    if (operation is not None and (operation.method.upper(), operation.path) in DOCUMENT_ROUTES
            and meta is not None and meta.generation.mode.is_positive):
        case.body = without_templates(consistent_dag(case.body))
        if isinstance(case.query, dict):
            case.query.pop("param", None)  # values of parameters the body no longer declares
    if (operation is not None and (operation.method.upper(), operation.path) in FIRING_ROUTES
            and meta is not None and meta.generation.mode.is_positive):
        case.body = firing_body((operation.method.upper(), operation.path), case.body)
    if (operation is not None and (operation.method.upper(), operation.path) in RUN_ROUTES
            and meta is not None and meta.generation.mode.is_positive
            and isinstance(case.body, dict)):
        case.body = {**case.body, "params": {}}
    return case
