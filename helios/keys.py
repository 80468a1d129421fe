"""The one place that names Redis keys. The seed's names are kept as documented.

One owner per record
====================

Each key family below is WRITTEN by exactly one service. Every other service reads it
through one typed reader in the shared package (`helios.runs_view` for run and task
state, `helios.definitions` for definitions, `helios.tasklogs` for logs), never by
decoding another service's layout, and never decides from another service's private keys.

| key family                                          | owner     | read by (through)         |
| --------------------------------------------------- | --------- | ------------------------- |
| `dag:{id}:definition`, `dag:{id}:useCache`,         | api       | all (`helios.definitions`)|
|   `dag:{id}:submission` (params, source, template) |           | (`helios.submissions`)    |
| `template:{n}` (hash), `template:{n}:versions`,     | api       | api (`helios.templates_store`)|
|   `templates` (index), `templates:seq`             |           |                           |
| `schedules`, `schedule:{n}:state`, `backfills:*`,   | api       | api (`services.api.firing`)|
|   `backfill:{id}`, `triggers`, `trigger:{n}:seen`,  |           |                           |
|   `firing:lease` (the firing loops' records)        |           |                           |
| `dag:{id}:run` (hash; see `run`)                    | scheduler | api, runner (`runs_view`) |
| `dag:{id}:task:{t}:status`, `:attempts`, `:detail`, | scheduler | api, runner (`runs_view`) |
|   `:outputs`; `dag:{id}:outbox`                     |           |                           |
| `runs:ended` (ended runs, for retention)            | scheduler | retention (same service)  |
| `runs:submitted`, `runs:name:{n}`, `runs:state:{s}`,| scheduler | api (`helios.runs_index`) |
|   `runs:name:{n}:state:{s}`, `runs:names` (the      |           |                           |
|   runs list index, see `helios.runs_index`)         |           |                           |
| `memo:{fp}`, `memo:last:{name}:{t}`, `memo:refs:{id}` | scheduler | retention (same service)|
| `dag:{id}:task:{t}:logs`                            | watcher   | api (`helios.tasklogs`)   |
| `dag:{id}:task:{t}:logs:cuts`                       | watcher   | api (`helios.tasklogs`)   |
| `dag:{id}:task:{t}:attempt:{n}:claim`, `:watch`     | watcher   | watcher only (private)    |
| attempt reports (NATS `helios.exec.{id}`, no key)   | watcher   | scheduler                 |
| `dag:{id}:metrics` (hash), `dagRuns:{name}` (list)  | metrics   | metrics api, clients      |
| `dag:{id}:metrics:*`, `metrics:*` (private)         | metrics   | metrics only              |
| `helios:services` (heartbeats)                      | each service its own field | api   |
| deletion of a whole run; `runs:deleted` (stream)    | retention (in the scheduler) | metrics |

Two documented exceptions: the api creates the run hash at submission (dagName, state
RUNNING, useCache, submittedAt, generation 0: the submission's part of it) before the
scheduler takes it over, and in the same MULTI the run's entry in the runs list index
(`helios.runs_index.index_submitted`: a run is listable the moment it is acknowledged, in
the state its hash says); and retention, which alone deletes, removes every key of an
expired run (`run_keys`) whoever wrote it. The metrics window is a view: a run leaving
`dagRuns:{name}` leaves the window and nothing else; retention tells the metrics service
which runs it deleted through `runs:deleted`, and metrics prunes its own per-name keys.

A new per-run key must be added to `run_keys`, or retention leaves it behind.
"""

from __future__ import annotations

from collections.abc import Mapping


def definition(dag_id: str) -> str:
    return f"dag:{dag_id}:definition"


def use_cache(dag_id: str) -> str:
    return f"dag:{dag_id}:useCache"


def submission(dag_id: str) -> str:
    """Hash: what the run was started from (params, source, template); see
    `helios.submissions`. Written once, with the definition."""
    return f"dag:{dag_id}:submission"


def template(name: str) -> str:
    """Hash of a stored DAG: latest (version), digest (of latest), createdAt, updatedAt."""
    return f"template:{name}"


def template_versions(name: str) -> str:
    """Hash: version number -> JSON {document, params, createdAt, digest}; never changed
    once written (see `helios.templates_store`)."""
    return f"template:{name}:versions"


