"""What a chaos run submits and how its outcome is judged (shared by `bench.chaos` and
`tests/chaos`). Pure: DAG shapes with the end each must reach, and check functions over
what was observed (statuses, attempt starts, followers' feeds, metrics).

Every task first reports its own start to a recorder on this machine (a line over TCP
from inside the sandbox), so "an attempt started twice" is counted from the processes
that actually started, not from anything Helios says about itself.
"""

from __future__ import annotations

import collections
import itertools
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
# Metrics fields that a fault must not change (timings and cache counts may).
METRIC_FIELDS = ("status", "taskCount", "taskSucceeded", "taskFailed", "taskUpstreamFailed")
LOST = "ExecutorLost"


@dataclass(frozen=True)
class Shape:
    name: str
    doc: dict[str, Any]
    status: str  # the run's expected end
    tasks: dict[str, str]  # each task's expected end
    cancel: bool = False  # the harness cancels it once it runs


def _task(name: str, recorder_port: int, script: str, **extra: Any) -> dict[str, Any]:
    # The start line goes out first; a task that cannot report its start fails loudly (97)
    # rather than leave a start uncounted.
    record = (f'for i in 1 2 3 4 5 6 7 8 9 10; do echo "start $HELIOS_DAG_ID $HELIOS_TASK '
              f'$HELIOS_ATTEMPT" > /dev/tcp/127.0.0.1/{recorder_port} && break; sleep 0.2; '
              f'[ "$i" = 10 ] && exit 97; done 2>/dev/null; ')
    return {"name": name, "image": "debian:12", "command": ["/bin/bash", "-c", record + script],
            **extra}


def shapes(recorder_port: int, task_s: float) -> list[Shape]:
    """The mix: chain, diamond, fan-out, a retry, a slow task, a failure, a cancel and a
    run with the cache off. Every output holds the run id, so no two runs share content
    and a run's cache class does not depend on which runs happened to go first."""
    s = f"{task_s:g}"
    slow = f"{task_s * 4:g}"

    def t(name: str, script: str, **extra: Any) -> dict[str, Any]:
        return _task(name, recorder_port, script, **extra)

    def write(out: str) -> str:
        return f'sleep {s}; echo "$HELIOS_DAG_ID {out}" > /artifacts/{out}'

    def doc(name: str, *tasks: dict[str, Any], **top: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "dagName": f"chaos-{name}", "tasks": list(tasks), **top}

    def ok(*names: str) -> dict[str, str]:
        return dict.fromkeys(names, "SUCCEEDED")

    chain = [t("c0", write("o.txt"), outputs=["o.txt"])]
    for i in range(1, 4):
        chain.append(t(f"c{i}", f"cat /artifacts/i.txt; {write('o.txt')}", outputs=["o.txt"],
                       inputs=[{"fromTask": f"c{i - 1}", "name": "i.txt"}]))
    leaves = [t(f"leaf{i}", f"cat /artifacts/i.txt; sleep {s}",
                inputs=[{"fromTask": "root", "name": "i.txt"}]) for i in range(6)]
    return [
        Shape("chain", doc("chain", *chain), "SUCCEEDED", ok("c0", "c1", "c2", "c3")),
        Shape("diamond", doc(
            "diamond",
            t("root", write("r.txt"), outputs=["r.txt"]),
            t("left", f"cat /artifacts/i.txt; {write('l.txt')}", outputs=["l.txt"],
              inputs=[{"fromTask": "root", "name": "i.txt"}]),
            t("right", f"cat /artifacts/i.txt; {write('r.txt')}", outputs=["r.txt"],
              inputs=[{"fromTask": "root", "name": "i.txt"}]),
            t("join", "cat /artifacts/l.txt /artifacts/r.txt",
              inputs=[{"fromTask": "left", "name": "l.txt"}, {"fromTask": "right", "name": "r.txt"}]),
        ), "SUCCEEDED", ok("root", "left", "right", "join")),
        Shape("fanout", doc(
            "fanout", t("root", write("r.txt"), outputs=["r.txt"]), *leaves,
            t("gather", "true", depends_on=[f"leaf{i}" for i in range(6)]),
        ), "SUCCEEDED", ok("root", *(f"leaf{i}" for i in range(6)), "gather")),
        Shape("retry", doc(
            "retry", t("flaky", f'sleep {s}; test "$HELIOS_ATTEMPT" -ge 2 || exit 1', retries=2),
            t("next", "true", depends_on=["flaky"]),
        ), "SUCCEEDED", ok("flaky", "next")),
        Shape("slow", doc(
            "slow", t("long", f"sleep {slow}; echo $HELIOS_DAG_ID > /artifacts/o.txt", outputs=["o.txt"]),
            t("short", "cat /artifacts/i.txt", inputs=[{"fromTask": "long", "name": "i.txt"}]),
        ), "SUCCEEDED", ok("long", "short")),
        Shape("failing", doc(
            "failing", t("bad", f"sleep {s}; exit 3"), t("child", "true", depends_on=["bad"]),
            t("fine", f"sleep {s}"),
        ), "FAILED", {"bad": "FAILED", "child": "UPSTREAM_FAILED", "fine": "SUCCEEDED"}),
        Shape("cancel", doc(
            "cancel", t("hold", "sleep 600"), t("never", "true", depends_on=["hold"]),
        ), "CANCELLED", {"hold": "CANCELLED", "never": "CANCELLED"}, cancel=True),
        Shape("nocache", doc(
            "nocache", t("a", write("o.txt"), outputs=["o.txt"]),
            t("b", "cat /artifacts/i.txt", inputs=[{"fromTask": "a", "name": "i.txt"}]),
            useCache=False,
        ), "SUCCEEDED", ok("a", "b")),
    ]


