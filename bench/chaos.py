"""Chaos run of the embedded stack: runs of mixed shapes while `kill -9` hits each server
and service at random moments, and once the whole stack (restarted on the same data dir).

    .venv/bin/python -m bench.chaos [--runs 50] [--seed 1] [--keep]

First a fault-free run of every shape (the reference for metrics), then the runs, each
followed over SSE by the CLI's own follower (a few also by `helios follow` processes),
while the kills land. It prints the checks of `bench.chaoslib` and exits 1 if one fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench import chaoslib
from bench.chaoslib import Check, Shape
from bench.chaosstack import HELIOS, ROLES, DevProcess, Kill, StartRecorder
from helios.auth_tokens import TOKEN_ENV, dev_headers, dev_token
from helios.cli.client import ApiError, Client
from helios.cli.feed import TRANSIENT, backoff_s
from helios.devstack.procs import free_port

log = logging.getLogger("chaos")
T = TypeVar("T")
CUT = "still following when the wait for the runs ended"


@dataclass
class Config:
    runs: int = 50
    seed: int = 1
    targets: tuple[str, ...] = tuple(ROLES)
    whole_stack: bool = True
    task_s: float = 1.0
    submit_span_s: float = 40.0
    first_kill_s: float = 3.0
    min_gap_s: float = 3.0
    back_within_s: float = 10.0
    settle_s: float = 240.0
    cli_followers: int = 5
    pause_slack_s: float = 5.0
    shapes: tuple[str, ...] | None = None
    work_dir: Path | None = None


@dataclass
class Followed:
    shape: Shape
    dag_id: str
    ids: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    last: dict[str, Any] | None = None
    error: str | None = None
    cli_code: int | None = None
    cli_out: str = ""


async def patiently(call: Callable[[], Awaitable[T]], timeout_s: float = 180.0) -> T:
    """Repeat a call through API restarts: connection errors and 5xx answers."""
    deadline = time.monotonic() + timeout_s
    failures = 0
    while True:
        try:
            return await call()
        except ApiError as exc:
            if exc.status < 500 or time.monotonic() > deadline:
                raise
        except TRANSIENT:
            if time.monotonic() > deadline:
                raise
        failures += 1
        await asyncio.sleep(backoff_s(failures))


def kill_schedule(cfg: Config, rng: random.Random) -> list[tuple[float, str]]:
    """Each target (and the whole stack) once, at random moments over the submission
    span, at least `min_gap_s` apart."""
    targets = list(cfg.targets) + (["all"] if cfg.whole_stack else [])
    rng.shuffle(targets)
    times = sorted(rng.uniform(cfg.first_kill_s, cfg.submit_span_s) for _ in targets)
    for i in range(1, len(times)):
        times[i] = max(times[i], times[i - 1] + cfg.min_gap_s)
    return [(round(t, 1), target) for t, target in zip(times, targets, strict=True)]


class Scenario:
    def __init__(self, cfg: Config, dev: DevProcess, client: Client, recorder: StartRecorder):
        self.cfg, self.dev, self.client, self.recorder = cfg, dev, client, recorder
        self.rng = random.Random(cfg.seed)
        all_shapes = chaoslib.shapes(recorder.port, cfg.task_s)
        self.shapes = [s for s in all_shapes if cfg.shapes is None or s.name in cfg.shapes]
        self.followed: dict[str, Followed] = {}
        self.kills: list[Kill] = []

    async def submit(self, shape: Shape) -> str:
        body = await patiently(lambda: self.client._call(
            "POST", "/dags", data=json.dumps(shape.doc), headers={"Content-Type": "application/json"}))
        return str(body["dagId"])

    async def follow(self, f: Followed) -> None:
        """The CLI's follower, counting ids; cancels a `cancel` run once it runs."""
        cancelled = False
        try:
            async for event in self.client.feed(f.dag_id, on_note=f.notes.append):
                f.ids.append(event.id)
                f.last = event.data
                if (f.shape.cancel and not cancelled and event.data.get("task")
                        and event.data.get("state") == "RUNNING"):
                    await patiently(lambda: self.client.cancel(f.dag_id))
                    cancelled = True
        except Exception as exc:  # reported as the follower's failure, never swallowed
            f.error = f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            f.error = CUT
            raise

    async def cli_follow(self, f: Followed) -> None:
        proc = await asyncio.create_subprocess_exec(
            *HELIOS, "--api", self.dev.api_url, "follow", f.dag_id,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, TOKEN_ENV: dev_token(self.dev.data_dir) or ""})
        try:
            out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        f.cli_code, f.cli_out = proc.returncode, out.decode()

    async def one(self, shape: Shape, delay_s: float, with_cli: bool) -> None:
        await asyncio.sleep(delay_s)
        f = Followed(shape, await self.submit(shape))
        self.followed[f.dag_id] = f
        await asyncio.gather(self.follow(f), *([self.cli_follow(f)] if with_cli else []))

    async def baseline(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """One fault-free run of each shape: its status and metrics."""
        ids: dict[str, str] = {}

        async def run(shape: Shape) -> None:
            ids[shape.name] = dag_id = await self.submit(shape)
            await self.follow(Followed(shape, dag_id))

        await asyncio.gather(*(run(s) for s in self.shapes))
        statuses = {name: await self.client.status(i) for name, i in ids.items()}
        by_id = await self.metrics(set(ids.values()), timeout_s=60)
        return statuses, {name: m for name, i in ids.items() if (m := by_id.get(i)) is not None}

    async def killer(self, started: float) -> None:
        """The kills at their moments: a recovery still under way delays the next one."""
        for at_s, target in kill_schedule(self.cfg, self.rng):
            await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
            log.info("kill -9 %s", target)
            kill = await self.dev.kill(target, started, self.cfg.back_within_s)
            self.kills.append(kill)
            log.info("%s back after %ss%s", target, kill.back_after_s,
                     " (restarted by the harness)" if kill.harness_restarted else "")

    async def chaos(self) -> None:
        plan = chaoslib.plan_runs(self.shapes, self.cfg.runs, self.rng)
        delays = sorted(self.rng.uniform(0, self.cfg.submit_span_s) for _ in plan)
        with_cli = set(self.rng.sample(range(len(plan)), min(self.cfg.cli_followers, len(plan))))
        started = time.monotonic()
        runs = [asyncio.create_task(self.one(s, d, i in with_cli))
                for i, (s, d) in enumerate(zip(plan, delays, strict=True))]
        await self.killer(started)
        log.info("kills done after %.0fs; waiting for the runs to end", time.monotonic() - started)
        _, pending = await asyncio.wait(runs, timeout=self.cfg.settle_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    async def metrics(self, dag_ids: set[str], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Each run's metrics row, once every one of them shows a terminal status."""
        names = {s.doc["dagName"] for s in self.shapes}
        deadline = time.monotonic() + timeout_s
        rows: dict[str, dict[str, Any]] = {}
        while True:
            for name in names:
                body = await patiently(lambda n=name: self.client.metrics(n, 100))  # type: ignore[misc]
                rows.update({r["dagId"]: r for r in body.get("runs", []) if r.get("dagId") in dag_ids})
            if all(rows.get(i, {}).get("status") in chaoslib.TERMINAL for i in dag_ids):
                return rows
            if time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.5)

    async def reference(self, dag_id: str) -> list[tuple[int, dict[str, Any]]]:
        """The whole feed, read once on the quiet stack."""
        async with asyncio.timeout(30):
            return [(e.id, e.data) async for e in self.client.feed(dag_id)]


async def scenario(cfg: Config) -> tuple[list[Check], str]:
    work = cfg.work_dir or Path(tempfile.mkdtemp(prefix="helios-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    async with StartRecorder() as recorder:
        # Tasks reach the recorder over loopback: the host network, whatever the default.
        dev = DevProcess(work / "data", free_port(), free_port(), env={"HELIOS_LOCAL_NETWORK": "host"})
        await dev.start()
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), headers=dev_headers(dev.data_dir),
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=60),
            ) as http:
                return await _scenario(cfg, dev, Client(dev.api_url, http), recorder)
        finally:
            await dev.stop()
            log.info("stack stopped; data and logs in %s", work)


async def _scenario(cfg: Config, dev: DevProcess, client: Client,
                    recorder: StartRecorder) -> tuple[list[Check], str]:
    s = Scenario(cfg, dev, client, recorder)
    t0 = time.monotonic()
    base_status, base_metrics = await s.baseline()
    log.info("fault-free runs done in %.0fs", time.monotonic() - t0)
    await s.chaos()
    return await judge(s, base_status, base_metrics), kills_table(s.kills)


async def judge(s: Scenario, base_status: dict[str, dict[str, Any]],
                base_metrics: dict[str, dict[str, Any]]) -> list[Check]:
    expected = {i: f.shape for i, f in s.followed.items()}
    sem = asyncio.Semaphore(8)

    async def status(dag_id: str) -> dict[str, Any] | None:
        async with sem:
            with contextlib.suppress(Exception):
                return await patiently(lambda: s.client.status(dag_id), 60)
            return None

    async def feed(dag_id: str) -> list[tuple[int, dict[str, Any]]]:
        async with sem:
            try:
                return await s.reference(dag_id)
            except Exception as exc:
                log.warning("no reference feed for %s: %s", dag_id, exc)
                return []

    ids = list(expected)
    statuses = dict(zip(ids, await asyncio.gather(*(status(i) for i in ids)), strict=True))
    feeds = dict(zip(ids, await asyncio.gather(*(feed(i) for i in ids)), strict=True))
    metrics = await s.metrics(set(ids), timeout_s=60)
    extra = chaoslib.extra_attempt_runs(statuses, base_status, expected)
    followers = [f for f in s.followed.values()]
    errors = [f"{f.dag_id}: {f.error}" for f in followers if f.error]
    cli = [f for f in followers if f.cli_code is not None]
    cli_bad = [f"{f.dag_id} ({f.shape.name}): exit {f.cli_code}\n{f.cli_out[-600:]}" for f in cli
               if f.cli_code != (0 if f.shape.status == "SUCCEEDED" else 1)]
    unsupervised = [k for k in s.kills if k.target != "all" and (k.harness_restarted or k.back_after_s is None)]
    return [
        chaoslib.check_outcomes(expected, statuses),
        chaoslib.check_double_starts(s.recorder.starts, statuses),
        chaoslib.check_lost({i: [d for _, d in f] for i, f in feeds.items()}),
        chaoslib.check_feeds({f.dag_id: f.ids for f in followers},
                             {i: [n for n, _ in f] for i, f in feeds.items()},
                             {f.dag_id: sum("interrupted" in n for n in f.notes) for f in followers},
                             cut={f.dag_id for f in followers if f.error == CUT}),
        Check("followers ended without an error", not errors, f"{len(errors)} errors", errors),
        chaoslib.check_terminal({f.dag_id: f.last for f in followers if not f.error}, statuses),
        Check("`helios follow` exit codes", not cli_bad, f"{len(cli) - len(cli_bad)} of {len(cli)} right", cli_bad),
        chaoslib.check_transitions({i: [d for _, d in f] for i, f in feeds.items()}),
        # The slow shape's long task, plus the 5 s recovery bound, plus slack for load.
        chaoslib.check_pauses({i: [d for _, d in f] for i, f in feeds.items()},
                              4 * s.cfg.task_s + 5.0 + s.cfg.pause_slack_s,
                              [(k.wall, k.target, k.back_after_s or 0.0) for k in s.kills]),
        chaoslib.check_metrics(expected, metrics, base_metrics, extra),
        Check("killed children restarted by the supervisor", not unsupervised,
              f"{len(s.kills) - len(unsupervised)} of {len(s.kills)}",
              [f"{k.target}: not back within the wait; the harness restarted "
               + ("the whole stack" if k.stack_restarted else "it") for k in unsupervised]),
    ]


def kills_table(kills: list[Kill]) -> str:
    def how(k: Kill) -> str:
        if k.target == "all" or not k.harness_restarted:
            return f"back in {k.back_after_s}s"
        return "restarted by the harness" + (" with the whole stack" if k.stack_restarted else "")

    return "kills (at s since the first submission): " + ", ".join(
        f"{k.target}@{k.at_s} {how(k)}" for k in kills)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--task-s", type=float, default=1.0, help="a typical task's sleep")
    p.add_argument("--submit-span-s", type=float, default=40.0, help="submissions spread over this")
    p.add_argument("--targets", default=",".join(ROLES), help="processes to kill, comma-separated")
    p.add_argument("--no-whole-stack", action="store_true", help="skip the kill of the whole stack")
    p.add_argument("--settle-s", type=float, default=240.0, help="after the kills, wait this long at most")
    p.add_argument("--work-dir", type=Path, help="data and logs (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    cfg = Config(runs=a.runs, seed=a.seed, task_s=a.task_s, submit_span_s=a.submit_span_s,
                 targets=tuple(t for t in a.targets.split(",") if t), whole_stack=not a.no_whole_stack,
                 settle_s=a.settle_s, work_dir=a.work_dir or Path(tempfile.mkdtemp(prefix="helios-chaos-")))
    started = time.monotonic()
    checks, kills = asyncio.run(asyncio.wait_for(scenario(cfg), cfg.settle_s + 600))
    print(f"chaos: {cfg.runs} runs, seed {cfg.seed}, {time.monotonic() - started:.0f}s")
    print(kills)
    print(chaoslib.render(checks))
    ok = all(c.ok for c in checks)
    if ok and not a.keep and cfg.work_dir:
        shutil.rmtree(cfg.work_dir, ignore_errors=True)
    elif cfg.work_dir:
        print(f"data and logs kept in {cfg.work_dir}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