TEMPLATES = "templates"
"""Sorted set of stored DAG names (score 0: listed in name order)."""

TEMPLATES_SEQ = "templates:seq"
"""Hash: name -> last version number given. Kept when a stored DAG is deleted, so a
re-created one never reuses a version number a run has recorded."""


def run(dag_id: str) -> str:
    """Hash: dagName, state, useCache, submittedAt, startedAt, endedAt, generation."""
    return f"dag:{dag_id}:run"


def task_status(dag_id: str, task: str) -> str:
    return f"dag:{dag_id}:task:{task}:status"


def task_logs(dag_id: str, task: str) -> str:
    return f"dag:{dag_id}:task:{task}:logs"


def task_log_cuts(dag_id: str, task: str) -> str:
    """Hash: attempt -> JSON {attempt, keptBytes, fullLog} of each attempt whose lines in
    `task_logs` were cut at HELIOS_LOG_MAX_BYTES (the whole log is in its object)."""
    return f"dag:{dag_id}:task:{task}:logs:cuts"


def task_attempts(dag_id: str, task: str) -> str:
    return f"dag:{dag_id}:task:{task}:attempts"


def task_detail(dag_id: str, task: str) -> str:
    """Hash: node, exitCode, reason, message, timings, cache, memoized, outputs (JSON)."""
    return f"dag:{dag_id}:task:{task}:detail"


def task_items(dag_id: str, task: str) -> str:
    """JSON list: the items a forEach task expanded into (instance `task[i]` has item i),
    written by the scheduler once, when it expands; read through `helios.instances`.
    Each instance's own keys are the task keys above with name `task[i]`."""
    return f"dag:{dag_id}:task:{task}:items"


def task_outputs(dag_id: str, task: str) -> str:
    """Hash: file name -> JSON {key, sha256, size} of each uploaded output."""
    return f"dag:{dag_id}:task:{task}:outputs"


def attempt_claim(dag_id: str, task: str, attempt: int) -> str:
    """SET NX by the executor that starts an attempt: a redelivery cannot start it twice."""
    return f"dag:{dag_id}:task:{task}:attempt:{attempt}:claim"


def attempt_watch(dag_id: str, task: str, attempt: int) -> str:
    """Hash: which steps (running, terminal, logs) the Kubernetes watcher has done for an
    attempt, so a restarted watcher neither reports nor archives anything twice."""
    return f"dag:{dag_id}:task:{task}:attempt:{attempt}:watch"


def metrics(dag_id: str) -> str:
    return f"dag:{dag_id}:metrics"


def metrics_state(dag_id: str) -> str:
    """Metrics-private hash: the latest event of the run and of each task."""
    return f"dag:{dag_id}:metrics:state"


def metrics_seen(dag_id: str) -> str:
    """Metrics-private set: applied message ids (a redelivery changes nothing)."""
    return f"dag:{dag_id}:metrics:seen"


def metrics_timings(dag_id: str) -> str:
    """Metrics-private string: JSON per-task phase durations of the run."""
    return f"dag:{dag_id}:metrics:timings"


def dag_runs(dag_name: str) -> str:
    return f"dagRuns:{dag_name}"


def memo(fingerprint: str) -> str:
    """Hash: a memoizable task's fingerprint -> the successful attempt it can reuse."""
    return f"memo:{fingerprint}"


def memo_refs(dag_id: str) -> str:
    """Set of fingerprints whose `memo:{fp}` entry was recorded pointing at this run's
    outputs: retention keeps those objects while such an entry lives, without a scan."""
    return f"memo:refs:{dag_id}"


def services() -> str:
    """Hash: "{service}/{instance}" -> JSON heartbeat (ready, checks, at)."""
    return "helios:services"


def supervisor() -> str:
    """Hash: child name -> JSON ProcessStatus (state, pid, restarts), written only by the
    `helios dev` supervisor (helios.devstack.status); absent in a cluster."""
    return "helios:supervisor"


def outbox(dag_id: str) -> str:
    """The scheduler's effects of a stored decision not yet confirmed as sent."""
    return f"dag:{dag_id}:outbox"


def memo_last(dag_name: str, task: str) -> str:
    """JSON fingerprint parts of the last successful memoizable attempt of a task name,
    so a task that runs again can say which part changed."""
    return f"memo:last:{dag_name}:{task}"