def plan_runs(all_shapes: list[Shape], count: int, rng: random.Random,
              only: Iterable[str] | None = None) -> list[Shape]:
    """`count` runs: every shape at least once (one cancel), the rest drawn at random."""
    pool = [s for s in all_shapes if only is None or s.name in set(only)]
    runs = list(pool)[:count]
    others = [s for s in pool if not s.cancel] or pool
    runs += [rng.choice(others) for _ in range(count - len(runs))]
    rng.shuffle(runs)
    return runs


# ---- checks -------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)


def check_outcomes(expected: dict[str, Shape], statuses: dict[str, dict[str, Any] | None]) -> Check:
    """Each run ended as its shape must (run state and every task's state)."""
    correct, stuck, wrong, details = 0, 0, 0, []
    for dag_id, shape in expected.items():
        status = statuses.get(dag_id)
        if status is None or status.get("status") not in TERMINAL:
            stuck += 1
            tasks = {t["name"]: t["state"] for t in (status or {}).get("tasks", [])}
            details.append(f"stuck {shape.name} {dag_id}: {status and status.get('status')} {tasks}")
            continue
        tasks = {t["name"]: t["state"] for t in status["tasks"]}
        if status["status"] == shape.status and tasks == shape.tasks:
            correct += 1
        else:
            wrong += 1
            reasons = {t["name"]: t.get("reason") for t in status["tasks"] if t.get("reason")}
            details.append(f"wrong {shape.name} {dag_id}: {status['status']} {tasks} {reasons}")
    return Check("runs ended in their correct state", stuck == 0 and wrong == 0,
                 f"{correct} correct / {stuck} stuck / {wrong} wrong", details)


