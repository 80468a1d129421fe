"""One attempt on this machine: place inputs, run the sandboxed command, upload outputs.

The same steps as a Kubernetes pod (downloader, user container, uploader), producing
the same `[HELIOS]` log lines and the same `TaskReport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from helios.artifacts.cache import NodeCache
from helios.artifacts.downloader import place_inputs
from helios.artifacts.uploader import MissingOutputs, OutputTooLarge, upload_outputs
from helios.executors.local import limits
from helios.executors.local.cgroups import TaskCgroup, limits_of
from helios.executors.local.logsink import AttemptLog
from helios.executors.local.network import NetworkSetupError, OutboundLink
from helios.executors.local.sandbox import (
    ARTIFACTS,
    bwrap_argv,
    launcher_argv,
    launcher_env,
    prepare_root,
    staged,
    task_env,
)
from helios.executors.local.secrets import SecretError, args_fd, resolve
from helios.logs import log_fields
from helios.messages import CacheStats, OutputArtifact, TaskDispatch, TaskReport, Timings
from helios.results import INVALID_RESULT, ResultError, read_result

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.5  # how often the disk caps are checked while a task runs
# The task (or the shell that ran it) died of SIGXFSZ: a file hit RLIMIT_FSIZE.
XFSZ_CODES = (128 + signal.SIGXFSZ, -signal.SIGXFSZ)
# Waits between tries to remove a finished attempt's cgroup (busy until its last
# process is reaped, usually within a few ms).
CGROUP_REMOVE_RETRY_S = (0.002, 0.005, 0.01, 0.02, 0.05, *(0.1,) * 20)
# An outbound sandbox whose network could not be attached (its command still blocked,
# never run) is started again once: a CI run saw bwrap gone before it was let go (EPIPE).
NETWORK_SETUP_TRIES = 2


@dataclass
class Outcome:
    ok: bool
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    cache: CacheStats = field(default_factory=CacheStats)
    outputs: list[OutputArtifact] = field(default_factory=list)
    result: Any = None  # the JSON of /artifacts/.result (helios.results)


@dataclass
class AttemptContext:
    """Everything an attempt needs from its runner (clients and settings)."""

    s3: Any
    bucket: str
    cache: NodeCache  # one per node: its in-process locks must be shared by attempts
    work_dir: Path
    node: str
    sandbox: str
    keep_workspace: bool = False
    network: str = "none"
    limits: limits.HostLimits | None = None  # None: nothing enforced (unit tests)
    secrets_dir: Path | None = None  # envFromSecrets files (secrets.py); None: none exist


class Attempt:
    def __init__(self, ctx: AttemptContext, dispatch: TaskDispatch, logs: AttemptLog):
        self.ctx = ctx
        self.d = dispatch
        self.logs = logs
        self.timings = Timings(queuedAt=dispatch.dispatched_at)
        self.proc: asyncio.subprocess.Process | None = None
        self.cancelled = False
        self.cgroup: TaskCgroup | None = None
        self.limit_hit: tuple[str, str] | None = None  # (reason, message) of a disk cap
        self.inputs_size = 0
        self.start_error: str | None = None  # why the command could not start
        self.network_failed = False  # the sandbox's network could not be attached
        self.secret_env: dict[str, str] = {}  # envFromSecrets values: never logged
        self.workspace = ctx.work_dir / dispatch.dag_id / f"{dispatch.task.name}-{dispatch.attempt}"
        self.extra = log_fields(dagId=dispatch.dag_id, task=dispatch.task.name,
                                attempt=dispatch.attempt)

    def report(self, phase: str, outcome: Outcome | None = None) -> TaskReport:
        o = outcome or Outcome(ok=True)
        return TaskReport(
            dag_id=self.d.dag_id, task=self.d.task.name, attempt=self.d.attempt,
            phase=phase, at=time.time(), exit_code=o.exit_code, reason=o.reason,  # type: ignore[arg-type]
            message=o.message, node=self.ctx.node, timings=self.timings.model_copy(),
            cache=o.cache, outputs=o.outputs, result=o.result,
        )

    def cancel(self) -> None:
        self.cancelled = True
        self._kill()

    def _kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()  # what left the process group (daemons) dies too

    async def run(self, on_started: Any) -> Outcome:
        self.timings.scheduled_at = time.time()
        artifacts = self.workspace / "artifacts"
        try:
            if self.workspace.exists():
                await asyncio.to_thread(shutil.rmtree, self.workspace)
            artifacts.mkdir(parents=True)
            (self.workspace / "tmp").mkdir()
            drop_to = self.ctx.limits.drop_to if self.ctx.limits else None
            if drop_to is not None:  # the task's own folders belong to the task's user
                for folder in (artifacts, self.workspace / "tmp"):
                    os.chown(folder, *drop_to)
            return await self._run(artifacts, on_started)
        finally:
            if self.cgroup is not None:
                await _remove_cgroup(self.cgroup)
            if not self.ctx.keep_workspace:
                # Off the loop: a workspace may hold gigabytes in many files.
                await asyncio.to_thread(shutil.rmtree, self.workspace, ignore_errors=True)

    async def _run(self, artifacts: Path, on_started: Any) -> Outcome:
        cache = self.ctx.cache if self.d.use_cache else None
        if self.d.task.env_from_secrets:  # first: a missing Secret fails before any download
            try:
                found = await asyncio.to_thread(
                    resolve, self.ctx.secrets_dir, self.d.task.env_from_secrets)
            except SecretError as exc:
                self.logs.emit(f"[HELIOS] {exc.reason}: {exc}")
                return Outcome(ok=False, reason=exc.reason, message=str(exc))
            for name in found.skipped:
                self.logs.emit(f"[HELIOS] envFromSecrets: {name} is reserved for Helios and "
                               "was left out")
            self.secret_env = found.env
        try:
            stats = CacheStats() if not self.d.inputs else await place_inputs(
                self.d.inputs, artifacts, s3=self.ctx.s3, bucket=self.ctx.bucket,
                cache=cache, emit=self.logs.emit,
            )
        except Exception as exc:
            self.logs.emit(f"[HELIOS] Input download failed: {exc}")
            return Outcome(ok=False, reason="InputsFailed", message=str(exc))
        if self.cancelled:
            return Outcome(ok=False, reason="Cancelled", cache=stats)
        self.inputs_size = await asyncio.to_thread(limits.tree_size, artifacts)
        code, reason = await self._execute(artifacts, on_started)
        self.timings.finished_at = time.time()
        if reason is not None:
            message = _message(reason, code, self.d.task.timeout_seconds, self.d.task)
            if self.limit_hit is not None and reason == self.limit_hit[0]:
                message = self.limit_hit[1]
            elif reason == "StartError" and self.start_error:
                message = self.start_error
            self.logs.emit(f"[HELIOS] {reason}: {message}")
            return Outcome(ok=False, exit_code=code, reason=reason, cache=stats, message=message)
        if code != 0:
            return Outcome(ok=False, exit_code=code, reason="Error", cache=stats,
                           message=f"command exited with code {code}")
        try:
            result = await asyncio.to_thread(read_result, artifacts)
        except ResultError as exc:
            self.logs.emit(f"[HELIOS] {INVALID_RESULT}: {exc}")
            return Outcome(ok=False, exit_code=0, reason=INVALID_RESULT, message=str(exc),
                           cache=stats)
        if not self.d.task.outputs:
            return Outcome(ok=True, exit_code=0, cache=stats, result=result)
        try:
            outputs = await upload_outputs(
                self.d.dag_id, self.d.task.name, list(self.d.task.outputs), artifacts,
                s3=self.ctx.s3, bucket=self.ctx.bucket, emit=self.logs.emit,
                max_bytes=self.ctx.limits.disk.output_max if self.ctx.limits else None,
            )
        except OutputTooLarge as exc:
            self.logs.emit(f"[HELIOS] {exc}")
            return Outcome(ok=False, exit_code=0, reason=limits.OUTPUT_REASON, message=str(exc),
                           cache=stats)
        except MissingOutputs as exc:
            self.logs.emit(f"[HELIOS] {exc}")
            return Outcome(ok=False, exit_code=0, reason="MissingOutputs", message=str(exc),
                           cache=stats)
        except Exception as exc:
            self.logs.emit(f"[HELIOS] Output upload failed: {exc}")
            return Outcome(ok=False, exit_code=0, reason="UploadFailed", message=str(exc),
                           cache=stats)
        return Outcome(ok=True, exit_code=0, cache=stats, outputs=outputs, result=result)

    def _env(self, artifacts: Path) -> dict[str, str]:
        sandboxed = self.ctx.sandbox == "bwrap"
        helios = {
            "HELIOS_DAG_ID": self.d.dag_id,
            "HELIOS_TASK": self.d.task.name,
            "HELIOS_ATTEMPT": str(self.d.attempt),
            "HELIOS_ARTIFACTS_DIR": ARTIFACTS if sandboxed else str(artifacts),
            "HELIOS_CACHE_ENABLED": "true" if self.d.use_cache else "false",
            "HELIOS_INPUT_ARTIFACTS": orjson.dumps(
                [i.model_dump(by_alias=True) for i in self.d.inputs]
            ).decode(),
        }
        if not sandboxed:  # inside a sandbox the host's cache folder does not exist
            helios["HELIOS_CACHE_DIR"] = str(self.ctx.cache.root)
            # No sandbox (tests only): no bwrap to hand the Secrets to; `env` still wins.
            return task_env({**self.secret_env, **self.d.task.env}, helios)
        return task_env(self.d.task.env, helios)

    async def _execute(self, artifacts: Path, on_started: Any) -> tuple[int | None, str | None]:
        argv = [*self.d.task.command, *self.d.task.args]
        env = self._env(artifacts)
        outbound = self.ctx.sandbox == "bwrap" and self.ctx.network == "outbound"
        for tries_left in range(NETWORK_SETUP_TRIES - 1, -1, -1):
            link = OutboundLink() if outbound else None
            # The envFromSecrets values, for bwrap's --args: our copy is closed whatever happens.
            secrets_fd = args_fd(self.secret_env) \
                if self.secret_env and self.ctx.sandbox == "bwrap" else None
            self.network_failed = False
            try:
                result = await self._spawn_and_wait(argv, env, artifacts, link, on_started,
                                                    secrets_fd)
            finally:
                if secrets_fd is not None:
                    os.close(secrets_fd)
                if link is not None:
                    await link.close()
            # The command never ran (its sandbox was still blocked): starting it again is safe.
            if not self.network_failed or self.cancelled or not tries_left:
                return result
            self.logs.emit("[HELIOS] Starting the sandbox again for its network")
            self.start_error = None
        raise AssertionError("unreachable")

    async def _spawn_and_wait(
        self, argv: list[str], env: dict[str, str], artifacts: Path,
        link: OutboundLink | None, on_started: Any, secrets_fd: int | None = None,
    ) -> tuple[int | None, str | None]:
        host = self.ctx.limits
        stage: dict[str, Path] = {}
        fds = list(link.child_fds()) if link is not None else []
        if secrets_fd is not None:
            fds.append(secrets_fd)
        if self.ctx.sandbox == "bwrap":
            root = self.workspace / "root"
            etc_binds = await asyncio.to_thread(prepare_root, root, self.ctx.network)
            folders = {"artifacts": artifacts, "tmp": self.workspace / "tmp",
                       "etc": root / "etc", "empty": root / "empty"}
            if host is not None and host.drop_to is not None:
                # The task's user may not reach the workspace by its path: stage it.
                stage, folders = folders, staged(list(folders))
            argv = bwrap_argv(shutil.which("bwrap") or "bwrap", folders["artifacts"], argv,
                              env=env, tmp=folders["tmp"], etc=folders["etc"],
                              empty=folders["empty"], etc_binds=etc_binds,
                              network=self.ctx.network,
                              extra=link.bwrap_opts() if link is not None else (),
                              secrets_fd=secrets_fd)
            env = launcher_env()
        if host is not None:
            resources = self.d.task.resources
            self.cgroup = host.cgroups.create(
                f"{self.d.dag_id}.{self.d.task.name}.{self.d.attempt}",
                limits_of(resources.limits if resources else None, host.pids_max))
            argv = launcher_argv(
                argv, procs_files=self.cgroup.procs_files if self.cgroup else (),
                file_max=host.disk.file_max, drop_to=host.drop_to, stage=stage)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env,
                cwd=artifacts, start_new_session=True,
                pass_fds=fds,
            )
        except OSError as exc:
            self.start_error = f"could not start the command: {exc}"
            self.logs.emit(f"[HELIOS] Could not start the command: {exc}")
            return 127, "StartError"
        finally:
            if link is not None:
                link.spawned()
        if link is not None:
            try:
                await link.attach()
            except (NetworkSetupError, OSError, TimeoutError) as exc:
                self._kill()
                await self.proc.wait()
                why = f"{exc}{await _said(self.proc.stderr)}"
                self.start_error = f"could not set up the task's network: {why}"
                self.logs.emit(f"[HELIOS] Could not set up the task's network: {why}")
                self.network_failed = True
                return 127, "Cancelled" if self.cancelled else "StartError"
        self.timings.started_at = time.time()
        await on_started()
        assert self.proc.stdout and self.proc.stderr
        pumps = [asyncio.create_task(self._pump(self.proc.stdout)),
                 asyncio.create_task(self._pump(self.proc.stderr))]
        watch = asyncio.create_task(self._watch(artifacts), name="disk-watchdog")
        timeout = self.d.task.timeout_seconds
        reason = None
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            reason = "DeadlineExceeded"
            self._kill()
            await self.proc.wait()
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pumps, return_exceptions=True), 5.0)
            for pump in pumps:
                pump.cancel()
        if self.cgroup is not None:
            self.cgroup.kill()
        code = self.proc.returncode
        if self.ctx.limits is not None and self.limit_hit is None:
            # Once more after the exit: a task may finish between two watchdog checks.
            self.limit_hit = await asyncio.to_thread(
                limits.over_cap, self.workspace / "tmp", artifacts, self.ctx.limits.disk,
                self.inputs_size)
        if self.cancelled:
            reason = "Cancelled"
        elif reason is None and code != 0 and self.cgroup is not None and self.cgroup.oom_killed():
            reason = "OOMKilled"
        elif reason is None and self.limit_hit is not None:
            reason = self.limit_hit[0]
        elif reason is None and self.ctx.limits is not None and code in XFSZ_CODES:
            reason = limits.FILE_REASON
        return code, reason

    async def _watch(self, artifacts: Path) -> None:
        """Kill the task as soon as its /tmp or /artifacts is over its cap."""
        if self.ctx.limits is None:
            return
        while self.limit_hit is None:
            await asyncio.sleep(WATCH_INTERVAL_S)
            self.limit_hit = await asyncio.to_thread(
                limits.over_cap, self.workspace / "tmp", artifacts, self.ctx.limits.disk,
                self.inputs_size)
        self._kill()

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the stream limit: take what is buffered
                raw = await stream.read(64 * 1024)
            if not raw:
                return
            self.logs.emit(raw.decode(errors="replace").rstrip("\r\n"))


def _message(reason: str, code: int | None, timeout: int | None, task: Any) -> str:
    if reason == "DeadlineExceeded":
        return f"killed after exceeding timeoutSeconds={timeout}"
    if reason == "Cancelled":
        return "the run was cancelled"
    if reason == limits.FILE_REASON:
        return (f"a file reached the per-file size limit (exit code {code}): see "
                "HELIOS_LOCAL_TMP_MAX_BYTES and HELIOS_LOCAL_OUTPUT_MAX_BYTES")
    if reason == "OOMKilled":
        limit = task.resources.limits.memory if task.resources and task.resources.limits else "?"
        return f"killed: memory use reached resources.limits.memory={limit} (exit code {code})"
    return f"{reason} (exit code {code})"


async def _said(stream: asyncio.StreamReader | None) -> str:
    """What a failed sandbox wrote to stderr before it went (a little, quickly), as a
    suffix for the error message."""
    if stream is None:
        return ""
    with contextlib.suppress(Exception):
        text = (await asyncio.wait_for(stream.read(1000), 1.0)).decode(errors="replace")
        text = " ".join(text.split())
        if text:
            return f" (the sandbox said: {text})"
    return ""


async def _remove_cgroup(cgroup: TaskCgroup) -> None:
    """A killed task's processes take a moment to leave its cgroup; then it goes."""
    for delay in CGROUP_REMOVE_RETRY_S:
        cgroup.kill()
        cgroup.remove()
        if not any(folder.exists() for folder in cgroup.dirs):
            return
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            cgroup.remove()  # one last try; the start-up sweep takes what remains
            raise
    log.warning("cgroup of a finished attempt could not be removed: %s", cgroup.dirs[0])
