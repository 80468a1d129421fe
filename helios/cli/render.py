"""Human-readable output for the CLI: a compact live progress view and tables."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from helios.cli.templates import origin_lines

SYMBOL = {"PENDING": "·", "QUEUED": "…", "RUNNING": "▶", "SUCCEEDED": "✔", "FAILED": "✘",
          "UPSTREAM_FAILED": "⊘", "CANCELLED": "■", "SKIPPED": "↷"}


def _clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts or time.time()))


class Progress:
    """One line per meaningful transition; PENDING announcements are folded into a count."""

    def __init__(self, out: TextIO = sys.stdout):
        self.out = out
        self.tasks: dict[str, str] = {}

    def feed(self, event: dict[str, Any]) -> None:
        if event.get("type") == "run":
            total = len(self.tasks)
            done = sum(1 for s in self.tasks.values() if s == "SUCCEEDED")
            self.out.write(f"{_clock(event.get('at'))}  run {event['state']}"
                           + (f"  ({done}/{total} tasks succeeded)" if event["state"] != "RUNNING" else "")
                           + "\n")
            self.out.flush()
            return
        task, state = event["task"], event["state"]
        self.tasks[task] = state
        if state == "PENDING":
            return
        if event.get("mapOf") and state in ("QUEUED", "RUNNING", "SUCCEEDED"):
            return  # a forEach's instances: only their failures; the task's own line sums up
        parts = [f"{_clock(event.get('at'))}  {SYMBOL.get(state, '?')} {task:<24} {state:<15}"]
        if event.get("attempt", 1) > 1:
            parts.append(f"attempt {event['attempt']}")
        if state in ("SUCCEEDED", "FAILED"):
            cache = event.get("cache") or {}
            if event.get("memoized"):
                parts.append("memoized")
            elif cache.get("hits") or cache.get("misses"):
                parts.append(f"cache {cache.get('hits', 0)} hit / {cache.get('misses', 0)} miss")
            timings = event.get("timings") or {}
            if timings.get("startedAt") and timings.get("finishedAt"):
                parts.append(f"{(timings['finishedAt'] - timings['startedAt']) * 1000:.0f} ms")
        if event.get("reason") and state != "SUCCEEDED":
            parts.append(f"{event['reason']}: {event.get('message') or ''}".rstrip(": "))
        self.out.write("  ".join(parts) + "\n")
        self.out.flush()


def status_table(status: dict[str, Any]) -> str:
    lines = [f"run {status['dagId']}  {status['dagName']}  {status['status']}"
             + (f"  {status['durationMs']} ms" if status.get("durationMs") is not None else "")]
    lines += origin_lines(status)  # stored DAG, parameter values (helios.cli.templates)
    instances: dict[str, list[dict[str, Any]]] = {}
    for t in status["tasks"]:
        if t.get("mapOf"):
            instances.setdefault(t["mapOf"], []).append(t)
    for t in status["tasks"]:
        if t.get("mapOf"):
            continue  # listed under their forEach task below
        lines.append(_task_line(t, "  "))
        group = instances.get(t["name"], [])
        counts: dict[str, int] = {}
        for inst in group:
            counts[inst["state"]] = counts.get(inst["state"], 0) + 1
        if group:
            lines.append("      instances: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        # Every instance of a small map; of a large one, those that did not succeed.
        shown = group if len(group) <= MAX_INSTANCE_LINES else [
            i for i in group if i["state"] != "SUCCEEDED"][:MAX_INSTANCE_LINES]
        lines += [_task_line(i, "      ") for i in shown]
    return "\n".join(lines)


MAX_INSTANCE_LINES = 20


def _task_line(t: dict[str, Any], indent: str) -> str:
    extra = t.get("reason") or ""
    if t.get("memoized"):
        extra = "memoized"
    return (f"{indent}{SYMBOL.get(t['state'], '?')} {t['name']:<24} {t['state']:<15} "
            f"attempts={t['attempts']} node={t.get('node') or '-'} {extra}").rstrip()


def metrics_table(body: dict[str, Any]) -> str:
    lines = []
    summary = body.get("summary") or {}
    for key, value in summary.items():
        if not isinstance(value, (dict, list)):
            lines.append(f"{key}: {value}")
        elif isinstance(value, dict):
            flat = ", ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, (dict, list)))
            lines.append(f"{key}: {flat}")
    lines.append("")
    lines.append(f"{'dagId':<34} {'status':<10} {'cache':<8} {'durationMs':>10}  tasks")
    for run in body.get("runs", []):
        lines.append(f"{run.get('dagId', ''):<34} {run.get('status', ''):<10} "
                     f"{run.get('cacheHit', '')!s:<8} {run.get('durationMs', '')!s:>10}  "
                     f"{run.get('taskSucceeded', '?')}/{run.get('taskCount', '?')}")
    return "\n".join(lines)
