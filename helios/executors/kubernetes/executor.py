"""Scheduler side of the Kubernetes backend: create one Job per attempt, delete on cancel.

`launch` is idempotent by the Job's deterministic name: a 409 AlreadyExists means the
attempt was dispatched before (a redelivered message), never a second run. Transient API
errors are retried a few times (data below), then raised so the scheduler redelivers.

A global cap (`max_parallel_jobs`) and a per-run cap (`max_parallel_jobs_per_run`) bound
the unfinished Jobs; all calls share the client's token bucket (`api_qps`). The caps are
counted locally and re-counted by a list of the Jobs only when one looks full, so the
scheduler needs no watch permission and a quiet cluster costs no extra requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import aiohttp

from helios.bus import Transient
from helios.executors.kubernetes.client import JOBS, KubeApi, KubeError
from helios.executors.kubernetes.jobs import build_job
from helios.executors.kubernetes.labels import L_RUN, SELECTOR, label_value, run_selector
from helios.logs import log_fields
from helios.messages import TaskDispatch
from helios.settings import Settings

log = logging.getLogger(__name__)

RETRY_S = (0.2, 1.0, 3.0)  # pauses between attempts of a transient create/delete failure
TRANSIENT = frozenset({429, 500, 502, 503, 504})


class CapacityExceeded(Transient):
    """No Job slot freed up within `slot_wait_s`: the caller should try again later."""

    def __init__(self, reason: str, delay: float = 5.0):
        super().__init__(reason, delay)


def finished(job: dict[str, Any]) -> bool:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return True
    return bool((job.get("metadata") or {}).get("deletionTimestamp"))


class JobSlots:
    """The unfinished Jobs this scheduler knows of, by run, bounded by two caps."""

    def __init__(self, api: KubeApi, cap: int, per_run: int, refresh_s: float = 2.0):
        self.api = api
        self.cap = cap
        self.per_run = per_run
        self.refresh_s = refresh_s
        self.active: dict[str, str] = {}  # Job name -> run label
        self._refreshed = float("-inf")
        self._lock = asyncio.Lock()

    def _fits(self, run: str) -> bool:
        return len(self.active) < self.cap and \
            sum(1 for r in self.active.values() if r == run) < self.per_run

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._refreshed < self.refresh_s:
                return  # another waiter just did it
            items, _ = await self.api.list(JOBS, SELECTOR)
            self.active = {
                j["metadata"]["name"]: (j["metadata"].get("labels") or {}).get(L_RUN, "")
                for j in items if not finished(j)
            }
            self._refreshed = time.monotonic()

    async def acquire(self, name: str, run: str, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        if self._refreshed == float("-inf"):
            await self.refresh()  # a restarted scheduler starts from the cluster's count
        while name not in self.active and not self._fits(run):
            if time.monotonic() - self._refreshed >= self.refresh_s:
                await self.refresh()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise CapacityExceeded(
                    f"{len(self.active)} unfinished Jobs (cap {self.cap}, {self.per_run} per run)")
            await asyncio.sleep(min(left, self.refresh_s))
        self.active[name] = run

    def release(self, name: str) -> None:
        self.active.pop(name, None)

    def release_run(self, run: str) -> None:
        self.active = {n: r for n, r in self.active.items() if r != run}


class KubernetesExecutor:
    def __init__(self, api: KubeApi, settings: Settings, slot_wait_s: float = 10.0):
        self.api = api
        self.settings = settings
        self.slots = JobSlots(api, settings.k8s.max_parallel_jobs,
                              settings.k8s.max_parallel_jobs_per_run)
        self.slot_wait_s = slot_wait_s
        self.retry_s = RETRY_S
        # Runs cancelled lately: a launch still waiting for a slot must not start them.
        self._cancelled: OrderedDict[str, None] = OrderedDict()

    async def launch(self, dispatch: TaskDispatch) -> None:
        fields = log_fields(dagId=dispatch.dag_id, task=dispatch.task.name,
                            attempt=dispatch.attempt, job=dispatch.job_name)
        run = label_value(dispatch.dag_id)
        await self.slots.acquire(dispatch.job_name, run, self.slot_wait_s)
        if dispatch.dag_id in self._cancelled:
            self.slots.release(dispatch.job_name)
            log.info("run cancelled: attempt not started", extra=fields)
            return
        body = build_job(dispatch, self.settings)
        try:
            await self._with_retries(self.api.create_job, body)
        except KubeError as exc:
            if exc.code == 409:
                log.info("Job exists: attempt already dispatched", extra=fields)
                return
            self.slots.release(dispatch.job_name)
            raise
        except BaseException:
            self.slots.release(dispatch.job_name)
            raise
        log.info("Job created", extra=fields)

    async def cancel_run(self, dag_id: str) -> None:
        """Delete every Job of the run; the garbage collector removes their pods.

        `Background` returns at once, whatever the pods do; the garbage collector deletes
        them with their own terminationGracePeriodSeconds (HELIOS_K8S_CANCEL_GRACE_S, set
        by `jobs.py`), after which the kubelet SIGKILLs whatever ignored the SIGTERM."""
        self._cancelled[dag_id] = None
        while len(self._cancelled) > 10_000:
            self._cancelled.popitem(last=False)
        items, _ = await self._with_retries(self.api.list, JOBS, run_selector(dag_id))
        for job in items:
            name = job["metadata"]["name"]
            await self._with_retries(self.api.delete_job, name, "Background")
            log.info("Job deleted (run cancelled)", extra=log_fields(dagId=dag_id, job=name))
        self.slots.release_run(label_value(dag_id))

    async def close(self) -> None:
        return None

    async def _with_retries(self, call: Any, *args: Any) -> Any:
        for pause in (*self.retry_s, None):
            try:
                return await call(*args)
            except KubeError as exc:
                if exc.code not in TRANSIENT or pause is None:
                    raise
                await asyncio.sleep(exc.retry_after or pause)
            except (TimeoutError, OSError, aiohttp.ClientError):
                if pause is None:
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")