def check_double_starts(starts: list[tuple[str, str, int]],
                        statuses: Mapping[str, dict[str, Any] | None]) -> Check:
    """No (run, task, attempt) started more than once: from the recorder's start lines.
    Every task that succeeded must have a recorded start, or the count proves nothing."""
    counts = collections.Counter(s for s in starts if s[0] in statuses)
    twice = {k: n for k, n in counts.items() if n > 1}
    started = {(d, t) for d, t, _ in counts}
    unrecorded = [f"{d} {t['name']}: succeeded, but no start was recorded"
                  for d, status in statuses.items() for t in (status or {}).get("tasks", [])
                  if t["state"] == "SUCCEEDED" and not t.get("memoized") and (d, t["name"]) not in started]
    return Check("attempts started twice under one attempt number", not twice and not unrecorded,
                 f"{len(twice)} (of {sum(counts.values())} recorded starts)",
                 [f"{d} {t} attempt {a}: started {n} times" for (d, t, a), n in sorted(twice.items())]
                 + unrecorded)


def lost_attempts(feeds: dict[str, list[dict[str, Any]]]) -> tuple[int, int, list[str]]:
    """(attempts lost with their executor, of which re-run as a later attempt, details)."""
    lost, rerun, details = 0, 0, []
    for dag_id, events in feeds.items():
        latest: dict[str, int] = {}
        lost_here: set[tuple[str, int]] = set()
        for e in events:
            if e.get("type") != "task":
                continue
            latest[e["task"]] = max(latest.get(e["task"], 0), e["attempt"])
            if e.get("reason") == LOST and e.get("state") in ("FAILED", "QUEUED", "PENDING"):
                # A re-run announces itself as a new attempt with the reason; a failure
                # names the lost attempt itself.
                lost_here.add((e["task"], e["attempt"] - 1 if e["state"] != "FAILED" else e["attempt"]))
        for task, attempt in sorted(lost_here):
            lost += 1
            if latest.get(task, 0) > attempt:
                rerun += 1
            else:
                details.append(f"{dag_id} {task} attempt {attempt} lost and not re-run")
    return lost, rerun, details


def check_lost(feeds: dict[str, list[dict[str, Any]]]) -> Check:
    lost, rerun, details = lost_attempts(feeds)
    return Check("lost attempts re-run", lost == rerun, f"{lost} lost, {rerun} re-run", details)


def check_feeds(seen: dict[str, list[int]], reference: dict[str, list[int]],
                resumed: dict[str, int], cut: Iterable[str] = ()) -> Check:
    """Each follower saw every event of its run's feed exactly once. A follower `cut`
    (stopped by the harness's deadline, reported on its own) can only be judged on what
    it saw twice."""
    lost = twice = 0
    details = []
    cut = set(cut)
    for dag_id, ref in reference.items():
        got = seen.get(dag_id, [])
        missing = set() if dag_id in cut else set(ref) - set(got)
        repeated = len(got) - len(set(got))
        lost, twice = lost + len(missing), twice + repeated
        if missing or repeated:
            details.append(f"{dag_id}: lost ids {sorted(missing)[:10]}, {repeated} seen twice "
                           f"({resumed.get(dag_id, 0)} resumes)")
    followers = sum(1 for n in resumed.values() if n)
    return Check("SSE followers: events lost / seen twice", lost == 0 and twice == 0,
                 f"{followers} of {len(reference)} followers resumed; {lost} lost / {twice} seen twice",
                 details)


def check_terminal(last_seen: Mapping[str, dict[str, Any] | None],
                   statuses: Mapping[str, dict[str, Any] | None]) -> Check:
    """Each follower's feed ended on a terminal run event, and it is how the run ended."""
    details = []
    for dag_id, last in last_seen.items():
        status = statuses.get(dag_id) or {}
        if not last or last.get("type") != "run" or last.get("state") != status.get("status"):
            details.append(f"{dag_id}: feed ended on {last and (last.get('task') or 'run', last.get('state'))}, "
                           f"run is {status.get('status')}")
    return Check("every feed ended on the run's own end", not details,
                 f"{len(last_seen) - len(details)} of {len(last_seen)}", details)


