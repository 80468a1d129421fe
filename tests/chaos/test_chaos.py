"""A small chaos run in the suite: `kill -9` of the scheduler, the watcher and Valkey while
ten runs of mixed shapes are in flight on `helios dev` (real processes, nothing patched).

The same harness and checks as `bench/chaos.py` (`bench.chaoslib`): every run ends as its
shape must, no attempt starts twice under one number, lost attempts are re-run, the SSE
followers lose and repeat nothing, and the metrics equal those of a fault-free run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.chaos import Config, scenario
from bench.chaoslib import render

SHAPES = ("chain", "diamond", "fanout", "retry", "failing", "cancel")


@pytest.mark.timeout(180)
async def test_kills_of_scheduler_watcher_and_valkey_lose_nothing(tmp_path: Path) -> None:
    cfg = Config(
        runs=10, seed=7, targets=("scheduler", "watcher", "valkey"), whole_stack=False,
        task_s=0.3, submit_span_s=6.0, first_kill_s=1.0, min_gap_s=1.5, back_within_s=8.0, settle_s=30.0,
        cli_followers=2, shapes=SHAPES, work_dir=tmp_path,
    )
    checks, kills = await asyncio.wait_for(scenario(cfg), 170)
    assert all(c.ok for c in checks), f"{kills}\n{render(checks, max_details=20)}"
