"""`helios list`: recent runs across DAG names, newest first (`GET /api/v1/dags`)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from helios.cli.client import Client
from helios.cli.render import SYMBOL

STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="list recent runs, newest first")
    p.add_argument("--name", help="only runs of this DAG name")
    p.add_argument("--state", action="append", choices=STATES, metavar="STATE",
                   help=f"only runs in this state ({', '.join(STATES)}); may be repeated")
    p.add_argument("--limit", type=int, default=20, help="runs per page (1..200)")
    p.add_argument("--cursor", help="continue from a previous page's `next`")
    p.add_argument("--all", action="store_true", help="follow `next` to the last page")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def runs_table(runs: list[dict[str, Any]]) -> str:
    lines = [f"{'dagId':<33} {'dagName':<24} {'state':<11} {'submitted':<19} "
             f"{'durationMs':>10} {'tasks':>5}  cache"]
    for r in runs:
        state = r.get("state") or "?"
        duration = r.get("durationMs")
        lines.append(
            f"{r.get('dagId', ''):<33} {(r.get('dagName') or '-')[:24]:<24} "
            f"{SYMBOL.get(state, '?')} {state:<9} {_when(r.get('submittedAt')):<19} "
            f"{'-' if duration is None else duration:>10} {r.get('taskCount') or '-':>5}  "
            f"{'on' if r.get('useCache') else 'off'}")
    return "\n".join(lines)


def _params(args: argparse.Namespace, cursor: str | None) -> list[tuple[str, str]]:
    params = [("limit", str(args.limit))]
    if args.name:
        params.append(("name", args.name))
    params += [("state", s) for s in args.state or ()]
    if cursor:
        params.append(("cursor", cursor))
    return params


async def run_list(client: Client, args: argparse.Namespace) -> int:
    runs: list[dict[str, Any]] = []
    cursor: str | None = args.cursor
    while True:
        body = await client.list_runs(_params(args, cursor))
        runs += body["runs"]
        cursor = body.get("next")
        if not (args.all and cursor):
            break
    if args.json:
        print(json.dumps({"runs": runs, "next": cursor}, indent=2))
        return 0
    print(runs_table(runs) if runs else "no runs (submit one with `helios submit FILE`)")
    if cursor:
        print(f"more: helios list --cursor {cursor}" + (f" --name {args.name}" if args.name else "")
              + "".join(f" --state {s}" for s in args.state or ()))
    return 0