def duplicate_transitions(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Transitions published more than once (same task, attempt, state and generation)."""
    keys = collections.Counter(
        (e.get("type"), e.get("task"), e.get("attempt"), e.get("state"), e.get("generation", 0))
        for e in events)
    return [k for k, n in keys.items() if n > 1]


def check_transitions(reference: dict[str, list[dict[str, Any]]]) -> Check:
    details = [f"{dag_id}: {dup}" for dag_id, events in reference.items()
               for dup in duplicate_transitions(events)]
    return Check("transitions published twice", not details, str(len(details)), details)


def check_pauses(feeds: dict[str, list[dict[str, Any]]], limit_s: float,
                 kills: Iterable[tuple[float, str, float]] = ()) -> Check:
    """No run stood still for longer than `limit_s` (its longest task plus the recovery
    bound) once the processes killed meanwhile were back: the gap between consecutive
    events of a run, by their `at`, less the downtime of the kills (wall-clock time,
    target, seconds until back) that fell into it."""
    kills = list(kills)
    details = []
    worst = 0.0
    for dag_id, events in feeds.items():
        timed = [e for e in events if isinstance(e.get("at"), (int, float))]
        for a, b in itertools.pairwise(timed):
            during = [(t, down) for at, t, down in kills if a["at"] <= at <= b["at"]]
            pause = b["at"] - a["at"] - sum(down for _, down in during)
            worst = max(worst, pause)
            if pause > limit_s:
                details.append(
                    f"{dag_id}: {pause:.1f}s before {b.get('task') or 'run'} {b.get('state')} "
                    f"attempt {b.get('attempt', '-')} (kills meanwhile: "
                    f"{', '.join(t for t, _ in during) or 'none'})")
    return Check(f"runs moved again within {limit_s:g}s (downtime of the kills excluded)",
                 not details, f"longest pause {worst:.1f}s; {len(details)} over", details)


def comparable(metrics: dict[str, Any], with_cache: bool) -> dict[str, Any]:
    out = {k: metrics.get(k) for k in METRIC_FIELDS}
    if with_cache:
        out["cacheHit"] = metrics.get("cacheHit")
    return out


def check_metrics(expected: dict[str, Shape], metrics: Mapping[str, dict[str, Any] | None],
                  baseline: dict[str, dict[str, Any]], extra_attempts: set[str]) -> Check:
    """Each run's metrics equal those of the fault-free run of its shape. The cache class
    is compared only for runs where no attempt was re-run: a re-run finds its inputs in
    the node cache, which is right, and a hit."""
    equal, details = 0, []
    for dag_id, shape in expected.items():
        ref = baseline.get(shape.name)
        got = metrics.get(dag_id)
        if ref is None:
            details.append(f"{shape.name}: no fault-free metrics to compare with")
            continue
        with_cache = dag_id not in extra_attempts
        if got is not None and comparable(got, with_cache) == comparable(ref, with_cache):
            equal += 1
        else:
            details.append(f"{shape.name} {dag_id}: {got and comparable(got, with_cache)} "
                           f"!= {comparable(ref, with_cache)}")
    return Check("metrics equal to the fault-free run", equal == len(expected),
                 f"{equal} of {len(expected)} equal", details)


def extra_attempt_runs(statuses: dict[str, dict[str, Any] | None],
                       baseline_statuses: dict[str, dict[str, Any]], expected: dict[str, Shape]) -> set[str]:
    """Runs where some task took more attempts than in the fault-free run of its shape."""
    out = set()
    for dag_id, shape in expected.items():
        status, ref = statuses.get(dag_id), baseline_statuses.get(shape.name)
        if not status or not ref:
            continue
        ref_attempts = {t["name"]: t["attempts"] for t in ref["tasks"]}
        if any(t["attempts"] > ref_attempts.get(t["name"], 0) for t in status["tasks"]):
            out.add(dag_id)
    return out


def render(checks: list[Check], max_details: int = 8) -> str:
    lines = []
    for c in checks:
        lines.append(f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.summary}")
        lines += [f"        {d}" for d in c.details[:max_details]]
        if len(c.details) > max_details:
            lines.append(f"        ... {len(c.details) - max_details} more")
    return "\n".join(lines)