RUNS_ENDED = "runs:ended"
"""Sorted set: dagId -> endedAt of every ended run (the runs index). Written by the
scheduler in the same MULTI as the terminal run state, removed when a retry makes the run
RUNNING again; retention reads its oldest entries instead of scanning the keyspace."""

RUNS_SUBMITTED = "runs:submitted"
"""Sorted set: dagId -> submittedAt of every run (the runs list, newest first). With the
per-name, per-state and per-(name, state) sets below, maintained by `helios.runs_index`."""

RUN_NAMES = "runs:names"
"""Sorted set: dagName -> submittedAt of its newest run (the list page's name filter)."""

RUNS_INDEX_VERSION = "runs:index:version"
"""String: set once the scheduler has indexed the runs stored before the index existed
(`services.scheduler.index`)."""


def runs_by_name(dag_name: str) -> str:
    """Sorted set: dagId -> submittedAt of the runs of one DAG name."""
    return f"runs:name:{dag_name}"


def runs_by_state(state: str) -> str:
    """Sorted set: dagId -> submittedAt of the runs now in one run state."""
    return f"runs:state:{state}"


def runs_by_name_state(dag_name: str, state: str) -> str:
    """Sorted set: dagId -> submittedAt of one DAG name's runs now in one run state."""
    return f"runs:name:{dag_name}:state:{state}"


RUNS_DELETED = "runs:deleted"
"""Stream (capped): one entry {dagId, dagName} per run retention deleted, added in the
same MULTI as the deletion. The metrics service follows it to prune its window."""

RETENTION_OBJECTS = "retention:objects"
"""Sorted set: dagId -> when to (re)try deleting the objects under `dags/{dagId}/`.
Queued in the MULTI that deletes the run's keys (objects go after the keys, so a crash
between leaves work queued, never a half-deleted run that still looks alive). While a
live memo entry points at some of them, those stay and the run is queued again for when
the entry expires; `memo:refs:{dagId}` is deleted with the last of them."""


SCHEDULES = "schedules"
"""Hash: template name -> JSON schedule (cron, zone, policy, params...; api-written)."""

TRIGGERS = "triggers"
"""Hash: trigger name -> JSON trigger (source: objects or runSucceeded; api-written)."""

BACKFILLS = "backfills"
"""Sorted set: backfill id -> createdAt of every backfill (newest last)."""

BACKFILLS_ACTIVE = "backfills:active"
"""Set: ids of the backfills the firing loop still drives."""

FIRING_LEASE = "firing:lease"
"""String with a TTL: the api instance whose firing loops (schedules, backfills, object
triggers) run; the others wait. Deterministic run ids make an overlap harmless."""


def schedule_state(template: str) -> str:
    """Hash: cursor, lastRunId, lastTime, fired, skipped, lastError of one schedule."""
    return f"schedule:{template}:state"


def backfill(backfill_id: str) -> str:
    """Hash: spec (JSON, immutable), items (JSON, the loop's), state, endedAt, cancel."""
    return f"backfill:{backfill_id}"


def trigger_seen(trigger: str) -> str:
    """Hash: object key -> ETag of each object an object trigger has started a run for."""
    return f"trigger:{trigger}:seen"


def run_keys(dag_id: str, attempts: Mapping[str, int]) -> list[str]:
    """Every key of one run, given its task names and their highest attempt number
    (`memo:refs:{dagId}` excepted: it lives as long as the objects it protects)."""
    out = [definition(dag_id), use_cache(dag_id), submission(dag_id), run(dag_id), outbox(dag_id),
           metrics(dag_id), metrics_state(dag_id), metrics_seen(dag_id),
           metrics_timings(dag_id)]
    for task, last in attempts.items():
        out += [task_status(dag_id, task), task_logs(dag_id, task), task_log_cuts(dag_id, task),
                task_attempts(dag_id, task), task_detail(dag_id, task),
                task_outputs(dag_id, task), task_items(dag_id, task)]
        # Attempt numbers start at 1; one past the last covers a claim racing a report.
        for n in range(0, max(last, 0) + 2):
            out += [attempt_claim(dag_id, task, n), attempt_watch(dag_id, task, n)]
    return out
