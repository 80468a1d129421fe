"""schemathesis against the API's own OpenAPI document: a long run of generated requests.

    .venv/bin/python -m bench.api_fuzz [--requests 10000] [--max-time 900] [--seed 1]

Starts the backing servers and the API and metrics services (no scheduler: accepted
DAGs are stored and queued, never run, so generated commands never execute), then runs
`st run .../api/v1/openapi.json --checks all` with the write token until at least
`--requests` requests were sent (rounds of `--round-time` seconds, each with a new
seed). Prints the figures the README quotes: requests, failures by check, duration.
Exits non-zero on any failure. `run_schemathesis` is shared with the suite's bounded
run (tests/e2e/test_schemathesis.py).

Last run (2026-12-01, 2 shared cores at load 5-6, schemathesis 4.32.5, seeds 1-3):
12,326 requests in 950 s, 0 failures of any check, 0 errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ST = Path(sys.executable).with_name("st")


@dataclass
class Figures:
    requests: int = 0  # answered by the API, counted by the API
    cases: int = 0  # test cases schemathesis generated
    statuses: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # check -> one failure, shortened
    errors: list[str] = field(default_factory=list)
    # Crashes of the tool itself (TOOL_BUGS), kept apart: they say nothing about the API.
    tool_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exit_code: int | None = None

    def add(self, other: Figures) -> None:
        self.requests += other.requests
        self.cases += other.cases
        self.statuses.update(other.statuses)
        self.failures.update(other.failures)
        for check, text in other.examples.items():
            self.examples.setdefault(check, text)
        self.errors += other.errors
        self.tool_errors += other.tool_errors
        self.seconds += other.seconds

    def report(self) -> dict[str, Any]:
        return {"requests": self.requests, "cases": self.cases,
                "responses_by_status": dict(sorted(self.statuses.items())),
                "failures_by_check": dict(self.failures), "errors": len(self.errors),
                "tool_errors": len(self.tool_errors),
                "seconds": round(self.seconds, 1),
                "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0}


async def served_responses(api_url: str) -> Counter[str]:
    """The API's own count of the responses it sent, by status (its Prometheus counter):
    schemathesis's reports keep one example per test case, not every request."""
    import aiohttp

    counts: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http, http.get(f"{api_url}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("helios_api_responses_total{"):
            labels, _, value = line.rpartition(" ")
            status = labels.split('status="', 1)[1].split('"', 1)[0]
            counts[status] += int(float(value))
    return counts


def _walk(value: Any) -> Any:
    """Every dict nested in a report event, depth first."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def read_ndjson(path: Path) -> Figures:
    """Counts from schemathesis's ndjson event stream: every interaction is one request;
    a check result with status FAILURE is one failure of that check."""
    figures = Figures()
    if not path.exists():
        return figures
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for node in _walk(event):
            if node.get("status") in ("FAILURE", "failure") and isinstance(node.get("name"), str):
                figures.failures[node["name"]] += 1
                failure = node.get("failure_info") or node.get("failure") or {}
                figures.examples.setdefault(node["name"], json.dumps(failure)[:1500])
            if node.get("status") in ("ERROR", "error") and "info" in node:
                text = json.dumps(node)
                (figures.tool_errors if is_tool_bug(text) else figures.errors).append(text[:500])
    return figures


# CPython 3.11's ast.parse can fail this way when Hypothesis describes one of
# schemathesis's filter lambdas deep in a recursive schema walk: the tool crashes while
# generating a case; no request was sent and the API is not involved.
TOOL_BUGS = ("AST constructor recursion depth mismatch",)


def is_tool_bug(text: str) -> bool:
    return any(bug in text for bug in TOOL_BUGS)


def error_sections(output: str) -> list[tuple[str, str]]:
    """(operation, text) of each entry of the summary's ERRORS block."""
    sections: list[tuple[str, str]] = []
    block = output.partition("= ERRORS =")[2]
    for end in ("= WARNINGS =", "= SUMMARY ="):
        block = block.partition(end)[0]
    for chunk in block.split("\n_")[1:]:
        title, _, body = chunk.partition("\n")
        sections.append((title.strip("_ "), body))
    return sections


def summary_failures(output: str) -> Counter[str]:
    """The "Failures:" block of schemathesis's summary: `❌ ST202 Schema-valid ...: 3`."""
    found: Counter[str] = Counter()
    lines = iter(output.splitlines())
    for line in lines:
        if line.strip() == "Failures:":
            for item in lines:
                if not item.strip():
                    break
                name, _, count = item.strip().lstrip("❌ ").rpartition(": ")
                if count.isdigit():
                    found[name] += int(count)
    return found


def generated_cases(output: str) -> int:
    """"Test cases: N generated, ..." from schemathesis's summary."""
    for line in output.splitlines():
        words = line.split()
        if len(words) > 1 and words[1].rstrip(",") == "generated" and words[0].isdigit():
            return int(words[0])
    return 0


async def run_schemathesis(api_url: str, token: str | None, *, max_time_s: float, seed: int,
                           report_dir: Path, workers: int = 2, max_examples: int = 100,
                           extra: list[str] | None = None) -> Figures:
    """One `st run` against the served document, bounded by `max_time_s`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    ndjson = report_dir / f"st-{seed}.ndjson"
    argv = [str(ST), "run", f"{api_url}/api/v1/openapi.json", "--checks", "all",
            "--max-time", str(max(1, round(max_time_s))), "--seed", str(seed),
            "--workers", str(workers), "--max-examples", str(max_examples),
            "--request-timeout", "30", "--report", "ndjson", "--report-ndjson-path", str(ndjson),
            "--suppress-health-check", "all", "--no-color", *(extra or [])]
    if token:
        argv += ["--header", f"Authorization: Bearer {token}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "bench.st_hooks",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    before = await served_responses(api_url)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        # The run stops itself at max_time; the margin covers start-up and shrinking.
        output, _ = await asyncio.wait_for(proc.communicate(), max_time_s + 180)
    except TimeoutError:
        proc.kill()
        output, _ = await proc.communicate()
    figures = read_ndjson(ndjson)
    figures.seconds = time.perf_counter() - started
    figures.exit_code = proc.returncode
    after = await served_responses(api_url)
    figures.statuses = after - before
    figures.requests = sum(figures.statuses.values())
    text = output.decode(errors="replace")
    figures.cases = generated_cases(text)
    if not figures.failures:  # the summary is the authority if the event format moved
        figures.failures = summary_failures(text)
    (report_dir / f"st-{seed}.out").write_text(text)
    if proc.returncode != 0 and not figures.failures:
        sections = error_sections(text)
        if sections and all(is_tool_bug(body) for _, body in sections):
            figures.tool_errors += [name for name, _ in sections]
        else:
            figures.errors.append(text[-3000:])
    return figures


@contextlib.asynccontextmanager
async def api_only(data_dir: Path) -> AsyncIterator[tuple[str, str]]:
    """Backing servers plus the API and metrics services in this process: (url, write token)."""
    from helios.devstack.procs import free_port
    from helios.devstack.servers import backing_servers
    from helios.health import Health
    from helios.runtime import StopEvent
    from helios.s3 import ensure_bucket, open_s3
    from helios.settings import AuthSettings, HttpSettings, Settings
    from services.api.service import serve as serve_api
    from services.metrics.service import serve as serve_metrics

    token = secrets.token_urlsafe(24)
    tokens = data_dir / "tokens"
    tokens.write_text(f"write {token}\n")
    async with backing_servers(data_dir / "stack") as ep:
        for key in [k for k in os.environ if k.startswith("HELIOS_")]:
            del os.environ[key]
        os.environ.update({**ep.env(), "HELIOS_LOG_LEVEL": "WARNING"})
        api_port, metrics_port = free_port(), free_port()
        base = Settings(auth=AuthSettings(tokens_file=tokens),
                        metrics_url=f"http://127.0.0.1:{metrics_port}")  # type: ignore[call-arg]
        async with open_s3(base.s3) as s3:
            await ensure_bucket(s3, base.s3.bucket)
        running: list[tuple[asyncio.Task[None], StopEvent]] = []
        try:
            for name, serve, port in (("metrics", serve_metrics, metrics_port),
                                      ("api", serve_api, api_port)):
                settings = base.model_copy(update={"http": HttpSettings(host="127.0.0.1", port=port)})
                stop, health = StopEvent(), Health(name)
                task = asyncio.create_task(serve(settings, stop, health), name=f"service:{name}")
                running.append((task, stop))
                async with asyncio.timeout(60):
                    await health.ready.wait()
            yield f"http://127.0.0.1:{api_port}", token
        finally:
            for task, stop in reversed(running):
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="helios-api-fuzz-"))
    total = Figures()
    try:
        async with api_only(tmp) as (api_url, token):
            seed = args.seed
            while total.requests < args.requests:
                figures = await run_schemathesis(
                    api_url, token, max_time_s=args.round_time, seed=seed,
                    report_dir=tmp / "reports", workers=args.workers,
                    max_examples=args.max_examples)
                total.add(figures)
                print(json.dumps({"round_seed": seed, **figures.report()}), file=sys.stderr)
                if figures.requests == 0:
                    break  # nothing ran: the errors say why
                seed += 1
        report = {**total.report(), "target_requests": args.requests, "first_seed": args.seed,
                  "load_average": os.getloadavg()}
        print(json.dumps(report, indent=2))
        for check, example in total.examples.items():
            print(f"--- {check}: {example}", file=sys.stderr)
        for error in total.errors[:5]:
            print(f"--- error: {error}", file=sys.stderr)
        return 0 if not total.failures and not total.errors and total.requests >= args.requests else 1
    finally:
        if args.keep:
            print(f"reports kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--round-time", type=float, default=300.0)
    parser.add_argument("--max-examples", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the reports")
    sys.exit(asyncio.run(main(parser.parse_args())))
