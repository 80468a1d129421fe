"""`helios`: run the embedded stack, submit DAGs, follow runs, read logs and metrics."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from helios.auth_tokens import auth_headers, find_token
from helios.cli.client import ApiError, Client
from helios.cli.feed import TERMINAL_RUN_STATES, TRANSIENT, backoff_s
from helios.cli.list import add_parser as add_list_parser
from helios.cli.list import run_list
from helios.cli.render import Progress, metrics_table, status_table
from helios.cli.schedules import COMMANDS as SCHEDULE_COMMANDS
from helios.cli.schedules import add_parsers as add_schedule_parsers
from helios.cli.templates import COMMANDS as TEMPLATE_COMMANDS
from helios.cli.templates import add_param_option, add_parsers, param_values

DEFAULT_API = "http://localhost:8080"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="helios", description=__doc__)
    p.add_argument("--api", default=os.environ.get("HELIOS_API_URL", DEFAULT_API),
                   help="API base URL (default: $HELIOS_API_URL or %(default)s)")
    p.add_argument("--json", action="store_true", help="print raw JSON responses")
    p.add_argument("--token", default=None,
                   help="API bearer token (default: $HELIOS_TOKEN, else ./.helios/auth/token "
                        "as `helios dev` writes it); prefer the variable: argv is visible to others")
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the embedded stack (NATS, Valkey, S3 and the services)")
    dev.add_argument("--data-dir", type=Path, default=Path(".helios"), help="all state lives here")
    dev.add_argument("--port", type=int, default=8080, help="API port")
    dev.add_argument("--metrics-port", type=int, default=8081, help="metrics service port")
    dev.add_argument("--executor", choices=("local", "kubernetes"), default="local",
                     help="where tasks run: sandboxed processes here, or Jobs on a cluster")
    dev.add_argument("--kubeconfig", type=Path, help="kubernetes: default $KUBECONFIG or ~/.kube/config")
    dev.add_argument("--namespace", help="kubernetes: namespace of the Jobs (default helios)")
    dev.add_argument("--advertise-address", help="kubernetes: this machine's IP that pods reach "
                                                  "S3 at (default: the default route's address)")
    dev.add_argument("--task-image", help="kubernetes: image of the Jobs' downloader/uploader "
                                          "(default helios:latest)")

    demo = sub.add_parser("demo", help="start the embedded stack, run the seed example twice, "
                                       "show the cache miss, the hit and the metrics, then stop")
    demo.add_argument("--data-dir", type=Path, default=Path(".helios"), help="all state lives here")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--metrics-port", type=int, default=8081)
    demo.add_argument("file", nargs="?", type=Path, help="DAG to run (default: the seed example)")

    s = sub.add_parser("submit", help="submit a DAG file (YAML or JSON)")
    s.add_argument("file", type=Path)
    add_param_option(s)
    s.add_argument("--no-cache", action="store_true", help="bypass the node cache for this run")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true", help="wait for the run to end")
    mode.add_argument("--follow", action="store_true", help="print live progress until it ends")

    fo = sub.add_parser("follow", help="print a run's live progress until it ends "
                                       "(exit code: 0 if it succeeded)")
    fo.add_argument("dag_id")
    for name, text in (("status", "show a run"), ("cancel", "cancel a run"),
                       ("retry", "re-run failed tasks of a finished run")):
        sub.add_parser(name, help=text).add_argument("dag_id")
    lg = sub.add_parser("logs", help="print a task's log lines")
    lg.add_argument("dag_id")
    lg.add_argument("task")
    add_list_parser(sub)
    m = sub.add_parser("metrics", help="show the last runs of a DAG name")
    m.add_argument("dag_name")
    m.add_argument("--limit", type=int, default=10)
    add_parsers(sub)  # templates, run, resubmit (helios.cli.templates)
    add_schedule_parsers(sub)  # schedules, schedule, backfill, trigger(s) (helios.cli.schedules)
    return p


def _note(text: str) -> None:
    print(f"helios: {text}", file=sys.stderr, flush=True)


async def follow(client: Client, dag_id: str, quiet: bool = False) -> str:
    """Print the live feed until the run ends, riding through API restarts; returns the
    run's final state."""
    progress = Progress()
    final: str | None = None
    async for event in client.events(dag_id, on_note=_note):
        if not quiet:
            progress.feed(event)
        if event.get("type") == "run":
            final = event["state"]
    if final in TERMINAL_RUN_STATES:
        return final
    # The API said the run is over without replaying its end (e.g. it aged out of the
    # feed): its status says how it ended.
    return str((await status_when_reachable(client, dag_id))["status"])


