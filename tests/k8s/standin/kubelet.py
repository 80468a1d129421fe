"""The simulated kubelets (one per simulated node) and the scheduler that binds pods.

A new pod is bound to the first schedulable node that matches its nodeSelector (so
repeated runs land on one node until a test cordons it), or marked Unschedulable. Its
init containers then run one after the other and its containers together, each as a
local process in a bubblewrap sandbox (`sandbox.py`); container states, pod phase and
conditions are written back as the real kubelet writes them, and each container's
output is kept as its log. A node's `start_delay_s` holds its pods in
ContainerCreating/PodInitializing that long after binding (a busy node, a slow pull).

Images, by `imagePullPolicy` (defaulted by the API server, `defaults.py`) as the real
kubelet treats them: each node has the images in `Node.images` (Helios's task image
always); `Never` with an image the node lacks waits with ErrImageNeverPull; a pull
(`Always`, or `IfNotPresent` with the image absent) of an image in `bad_images` (not in
any reachable registry) waits with ErrImagePull, then ImagePullBackOff, with the
kubelet's messages; any other pull succeeds and the node keeps the image.

Each container's command runs as PID 1 of its own PID namespace, as in a container: a
PID 1 without a SIGTERM handler (a shell, `sleep`) ignores SIGTERM. A pod that gets a
deletionTimestamp is terminated as the kubelet does it: SIGTERM to each container's
PID 1, SIGKILL to whatever is left after `deletionGracePeriodSeconds`; the statuses are
recorded and the object is removed `linger_s` later (the window in which a real cluster
still serves the logs of a terminating pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import sandbox
from .defaults import GRACE_DEFAULT_S, default_pull_policy
from .store import Event, Obj, Store, now_rfc3339

log = logging.getLogger(__name__)
LOG_TAIL_LINES, LOG_TAIL_BYTES = 80, 2048  # FallbackToLogsOnError's limits


@dataclass
class Node:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    cordoned: bool = False
    images: set[str] = field(default_factory=set)  # present on the node (pulled or loaded)
    start_delay_s: float = 0.0  # from binding to the first container's start

    def __post_init__(self) -> None:
        self.labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                       **self.labels}


def _cond(kind: str, status: bool, reason: str | None = None, message: str | None = None
          ) -> Obj:
    out: Obj = {"type": kind, "status": "True" if status else "False",
                "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _set_cond(status: Obj, cond: Obj) -> None:
    conds = [c for c in status.get("conditions") or [] if c["type"] != cond["type"]]
    status["conditions"] = [*conds, cond]


class Kubelet:
    def __init__(self, store: Store, root: Path, nodes: list[Node], task_image: str,
                 bwrap: str = "/usr/bin/bwrap", linger_s: float = 1.0):
        self.store = store
        self.root = root
        self.nodes = {n.name: n for n in nodes}
        self.task_image = task_image
        self.bwrap = bwrap
        self.linger_s = linger_s
        self.bad_images: set[str] = set()
        self.logs: dict[tuple[str, str, str], Path] = {}  # (ns, pod, container) -> file
        self.procs: dict[tuple[str, str], dict[str, asyncio.subprocess.Process]] = {}
        self.runs: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.terminating: set[tuple[str, str]] = set()
        store.listeners.append(self._on_event)

    # --- events -------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("stand-in kubelet task %s crashed", name, exc_info=t.exception())
        task.add_done_callback(done)
        return task

    def _on_event(self, event: Event) -> None:
        if event.resource != "pods":
            return
        meta = event.obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if event.type == "ADDED":
            self.runs[key] = self._spawn(self._run_pod(*key), f"pod:{key[1]}")
        elif event.type == "MODIFIED" and meta.get("deletionTimestamp") \
                and key not in self.terminating:
            self.terminating.add(key)
            self._spawn(self._terminate(*key), f"terminate:{key[1]}")

    def _update(self, ns: str, name: str, mutate: Any) -> Obj | None:
        return self.store.update("pods", ns, name, lambda pod: mutate(pod["status"]))

    # --- scheduling ---------------------------------------------------------------

    def _bind(self, pod: Obj) -> Node | None:
        wanted = (pod["spec"].get("nodeSelector")) or {}
        for node in self.nodes.values():
            if not node.cordoned and all(node.labels.get(k) == v for k, v in wanted.items()):
                return node
        return None

    async def _run_pod(self, ns: str, name: str) -> None:
        pod = self.store.find("pods", ns, name)
        if pod is None:
            return
        node = self._bind(pod)
        if node is None:
            n = len(self.nodes)
            self._update(ns, name, lambda st: _set_cond(st, _cond(
                "PodScheduled", False, "Unschedulable",
                f"0/{n} nodes are available: {n} node(s) didn't match Pod's node "
                "affinity/selector.")))
            return
        containers = pod["spec"].get("containers") or []
        inits = pod["spec"].get("initContainers") or []

        def waiting(c: Obj, reason: str, message: str | None = None) -> Obj:
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
            return {"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                    "restartCount": 0, "started": False, "state": state, "lastState": {}}

        def bound(st: Obj) -> None:
            st.update(phase="Pending", hostIP="10.0.0.1", podIP=f"10.1.0.{len(self.runs) % 250}",
                      startTime=now_rfc3339(), qosClass="BestEffort")
            _set_cond(st, _cond("PodScheduled", True))
            _set_cond(st, _cond("Initialized", not inits, None if not inits
                                else "ContainersNotInitialized"))
            if inits:
                st["initContainerStatuses"] = [waiting(c, "PodInitializing") for c in inits]
            st["containerStatuses"] = [waiting(c, "PodInitializing" if inits
                                               else "ContainerCreating") for c in containers]
        def bind(p: Obj) -> None:
            p["spec"]["nodeName"] = node.name
            bound(p["status"])
        self.store.update("pods", ns, name, bind)
        if node.start_delay_s:
            await asyncio.sleep(node.start_delay_s)  # sandbox, volumes, a slow disk...
        volumes = self._volumes(pod, node)
        for c in inits:
            code = await self._container(ns, name, c, volumes, "initContainerStatuses", node)
            if code != 0:
                self._finish(ns, name, "Failed")
                return
        self._update(ns, name, lambda st: _set_cond(st, _cond("Initialized", True)))
        codes = await asyncio.gather(*(self._container(ns, name, c, volumes,
                                                       "containerStatuses", node)
                                       for c in containers))
        if any(code is None for code in codes):
            return  # a container that never started keeps the pod Pending
        self._finish(ns, name, "Succeeded" if not any(codes) else "Failed")

    def _finish(self, ns: str, name: str, phase: str) -> None:
        def mutate(st: Obj) -> None:
            st["phase"] = phase
            _set_cond(st, _cond("Ready", False, "PodCompleted"))
            _set_cond(st, _cond("ContainersReady", False, "PodCompleted"))
        self._update(ns, name, mutate)

    def _volumes(self, pod: Obj, node: Node) -> dict[str, Path]:
        """Volume name -> its folder on the node (plus "/logs", the containers' logs)."""
        base = self.root / node.name
        out: dict[str, Path] = {"/logs": base / "pods" / pod["metadata"]["uid"] / "logs"}
        out["/logs"].mkdir(parents=True, exist_ok=True)
        for vol in pod["spec"].get("volumes") or []:
            if "emptyDir" in vol:
                path = base / "pods" / pod["metadata"]["uid"] / "volumes" / vol["name"]
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)  # as the kubelet makes emptyDirs
            elif "hostPath" in vol:
                path = base / "hostfs" / vol["hostPath"]["path"].lstrip("/")
                path.mkdir(parents=True, exist_ok=True)
            else:
                continue
            out[vol["name"]] = path
        return out

    # --- one container ------------------------------------------------------------

    def _set_state(self, ns: str, name: str, key: str, cname: str, state: Obj,
                   **extra: Any) -> None:
        def mutate(st: Obj) -> None:
            for cs in st.get(key) or []:
                if cs["name"] == cname:
                    cs["state"] = state
                    cs.update(extra)
            started = all("running" in cs["state"] or "terminated" in cs["state"]
                          for cs in st.get(key) or [])
            if key == "containerStatuses" and started and st.get("phase") == "Pending":
                st["phase"] = "Running"
        self._update(ns, name, mutate)

    async def _ensure_image(self, ns: str, name: str, key: str, c: Obj, node: Node) -> bool:
        """The image is on the node (pulled if the policy says so); else the container
        waits with the kubelet's reason and message, and False."""
        image = str(c["image"])
        policy = c.get("imagePullPolicy") or default_pull_policy(image)
        present = image == self.task_image or image in node.images

        def wait(reason: str, message: str) -> None:
            self._set_state(ns, name, key, c["name"], {"waiting": {"reason": reason,
                                                                   "message": message}})
        if policy == "Never" and not present:
            wait("ErrImageNeverPull",
                 f'Container image "{image}" is not present with pull policy of Never')
            return False
        if policy == "Never" or (policy == "IfNotPresent" and present):
            return True
        if image in self.bad_images:
            ref = _qualified(image)
            error = (f'rpc error: code = NotFound desc = failed to pull and unpack image '
                     f'"{ref}": failed to resolve reference "{ref}": {ref}: not found')
            wait("ErrImagePull", error)
            await asyncio.sleep(0.2)
            # Since v1.32 the back-off message carries the last pull error.
            wait("ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {error}')
            return False
        node.images.add(image)
        return True

    async def _container(self, ns: str, name: str, c: Obj, volumes: dict[str, Path],
                         key: str, node: Node) -> int | None:
        pod = self.store.find("pods", ns, name)
        if pod is None or (ns, name) in self.terminating:
            return 137
        helios = c["image"] == self.task_image
        if not await self._ensure_image(ns, name, key, c, node):
            return None
        try:
            env = sandbox.container_env(c, self._secrets(ns), helios, name)
            command = sandbox.argv(c, env, helios)
        except (LookupError, ValueError) as exc:
            self._set_state(ns, name, key, c["name"], {"waiting": {
                "reason": "CreateContainerConfigError", "message": str(exc)}})
            return None
        mounts = [(volumes[m["name"]], m["mountPath"], bool(m.get("readOnly")))
                  for m in c.get("volumeMounts") or [] if m["name"] in volumes]
        security = {**(pod["spec"].get("securityContext") or {}),
                    **(c.get("securityContext") or {})}
        try:
            argv = sandbox.bwrap_argv(self.bwrap, command, mounts, c.get("workingDir") or "/",
                                      name, security)
        except LookupError as exc:
            self._set_state(ns, name, key, c["name"], {"waiting": {
                "reason": "CreateContainerConfigError", "message": str(exc)}})
            return None
        started = now_rfc3339()
        cid = f"standin://{uuid.uuid4().hex}"
        # Output goes to a file, as the kubelet's log files: readable while it runs, and
        # no pipe whose end a killed sandbox could leave dangling.
        log_file = volumes["/logs"] / f"{c['name']}.log"
        with log_file.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        self.procs.setdefault((ns, name), {})[c["name"]] = proc
        if (ns, name) in self.terminating:  # deleted while it was starting
            self._kill(proc, signal.SIGTERM)
        self.logs[(ns, name, c["name"])] = log_file
        self._set_state(ns, name, key, c["name"], {"running": {"startedAt": started}},
                        started=True, ready=True, containerID=cid)
        code = await proc.wait()
        code = 128 - code if code < 0 else code  # killed by a signal: 128 + its number
        text = self.log_text(ns, name, c["name"]) or ""
        terminated: Obj = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                           "startedAt": started, "finishedAt": now_rfc3339(),
                           "containerID": cid}
        if code != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            tail = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
            terminated["message"] = tail[-LOG_TAIL_BYTES:]
        self._set_state(ns, name, key, c["name"], {"terminated": terminated},
                        started=False, ready=False)
        return code

    def log_text(self, ns: str, pod: str, container: str) -> str | None:
        """What `pods/{pod}/log?container=` serves; None for a container not started."""
        path = self.logs.get((ns, pod, container))
        return path.read_bytes().decode(errors="replace") if path is not None else None

    def _secrets(self, ns: str) -> dict[str, dict[str, str]]:
        import base64

        out = {}
        for secret in self.store.list("secrets", ns):
            data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            data.update(secret.get("stringData") or {})
            out[secret["metadata"]["name"]] = data
        return out

    # --- deletion -----------------------------------------------------------------

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        """Signal the container's whole process group, even once bwrap itself is gone: its
        pid-namespace init ignores SIGTERM and may outlive it if killed while starting."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    @staticmethod
    def _init_pid(proc: asyncio.subprocess.Process) -> int | None:
        """The host pid of the container's PID 1: bwrap's child (`--as-pid-1`)."""
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    async def _terminate(self, ns: str, name: str) -> None:
        pod = self.store.find("pods", ns, name) or {}
        grace = float(pod.get("metadata", {}).get("deletionGracePeriodSeconds",
                                                  GRACE_DEFAULT_S))
        running = [p for p in self.procs.get((ns, name), {}).values() if p.returncode is None]
        for proc in running:
            # To PID 1 only, as the runtime does: without a handler, PID 1 ignores it.
            pid = self._init_pid(proc)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
        run = self.runs.get((ns, name))
        if run is not None and not run.done():
            if running:  # a pod stuck Pending (image pull, no node) has nothing to wait for
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(run), grace)
                for proc in running:
                    self._kill(proc, signal.SIGKILL)  # the grace period is over
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    # Let the run record the killed containers' statuses (137).
                    await asyncio.wait_for(asyncio.shield(run), 5.0)
            run.cancel()
        for proc in self.procs.get((ns, name), {}).values():
            self._kill(proc, signal.SIGKILL)  # stragglers
        await asyncio.sleep(self.linger_s)
        self.store.remove("pods", ns, name)
        self.procs.pop((ns, name), None)
        self.runs.pop((ns, name), None)
        self.terminating.discard((ns, name))
        for key in [k for k in self.logs if k[:2] == (ns, name)]:
            del self.logs[key]

    async def close(self) -> None:
        for per_pod in self.procs.values():
            for proc in per_pod.values():
                self._kill(proc, signal.SIGKILL)
        # Let the pods' runs reap their killed processes, so no transport outlives the
        # loop; what only waits (a linger, a pod stuck Pending) is cancelled right away.
        runs = [t for t in self.runs.values() if not t.done()]
        if runs:
            await asyncio.wait(runs, timeout=1.0)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _qualified(image: str) -> str:
    """The reference as containerd names it in its errors (docker.io/library/x:latest)."""
    name, _, digest = image.partition("@")
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if not digest and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return f"{name}@{digest}" if digest else name
