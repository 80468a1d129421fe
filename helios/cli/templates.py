"""CLI commands of stored DAGs and parameters: `templates`, `run`, `resubmit`, and `-p`.

    helios templates                       list stored DAGs
    helios templates put NAME FILE         store FILE as the next version of NAME
    helios templates show NAME [--version N]
    helios templates delete NAME
    helios run NAME [-p key=value ...] [--version N] [--no-cache] [--wait | --follow]
    helios resubmit DAG_ID [-p key=value ...] [--no-cache] [--wait | --follow]
    helios submit FILE -p key=value ...

A `-p` value is text; the API reads it as the parameter's declared type (`5`, `0.5`,
`true`, a JSON list or comma-separated items).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from helios.cli.client import Client
from helios.params import parse_assignments


def add_param_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter value (repeatable)")


def param_values(args: argparse.Namespace) -> dict[str, str]:
    try:
        return parse_assignments(getattr(args, "param", []) or [])
    except ValueError as exc:
        raise SystemExit(f"error: -p {exc}") from None


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cache", action="store_true", help="bypass the node cache")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true", help="wait for the run to end")
    mode.add_argument("--follow", action="store_true", help="print live progress until it ends")


def add_parsers(sub: Any) -> None:
    """Register `templates`, `run` and `resubmit` on the CLI's subparsers."""
    t = sub.add_parser("templates", help="stored DAGs: list (default), put, show, delete")
    tsub = t.add_subparsers(dest="templates_command")
    put = tsub.add_parser("put", help="store a DAG file as the next version of NAME")
    put.add_argument("name")
    put.add_argument("file", type=Path)
    show = tsub.add_parser("show", help="show a stored DAG (latest version by default)")
    show.add_argument("name")
    show.add_argument("--version", type=int)
    tsub.add_parser("delete", help="delete a stored DAG and its versions").add_argument("name")

    r = sub.add_parser("run", help="start a run of a stored DAG")
    r.add_argument("name")
    r.add_argument("--version", type=int, help="a given version (default: the latest)")
    add_param_option(r)
    _wait_options(r)

    rs = sub.add_parser("resubmit", help="start a new run with a run's definition and "
                                         "parameters (-p overrides some)")
    rs.add_argument("dag_id")
    add_param_option(rs)
    _wait_options(rs)


def _print(args: argparse.Namespace, body: Any, text: str) -> None:
    print(json.dumps(body, indent=2) if args.json else text)


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                    for k, v in params.items())


def origin_lines(status: dict[str, Any]) -> list[str]:
    """What `helios status` shows of a run's origin: stored DAG, values, logical time."""
    parts = []
    if status.get("template"):
        parts.append(f"from {status['template']['name']} v{status['template']['version']}")
    if status.get("resubmitOf"):
        parts.append(f"resubmit of {status['resubmitOf']}")
    if status.get("params"):
        parts.append(f"params {_params_text(status['params'])}")
    return ["  " + "  ".join(parts)] if parts else []


async def _finish(client: Client, args: argparse.Namespace, body: dict[str, Any]) -> int:
    from helios.cli.main import follow, status_when_reachable  # main imports this module
    from helios.cli.render import status_table

    if not (args.wait or args.follow):
        return 0
    final = await follow(client, body["dagId"], quiet=not args.follow)
    if args.wait:
        print(status_table(await status_when_reachable(client, body["dagId"])))
    return 0 if final == "SUCCEEDED" else 1


async def _templates(client: Client, args: argparse.Namespace) -> int:
    action = args.templates_command
    if action == "put":
        data = args.file.read_bytes()
        ctype = "application/json" if args.file.suffix.lower() == ".json" else "application/yaml"
        body = await client.call("PUT", f"/templates/{args.name}", data=data,
                                 headers={"Content-Type": ctype})
        what = "stored" if body["created"] else "unchanged:"
        _print(args, body, f"{what} {body['name']} version {body['version']}")
        return 0
    if action == "show":
        query = {} if args.version is None else {"version": str(args.version)}
        body = await client.call("GET", f"/templates/{args.name}", params=query)
        lines = [f"{body['name']} version {body['version']} (latest {body['latest']}), "
                 f"dagName {body['dagName']}"]
        for p in body["params"]:
            default = "required" if p.get("default") is None else f"default {json.dumps(p['default'])}"
            lines.append(f"  -p {p['name']}  {p.get('type', 'string')}, {default}"
                         + (f"  {p['description']}" if p.get("description") else ""))
        _print(args, body, "\n".join(lines))
        return 0
    if action == "delete":
        await client.call("DELETE", f"/templates/{args.name}")
        _print(args, {"deleted": args.name}, f"deleted {args.name}")
        return 0
    body = await client.call("GET", "/templates")
    rows = [f"{'NAME':<32} {'LATEST':>6}  DAG NAME"]
    rows += [f"{t['name']:<32} {t['latest']:>6}  {t['dagName']}" for t in body["templates"]]
    _print(args, body, "\n".join(rows))
    return 0


def _run_body(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {"params": param_values(args)}
    if args.no_cache:
        request["useCache"] = False
    if getattr(args, "version", None) is not None:
        request["version"] = args.version
    return request


async def _run(client: Client, args: argparse.Namespace) -> int:
    body = await client.call("POST", f"/templates/{args.name}/runs", json=_run_body(args))
    _print(args, body, f"started {args.name} v{body['template']['version']} as {body['dagId']}"
                       + (f"  ({_params_text(body['params'])})" if body.get("params") else ""))
    return await _finish(client, args, body)


async def _resubmit(client: Client, args: argparse.Namespace) -> int:
    body = await client.call("POST", f"/dags/{args.dag_id}/resubmit", json=_run_body(args))
    _print(args, body, f"resubmitted {args.dag_id} as {body['dagId']}"
                       + (f"  ({_params_text(body['params'])})" if body.get("params") else ""))
    return await _finish(client, args, body)


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], Awaitable[int]]] = {
    "templates": _templates, "run": _run, "resubmit": _resubmit,
}
