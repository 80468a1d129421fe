"""The simulated controller manager: the Job controller and the garbage collector.

Job controller: a new Job gets one pod from its template (the labels and ownerReference
the real controller sets), `startTime` and `active`; the pod's end sets `Complete` or
`FailureTarget`+`Failed` (BackoffLimitExceeded, backoffLimit being 0); past
`activeDeadlineSeconds` the Job fails with DeadlineExceeded and its pod is deleted;
`ttlSecondsAfterFinished` after the end the Job is deleted in the background.

Deletes, as the API server and the garbage collector do them: `Orphan` (batch/v1's
default) leaves the pods; `Background` removes the Job and then its pods; `Foreground`
marks the Job, removes its pods, then the Job. A pod is deleted gracefully: it gets a
deletionTimestamp and the kubelet removes it after terminating it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from .defaults import GRACE_DEFAULT_S
from .store import Event, Obj, Store, now_rfc3339

log = logging.getLogger(__name__)


def _job_cond(kind: str, reason: str, message: str) -> Obj:
    at = now_rfc3339()
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": at, "lastTransitionTime": at}


class Controllers:
    def __init__(self, store: Store):
        self.store = store
        self.tasks: set[asyncio.Task[Any]] = set()
        store.listeners.append(self._on_event)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("stand-in controller task %s crashed", name, exc_info=t.exception())
        task.add_done_callback(done)

    def _on_event(self, event: Event) -> None:
        meta = event.obj["metadata"]
        if event.resource == "jobs" and event.type == "ADDED":
            self._start(event.obj)
        elif event.resource == "pods" and event.type in ("MODIFIED", "DELETED"):
            owner = self._owner(event.obj)
            if owner is not None:
                self._pod_changed(meta["namespace"], owner, event.obj, event.type)

    @staticmethod
    def _owner(pod: Obj) -> str | None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "Job" and ref.get("controller"):
                return str(ref["name"])
        return None

    # --- the Job controller -----------------------------------------------------------

    def _start(self, job: Obj) -> None:
        meta, spec = job["metadata"], job["spec"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        template = spec.get("template") or {}
        labels = {**(template.get("metadata") or {}).get("labels", {}),
                  "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                  "batch.kubernetes.io/job-name": name, "job-name": name}

        def defaults(j: Obj) -> None:
            j["spec"].setdefault("selector", {"matchLabels": {
                "batch.kubernetes.io/controller-uid": uid}})
            j["spec"]["template"].setdefault("metadata", {})["labels"] = labels
            j["spec"].setdefault("completionMode", "NonIndexed")
            j["spec"].setdefault("suspend", False)
            j["status"].update(startTime=now_rfc3339(), active=1, ready=0,
                               uncountedTerminatedPods={})
        self.store.update("jobs", ns, name, defaults)
        pod = {
            "metadata": {
                "name": f"{name[:57]}-{uuid.uuid4().hex[:5]}",
                "labels": labels,
                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                     "uid": uid, "controller": True,
                                     "blockOwnerDeletion": True}],
                "finalizers": ["batch.kubernetes.io/job-tracking"],
            },
            "spec": {"terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                     "schedulerName": "default-scheduler", **template.get("spec", {})},
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        self.store.create("pods", ns, pod)
        deadline = spec.get("activeDeadlineSeconds")
        if deadline:
            self._spawn(self._deadline(ns, name, uid, float(deadline)), f"deadline:{name}")

    def _finished(self, job: Obj) -> bool:
        return any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                   for c in job["status"].get("conditions") or [])

    def _end(self, ns: str, name: str, ok: bool, reason: str = "", message: str = "") -> None:
        def mutate(j: Obj) -> None:
            if self._finished(j):
                return
            st = j["status"]
            st["active"], st["ready"] = 0, 0
            if ok:
                st["succeeded"] = 1
                st["completionTime"] = now_rfc3339()
                st["conditions"] = [
                    _job_cond("SuccessCriteriaMet", "CompletionsReached",
                              "Reached expected number of succeeded pods"),
                    _job_cond("Complete", "CompletionsReached",
                              "Reached expected number of succeeded pods")]
            else:
                st["failed"] = 1
                st["conditions"] = [_job_cond("FailureTarget", reason, message),
                                    _job_cond("Failed", reason, message)]
        job = self.store.update("jobs", ns, name, mutate)
        ttl = (job or {}).get("spec", {}).get("ttlSecondsAfterFinished")
        if job is not None and ttl is not None:
            self._spawn(self._ttl(ns, name, job["metadata"]["uid"], float(ttl)), f"ttl:{name}")

    def _pod_changed(self, ns: str, job_name: str, pod: Obj, kind: str) -> None:
        phase = pod["status"].get("phase")
        if phase == "Succeeded":
            self._end(ns, job_name, True)
        elif phase == "Failed" or kind == "DELETED":  # a lost pod counts as a failure
            self._end(ns, job_name, False, "BackoffLimitExceeded",
                      "Job has reached the specified backoff limit")
        job = self.store.find("jobs", ns, job_name)
        if job is not None and job["metadata"].get("deletionTimestamp") and kind == "DELETED" \
                and not self._pods_of(ns, job["metadata"]["uid"]):
            self.store.remove("jobs", ns, job_name)  # Foreground: the last pod is gone

    async def _deadline(self, ns: str, name: str, uid: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        job = self.store.find("jobs", ns, name)
        if job is None or job["metadata"]["uid"] != uid or self._finished(job):
            return
        self._end(ns, name, False, "DeadlineExceeded",
                  "Job was active longer than specified deadline")
        for pod in self._pods_of(ns, uid):
            self.delete_pod(ns, pod["metadata"]["name"])

    async def _ttl(self, ns: str, name: str, uid: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        job = self.store.find("jobs", ns, name)
        if job is not None and job["metadata"]["uid"] == uid:
            self.delete("jobs", ns, name, "Background")

    # --- deletes and the garbage collector ---------------------------------------------

    def _pods_of(self, ns: str, uid: str) -> list[Obj]:
        return [p for p in self.store.list("pods", ns)
                if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]

    def delete_pod(self, ns: str, name: str, grace: int | None = None) -> Obj | None:
        """Mark a pod deleted: the kubelet gives it `grace` seconds (else the pod's
        terminationGracePeriodSeconds, as for the garbage collector's and the Job
        controller's deletes, which pass none) between SIGTERM and SIGKILL."""
        def mark(p: Obj) -> None:
            spec_grace = p["spec"].get("terminationGracePeriodSeconds", GRACE_DEFAULT_S)
            p["metadata"].setdefault("deletionTimestamp", now_rfc3339())
            p["metadata"].setdefault("deletionGracePeriodSeconds",
                                     spec_grace if grace is None else grace)
        return self.store.update("pods", ns, name, mark)

    def delete(self, resource: str, ns: str, name: str, policy: str | None,
               grace: int | None = None) -> Obj:
        """DELETE as the API answers it; returns the object as it is after the call.
        `grace` (gracePeriodSeconds) applies to the object named only: dependents
        deleted by the garbage collector get their own spec's grace period."""
        obj = self.store.get(resource, ns, name)
        if resource == "pods":
            return self.delete_pod(ns, name, grace) or obj
        if resource != "jobs":
            return self.store.remove(resource, ns, name) or obj
        uid = obj["metadata"]["uid"]
        pods = self._pods_of(ns, uid)
        if policy == "Foreground" and pods:
            def mark(j: Obj) -> None:
                j["metadata"].setdefault("deletionTimestamp", now_rfc3339())
                j["metadata"].setdefault("finalizers", ["foregroundDeletion"])
            marked = self.store.update("jobs", ns, name, mark)
            for pod in pods:
                self.delete_pod(ns, pod["metadata"]["name"])
            return marked or obj
        removed = self.store.remove("jobs", ns, name) or obj
        for pod in pods:
            if policy in ("Background", "Foreground"):
                self.delete_pod(ns, pod["metadata"]["name"])
            else:  # Orphan: the pods stay, without their owner
                self.store.update("pods", ns, pod["metadata"]["name"],
                                  lambda p: p["metadata"].pop("ownerReferences", None))
        return removed

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
