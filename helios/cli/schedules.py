"""CLI commands of schedules, backfills and triggers.

    helios schedules [--next N]                      every schedule and its next fire times
    helios schedule NAME --cron EXPR [--timezone TZ] [--no-catchup] [--max-catchup N]
                    [--policy Allow|Forbid|Replace] [--start T] [--end T] [-p k=v ...]
    helios schedule NAME (--show | --pause | --resume | --delete)
    helios backfill NAME --from T1 --to T2 [--max-parallel N] [-p k=v ...] [--rerun]
                    [--cron EXPR] [--timezone TZ] [--detach]
    helios trigger NAME [-p k=v ...] [--key IDEMPOTENCY_KEY]   (the webhook)
    helios triggers                                  stored triggers

`backfill` shows its progress until every run ended; Ctrl-C cancels the backfill (its
running runs too). Times are RFC 3339 (`2026-01-01T00:00:00Z`); a date alone is
midnight UTC.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

from helios.cli.client import ApiError, Client
from helios.cli.feed import TRANSIENT
from helios.cli.templates import add_param_option, param_values

POLL_S = 1.0


def _time(text: str) -> str:
    """RFC 3339 for the API; a bare date is midnight UTC (argparse reports a ValueError)."""
    try:
        return date.fromisoformat(text).isoformat() + "T00:00:00Z"
    except ValueError:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("give a UTC offset or Z") from None
        return moment.isoformat()


def add_parsers(sub: Any) -> None:
    """Register `schedules`, `schedule`, `backfill`, `trigger` and `triggers`."""
    ls = sub.add_parser("schedules", help="every schedule and its next fire times")
    ls.add_argument("--next", type=int, default=3, help="fire times shown per schedule")

    s = sub.add_parser("schedule", help="set, show, pause, resume or delete a stored DAG's "
                                        "schedule")
    s.add_argument("name")
    action = s.add_mutually_exclusive_group()
    action.add_argument("--cron", help="5 fields, or 6 with seconds first, or @daily etc.")
    for flag in ("show", "pause", "resume", "delete"):
        action.add_argument(f"--{flag}", action="store_true")
    s.add_argument("--timezone", default="UTC", help="IANA zone (default: UTC)")
    s.add_argument("--no-catchup", action="store_true",
                   help="after downtime, run only the latest missed time")
    s.add_argument("--max-catchup", type=int, default=10)
    s.add_argument("--policy", choices=("Allow", "Forbid", "Replace"), default="Allow")
    s.add_argument("--start", type=_time)
    s.add_argument("--end", type=_time)
    add_param_option(s)

    b = sub.add_parser("backfill", help="one run per scheduled time in a range, with progress "
                                        "(Ctrl-C cancels it)")
    b.add_argument("name")
    b.add_argument("--from", dest="start", type=_time, required=True)
    b.add_argument("--to", dest="end", type=_time, required=True)
    b.add_argument("--max-parallel", type=int, default=1)
    b.add_argument("--rerun", action="store_true", help="run times that ran already again")
    b.add_argument("--cron", help="times to run (default: the stored DAG's schedule)")
    b.add_argument("--timezone")
    b.add_argument("--detach", action="store_true", help="print its id and return")
    add_param_option(b)

    t = sub.add_parser("trigger", help="start a run through the webhook")
    t.add_argument("name")
    t.add_argument("--key", help="Idempotency-Key: the same key starts one run")
    add_param_option(t)
    sub.add_parser("triggers", help="stored triggers")


def _print(args: argparse.Namespace, body: Any, text: str) -> None:
    print(json.dumps(body, indent=2) if args.json else text)


def schedule_lines(body: dict[str, Any]) -> list[str]:
    state = body.get("state") or {}
    flags = " PAUSED" if body.get("paused") else ""
    head = (f"{body['template']:<24} {body['cron']:<18} {body['timezone']:<16} "
            f"{body['concurrencyPolicy']:<8} fired {state.get('fired', 0)}, "
            f"skipped {state.get('skipped', 0)}{flags}")
    lines = [head]
    lines += [f"    next {t}" for t in body.get("nextFireTimes", [])]
    if state.get("lastError"):
        lines.append(f"    last error: {state['lastError']}")
    return lines


async def _schedules(client: Client, args: argparse.Namespace) -> int:
    body = await client.call("GET", "/schedules", params={"next": str(args.next)})
    lines = [line for s in body["schedules"] for line in schedule_lines(s)]
    _print(args, body, "\n".join(lines) or "no schedules")
    return 0


async def _schedule(client: Client, args: argparse.Namespace) -> int:
    path = f"/templates/{args.name}/schedule"
    if args.delete:
        await client.call("DELETE", path)
        _print(args, {"deleted": args.name}, f"schedule of {args.name} deleted")
        return 0
    if args.pause or args.resume:
        body = await client.call("POST", f"{path}/{'pause' if args.pause else 'resume'}")
    elif args.cron:
        request: dict[str, Any] = {
            "cron": args.cron, "timezone": args.timezone, "catchup": not args.no_catchup,
            "maxCatchup": args.max_catchup, "concurrencyPolicy": args.policy,
            "params": param_values(args)}
        for key in ("start", "end"):
            if getattr(args, key):
                request[key] = getattr(args, key)
        body = await client.call("PUT", path, json=request)
    else:
        body = await client.call("GET", path)
    _print(args, body, "\n".join(schedule_lines(body)))
    return 0


def progress_line(body: dict[str, Any]) -> str:
    p = body["progress"]
    done = p["succeeded"] + p["failed"] + p["cancelled"] + p["skipped"]
    return (f"{body['template']} backfill {body['id'][:12]}: {done}/{body['total']} done "
            f"({p['succeeded']} ok, {p['failed']} failed, {p['skipped']} skipped, "
            f"{p['cancelled']} cancelled), {p['running']} running  {body['state']}")


async def _backfill(client: Client, args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"from": args.start, "to": args.end,
                               "maxParallel": args.max_parallel, "rerun": args.rerun,
                               "params": param_values(args)}
    for key in ("cron", "timezone"):
        if getattr(args, key):
            request[key] = getattr(args, key)
    body = await client.call("POST", f"/templates/{args.name}/backfills", json=request)
    if args.detach or args.json:
        _print(args, body, f"backfill {body['id']}: {body['total']} runs")
        return 0
    print(f"backfill {body['id']}: {body['total']} runs of {args.name}, "
          f"at most {args.max_parallel} at once (Ctrl-C cancels)", flush=True)
    try:
        return await watch_backfill(client, body["id"])
    except (KeyboardInterrupt, asyncio.CancelledError):
        await client.call("POST", f"/backfills/{body['id']}/cancel")
        print(f"\nbackfill {body['id']} cancelled (its running runs are being cancelled)",
              file=sys.stderr)
        return 130


async def watch_backfill(client: Client, backfill_id: str,
                         out: Callable[[str], None] = print) -> int:
    """Print a line whenever the progress changes, until the backfill ends."""
    last = ""
    while True:
        try:
            body = await client.call("GET", f"/backfills/{backfill_id}")
        except ApiError as exc:
            if exc.status < 500:
                raise
            await asyncio.sleep(POLL_S)  # the api restarting: the backfill goes on
            continue
        except TRANSIENT:
            await asyncio.sleep(POLL_S)
            continue
        line = progress_line(body)
        if line != last:
            out(line)
            last = line
        if body["state"] not in ("RUNNING", "CANCELLING"):
            failed = [r for r in body["runs"] if r["state"] in ("FAILED", "CANCELLED")]
            for run in failed[:20]:
                out(f"  {run['time']}  {run['runId']}  {run['state']}")
            return 0 if body["state"] == "SUCCEEDED" else 1
        await asyncio.sleep(POLL_S)


async def _trigger(client: Client, args: argparse.Namespace) -> int:
    headers = {"Idempotency-Key": args.key} if args.key else {}
    body = await client.call("POST", f"/templates/{args.name}/trigger",
                             json=param_values(args), headers=headers)
    _print(args, body, f"started {args.name} as {body['dagId']}")
    return 0


async def _triggers(client: Client, args: argparse.Namespace) -> int:
    body = await client.call("GET", "/triggers")
    lines = []
    for t in body["triggers"]:
        source = t["source"]
        what = (f"objects s3://{source.get('bucket') or '(artifacts)'}/{source['prefix']}"
                if source["kind"] == "objects" else f"success of {source['template']}")
        lines.append(f"{t['name']:<24} {what} -> {t['template']}")
    _print(args, body, "\n".join(lines) or "no triggers")
    return 0


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], Awaitable[int]]] = {
    "schedules": _schedules, "schedule": _schedule, "backfill": _backfill,
    "trigger": _trigger, "triggers": _triggers,
}
