"""Watcher side of the Kubernetes backend: Jobs and pods in, one report per phase out.

Two list+watch loops (Jobs, pods; `app=helios-task`) keep a cache of current objects
and put the Job's name on a work queue. A worker takes a name, re-reads what the cache
says now, and acts (Argo's controller shape, kept small):

- user container running: report `running`;
- attempt over: read every container's log, archive it (S3 object, then the Redis list,
  exactly once), report `succeeded`/`failed`, and only then delete the Job: its logs are
  safe before the garbage collector can take them (`ttlSecondsAfterFinished` is only the
  safety net);
- a bound past (`timeouts.py`: the command's timeoutSeconds from its start, the start
  timeout, an image that cannot be pulled, an unschedulable pod): fail it with what was
  timed, then delete the Job (the pod's short grace period stops the processes); a
  verdict that only time can change comes back on the queue when it falls due;
- pod being deleted (a deadline kill): read its logs now, while they still exist.

`ready` is set once both first lists are in; the first pass over the listed Jobs is the
reconciliation of everything that finished while the watcher was down. A Redis ledger
(`ledger.py`) makes every report and the log append happen once across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any, Literal

import redis.asyncio as aioredis

from helios import tasklogs
from helios.executors.base import ReportSink
from helios.executors.kubernetes.client import JOBS, PODS, KubeApi
from helios.executors.kubernetes.labels import A_OUTPUTS, A_RESULT, L_JOB, SELECTOR, AttemptId
from helios.executors.kubernetes.ledger import Ledger
from helios.executors.kubernetes.podlogs import assemble, read_pod
from helios.executors.kubernetes.results import fetch_result
from helios.executors.kubernetes.status import (
    EXECUTOR_LOST,
    IMAGE_PULL_FAILED,
    Verdict,
    judge,
    pick_pod,
    with_pull_error,
)
from helios.executors.kubernetes.timeouts import Bounds
from helios.executors.kubernetes.watch import ListWatch, WatchPolicy
from helios.executors.kubernetes.workqueue import WorkQueue
from helios.logs import log_fields
from helios.messages import TaskReport
from helios.results import INVALID_RESULT, ResultError
from helios.runs_view import read_run
from helios.runtime import cancel_all, guard
from helios.settings import Settings
from helios.states import RunState

log = logging.getLogger(__name__)

RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # a key whose handling failed comes back
JOB_NAME_LABELS = (L_JOB, "batch.kubernetes.io/job-name", "job-name")


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _job_of(pod: dict[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return next((labels[k] for k in JOB_NAME_LABELS if k in labels), None)


class KubernetesTaskSource:
    def __init__(self, api: KubeApi, settings: Settings, redis: aioredis.Redis, s3: Any,
                 policy: WatchPolicy | None = None, workers: int = 16):
        self.api = api
        self.settings = settings
        self.redis = redis
        self.s3 = s3
        self.policy = policy or WatchPolicy()
        self.workers = workers
        self.ledger = Ledger(redis)
        self.queue = WorkQueue()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.gone: dict[str, dict[str, Any]] = {}  # deleted Jobs not settled yet
        self.pods: dict[str, dict[str, dict[str, Any]]] = {}  # Job name -> pod name -> pod
        self.snapshots: dict[str, dict[str, str]] = {}  # logs read from a terminating pod
        self.pull_errors: dict[str, str] = {}  # Job name -> its last ErrImagePull message
        self.settled: OrderedDict[str, None] = OrderedDict()  # done here; bounded
        self.running: OrderedDict[tuple[str, str, int], None] = OrderedDict()  # reported
        self.failures: dict[str, int] = {}
        self.busy = 0
        self.idle = asyncio.Event()  # set while no worker holds a key
        self.idle.set()
        self.watches: list[ListWatch] = []

    # --- the cache, fed by the two watches ----------------------------------------

    async def _jobs_listed(self, items: list[dict[str, Any]]) -> None:
        fresh = {_name(j): j for j in items}
        for name in set(self.jobs) - set(fresh):
            self.gone[name] = self.jobs[name]  # deleted while we were not watching
        self.jobs = fresh
        for name in [*fresh, *self.gone]:
            self.queue.add(name)

    async def _job_event(self, kind: str, job: dict[str, Any]) -> None:
        name = _name(job)
        if kind == "DELETED":
            self.jobs.pop(name, None)
            self.gone[name] = job
        else:
            self.jobs[name] = job
        self.queue.add(name)

    async def _pods_listed(self, items: list[dict[str, Any]]) -> None:
        before = set(self.pods)
        self.pods = {}
        for pod in items:
            if (job := _job_of(pod)) is not None:
                self.pods.setdefault(job, {})[_name(pod)] = pod
        for name in before | set(self.pods):
            self.queue.add(name)

    async def _pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        job = _job_of(pod)
        if job is None:
            return
        if kind == "DELETED":
            self.pods.get(job, {}).pop(_name(pod), None)
            if not self.pods.get(job):
                self.pods.pop(job, None)
        else:
            self.pods.setdefault(job, {})[_name(pod)] = pod
        self.queue.add(job)

    # --- running ------------------------------------------------------------------

    async def run(self, sink: ReportSink, stop: asyncio.Event, ready: asyncio.Event) -> None:
        jobs = ListWatch(self.api, JOBS, SELECTOR, self.policy)
        pods = ListWatch(self.api, PODS, SELECTOR, self.policy)
        self.watches = [jobs, pods]
        listed = (asyncio.Event(), asyncio.Event())

        def first(on_list: Any, done: asyncio.Event) -> Any:
            async def wrapped(items: list[dict[str, Any]]) -> None:
                await on_list(items)
                done.set()
            return wrapped

        loops = [
            guard(jobs.run(first(self._jobs_listed, listed[0]), self._job_event, stop),
                  "watch:jobs"),
            guard(pods.run(first(self._pods_listed, listed[1]), self._pod_event, stop),
                  "watch:pods"),
        ]
        workers: list[asyncio.Task[Any]] = []
        try:
            # Work starts once both caches are whole: a Job seen without its pods would
            # look like an attempt whose pod (and logs) vanished.
            waits = [asyncio.ensure_future(e.wait()) for e in (*listed, stop)]
            try:
                while not all(e.is_set() for e in listed) and not stop.is_set():
                    await asyncio.wait([*(w for w in waits if not w.done()), *loops],
                                       return_when=asyncio.FIRST_COMPLETED)
                    if any(t.done() for t in loops):
                        raise RuntimeError("a watch loop crashed before the first list")
            finally:
                for w in waits:
                    w.cancel()
            if stop.is_set():
                return
            workers = [guard(self._work(sink), f"k8s-worker-{i}") for i in range(self.workers)]
            ready.set()
            log.info("watching Jobs and pods", extra={"jobs": len(self.jobs)})
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait([stopped, *loops], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
            if not stop.is_set():
                # A watch loop only ends on `stop`; anything else is a bug, and a watcher
                # that silently stopped watching is worse than one that restarts.
                raise RuntimeError("a watch loop ended unexpectedly")
        finally:
            await cancel_all(loops)
            await self._drain(workers)
            self.queue.close()

    async def _drain(self, workers: list[asyncio.Task[Any]]) -> None:
        """Let a worker finish the key it holds (logs half-archived are worse than late)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), self.settings.drain_timeout_s)
        await cancel_all(workers)

    async def _work(self, sink: ReportSink) -> None:
        while True:
            key = await self.queue.get()
            self.busy += 1
            self.idle.clear()
            try:
                await self._handle(key, sink)
                self.failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                n = self.failures.get(key, 0)
                self.failures[key] = n + 1
                pause = RETRY_S[min(n, len(RETRY_S) - 1)]
                log.exception("handling Job %s failed; again in %.1fs", key, pause,
                              extra=log_fields(job=key))
                self.queue.add_after(key, pause)
            finally:
                self.busy -= 1
                if not self.busy:
                    self.idle.set()
                self.queue.done(key)

    # --- one key ------------------------------------------------------------------

    async def _handle(self, name: str, sink: ReportSink) -> None:
        if name in self.settled:
            self._forget_if_gone(name)
            return
        job = self.jobs.get(name)
        deleted = job is None
        last = job or self.gone.get(name)
        if last is None:
            return  # pods of a Job we never saw: not ours to judge
        ident = AttemptId.from_object(last)
        if ident is None:  # labelled like ours, but not made by Helios: leave it alone
            self._forget_if_gone(name)
            return
        pod = pick_pod(list(self.pods.get(name, {}).values()))
        verdict = self._judge(last, pod, deleted)
        if verdict.terminating and not verdict.terminal and pod is not None:
            seen = self.snapshots.setdefault(name, {})
            for container, text in (await read_pod(self.api, pod)).items():
                if len(text) >= len(seen.get(container, "")):
                    seen[container] = text
        if not verdict.terminal and verdict.recheck_at is not None:
            # A bound (start, pull, the command's timeout) falls due then: look again.
            self.queue.add_after(name, max(0.05, verdict.recheck_at - time.time() + 0.05))
        if verdict.phase == "pending":
            if verdict.reason == "ErrImagePull" and verdict.message:
                self.pull_errors[name] = verdict.message  # the back-off may not repeat it
            return
        if verdict.timings.started_at is not None or verdict.phase == "running":
            await self._report_once(sink, ident, "running", verdict)
        if verdict.terminal:
            await self._settle(name, ident, last, pod, deleted, sink)

    def _judge(self, job: dict[str, Any], pod: dict[str, Any] | None, deleted: bool) -> Verdict:
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        outputs = json.loads(annotations.get(A_OUTPUTS) or "[]")
        return judge(job, pod, expects_upload=bool(outputs) or A_RESULT in annotations,
                     now=time.time(),
                     bounds=Bounds.for_job(job, self.settings.k8s), deleted=deleted)

    async def _settle(self, name: str, ident: AttemptId, job: dict[str, Any],
                      pod: dict[str, Any] | None, deleted: bool, sink: ReportSink) -> None:
        fields = log_fields(dagId=ident.dag_id, task=ident.task, attempt=ident.attempt, job=name)
        if not await self.ledger.done(ident.dag_id, ident.task, ident.attempt, "terminal"):
            # Re-read the pod before acting on it: the cache may trail the Job's events,
            # or not know the pod at all yet (the pods' re-list after a 410 may come later
            # than the Jobs'); settling without it would lose its logs.
            if pod is not None:
                pod = await self.api.get_pod(_name(pod)) or pod
            else:
                items, _ = await self.api.list(PODS, f"{L_JOB}={name}")
                pod = pick_pod(items)
            verdict = self._judge(job, pod, deleted)
            read = await read_pod(self.api, pod) if pod is not None else {}
            logs = assemble(pod, read, self.snapshots.get(name, {}), ident.attempt)
            report = await self._final_report(ident, verdict, logs.summary, logs.complete, job,
                                              deleted)
            # The object first, then the lines with their marker: once the marker is set
            # both are safe, and a later pass (maybe with the pod gone) must not overwrite.
            if not await self.ledger.done(ident.dag_id, ident.task, ident.attempt, "logs"):
                await tasklogs.archive_attempt(self.s3, self.settings.s3.bucket, ident.dag_id,
                                               ident.task, ident.attempt, logs.text)
                # Redis keeps the first HELIOS_LOG_MAX_BYTES; the object has it all.
                kept, cut_at = tasklogs.cap_lines(logs.lines, self.settings.log_max_bytes)
                cut = None if cut_at is None else tasklogs.LogCut(
                    ident.attempt, cut_at, tasklogs.archive_url(
                        self.settings.s3.bucket, ident.dag_id, ident.task, ident.attempt))
                await self.ledger.append_logs_once(ident.dag_id, ident.task, ident.attempt,
                                                   kept, cut)
            await self._report_once(sink, ident, "terminal", verdict, report)
            log.info("attempt %s%s", report.phase,
                     f": {report.reason}" if report.reason else "", extra=fields)
        if not deleted:
            await self.api.delete_job(name, "Background")
        self.settled[name] = None
        while len(self.settled) > 50_000:
            self.settled.popitem(last=False)
        self.snapshots.pop(name, None)
        self.pull_errors.pop(name, None)
        self.queue.forget(name)
        self._forget_if_gone(name)

    def _forget_if_gone(self, name: str) -> None:
        if name not in self.jobs:
            self.gone.pop(name, None)

    async def _final_report(self, ident: AttemptId, v: Verdict, summary: Any, complete: bool,
                            job: dict[str, Any], deleted: bool = False) -> TaskReport:
        phase: Literal["succeeded", "failed"] = "succeeded" if v.phase == "succeeded" else "failed"
        reason, message = v.reason, v.message
        if reason == IMAGE_PULL_FAILED:
            message = with_pull_error(message, self.pull_errors.get(_name(job)))
        declared = json.loads(((job.get("metadata") or {}).get("annotations") or {})
                              .get(A_OUTPUTS) or "[]")
        uploaded = {o.name for o in summary.outputs}
        if phase == "succeeded" and not set(declared) <= uploaded:
            # Succeeded, but the uploader's log that names the uploaded objects (with
            # their digests, which downstream inputs need) could not be read.
            phase, reason = "failed", "UploadFailed"
            message = "the uploaded outputs could not be confirmed: " + (
                "the uploader's log was lost" if not complete else "the uploader did not "
                f"report {', '.join(sorted(set(declared) - uploaded))}")
        result = None
        result_key = ((job.get("metadata") or {}).get("annotations") or {}).get(A_RESULT)
        if phase == "succeeded" and result_key:
            try:
                result = await fetch_result(self.s3, self.settings.s3.bucket, result_key)
            except ResultError as exc:
                phase, reason, message = "failed", INVALID_RESULT, str(exc)
        if deleted and reason == EXECUTOR_LOST and await self._run_cancelled(ident.dag_id):
            reason, message = "Cancelled", "the run was cancelled"
        timings = v.timings.model_copy()
        if timings.finished_at is None:
            timings.finished_at = time.time()
        return TaskReport(
            dag_id=ident.dag_id, task=ident.task, attempt=ident.attempt, phase=phase,
            at=time.time(), exit_code=v.exit_code, reason=reason, message=message,
            node=v.node, timings=timings, cache=summary.cache,
            outputs=summary.outputs if phase == "succeeded" else [], result=result,
        )

    async def _run_cancelled(self, dag_id: str) -> bool:
        with contextlib.suppress(Exception):
            run = await read_run(self.redis, dag_id, [], detail=False)  # the scheduler's record
            return run is not None and run.state == RunState.CANCELLED
        return False

    async def _report_once(self, sink: ReportSink, ident: AttemptId, step: str, v: Verdict,
                           report: TaskReport | None = None) -> None:
        d, t, a = ident.dag_id, ident.task, ident.attempt
        if step == "running" and (d, t, a) in self.running:
            return  # known here: spare Redis a round trip per pod event
        if await self.ledger.done(d, t, a, "terminal"):
            return  # nothing follows a terminal report, not even a late `running`
        if step == "running" and await self.ledger.done(d, t, a, "running"):
            return
        if report is None:
            report = TaskReport(dag_id=d, task=t, attempt=a, phase="running", at=time.time(),
                                node=v.node, timings=v.timings)
        await sink(report)
        await self.ledger.mark(d, t, a, "terminal" if step == "terminal" else "running")
        if step == "running":
            self.running[(d, t, a)] = None
            while len(self.running) > 50_000:
                self.running.popitem(last=False)