async def status_when_reachable(client: Client, dag_id: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """The run's status, waiting out an API restart (a read is safe to repeat)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    failures = 0
    while True:
        try:
            return await client.status(dag_id)
        except ApiError as exc:
            if exc.status < 500 or loop.time() > deadline:
                raise
        except TRANSIENT:
            if loop.time() > deadline:
                raise
        failures += 1
        await asyncio.sleep(backoff_s(failures))


async def _run(args: argparse.Namespace) -> int:
    if args.command == "dev":
        from helios.cli.dev import run_dev

        return await run_dev(args.data_dir, args.port, args.metrics_port, executor=args.executor,
                             kubeconfig=args.kubeconfig, namespace=args.namespace,
                             advertise_address=args.advertise_address, task_image=args.task_image)
    if args.command == "demo":
        from helios.cli.demo import run_demo

        return await run_demo(args.data_dir, args.port, args.metrics_port, args.file)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10),
                                     headers=auth_headers(find_token(args.token, api_url=args.api))) as http:
        client = Client(args.api, http)
        handler = COMMANDS[args.command]
        return await handler(client, args)


def _print(args: argparse.Namespace, body: Any, text: str) -> None:
    print(json.dumps(body, indent=2) if args.json else text)


async def _submit(client: Client, args: argparse.Namespace) -> int:
    body = await client.submit_file(args.file, use_cache=False if args.no_cache else None,
                                    values=param_values(args))
    dag_id = body["dagId"]
    _print(args, body, f"submitted {body['dagName']} as {dag_id}")
    if not (args.wait or args.follow):
        return 0
    final = await follow(client, dag_id, quiet=not args.follow)
    if args.wait:
        print(status_table(await status_when_reachable(client, dag_id)))
    return 0 if final == "SUCCEEDED" else 1


async def _follow(client: Client, args: argparse.Namespace) -> int:
    return 0 if await follow(client, args.dag_id) == "SUCCEEDED" else 1


async def _status(client: Client, args: argparse.Namespace) -> int:
    body = await client.status(args.dag_id)
    _print(args, body, status_table(body))
    return 0


async def _logs(client: Client, args: argparse.Namespace) -> int:
    body = await client.logs(args.dag_id, args.task)
    _print(args, body, "\n".join(body["lines"]))
    return 0


async def _cancel(client: Client, args: argparse.Namespace) -> int:
    body = await client.cancel(args.dag_id)
    _print(args, body, f"cancelling {args.dag_id}")
    return 0


async def _retry(client: Client, args: argparse.Namespace) -> int:
    body = await client.retry(args.dag_id)
    _print(args, body, f"retrying {args.dag_id}")
    return 0


async def _metrics(client: Client, args: argparse.Namespace) -> int:
    body = await client.metrics(args.dag_name, args.limit)
    _print(args, body, metrics_table(body))
    return 0


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], Awaitable[int]]] = {
    "submit": _submit, "follow": _follow, "status": _status, "logs": _logs, "cancel": _cancel,
    "retry": _retry, "metrics": _metrics, "list": run_list, **TEMPLATE_COMMANDS,
    **SCHEDULE_COMMANDS,
}


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        code = asyncio.run(_run(args))
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.status == 401:
            print("  the API wants a bearer token: set HELIOS_TOKEN (`helios dev` writes one to "
                  ".helios/auth/token) or pass --token", file=sys.stderr)
        elif exc.status == 403:
            print("  this token may only read: use a token of scope `write`", file=sys.stderr)
        code = 2
    except aiohttp.ClientConnectionError as exc:
        print(f"error: cannot reach the API at {args.api}: {exc}\n"
              "  start it with `helios dev`, or pass --api / set HELIOS_API_URL", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
