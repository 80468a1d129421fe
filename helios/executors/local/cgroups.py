"""Resource limits of local attempts through cgroups, v2 or v1.

v2 (one unified tree, `/sys/fs/cgroup/cgroup.controllers` present): one cgroup per
attempt under a `helios` parent whose `cgroup.subtree_control` enables memory, pids
and cpu. v1 (a tree per controller, as on hybrid hosts): the same cgroup is created in
each of `/sys/fs/cgroup/{memory,pids,cpu}`. The attempt's launcher writes its own pid
into every `cgroup.procs` before it execs the sandbox, so nothing the task starts can
run outside the limits.

The pure parts (quantities, the files to write, OOM detection) are plain functions;
`Cgroups` does the file system work. A controller that cannot be used is logged once,
at start-up, and that limit is then not enforced.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
SWEEP_MIN_AGE_S = 300.0  # a leftover cgroup older than this is nobody's about-to-start attempt

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_FACTORS = {
    None: 1, "m": 0.001, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}


def parse_quantity(value: str) -> float:
    """A Kubernetes quantity ("64Mi", "1G", "500m", "2") as a number."""
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    return float(match.group(1)) * _FACTORS[match.group(2)]


def memory_bytes(value: str) -> int:
    return max(4096, math.ceil(parse_quantity(value)))


def cpu_quota_us(value: str) -> int:
    """CPU cores as a CFS quota per `CPU_PERIOD_US` (the kernel wants at least 1 ms)."""
    return max(1000, math.ceil(parse_quantity(value) * CPU_PERIOD_US))


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes
    cpu_quota: int | None = None  # microseconds per CPU_PERIOD_US
    pids: int | None = None


def limits_of(resources_limits: object | None, pids_max: int | None) -> Limits:
    """`resources.limits` of a task (a `ResourceList` or None) plus the pids cap."""
    memory = getattr(resources_limits, "memory", None)
    cpu = getattr(resources_limits, "cpu", None)
    return Limits(memory=memory_bytes(memory) if memory else None,
                  cpu_quota=cpu_quota_us(cpu) if cpu else None, pids=pids_max)


def v2_files(limits: Limits) -> dict[str, str]:
    out: dict[str, str] = {}
    if limits.memory is not None:
        out["memory.max"] = str(limits.memory)
        out["memory.swap.max"] = "0"  # swap would let a task exceed its limit unnoticed
        out["memory.oom.group"] = "1"  # an OOM kill takes the whole task, as on Kubernetes
    if limits.cpu_quota is not None:
        out["cpu.max"] = f"{limits.cpu_quota} {CPU_PERIOD_US}"
    if limits.pids is not None:
        out["pids.max"] = str(limits.pids)
    return out


def v1_files(limits: Limits) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {"memory": {}, "pids": {}, "cpu": {}}
    if limits.memory is not None:
        out["memory"]["memory.limit_in_bytes"] = str(limits.memory)
        out["memory"]["memory.memsw.limit_in_bytes"] = str(limits.memory)  # if swap accounting
    if limits.cpu_quota is not None:
        out["cpu"]["cpu.cfs_period_us"] = str(CPU_PERIOD_US)
        out["cpu"]["cpu.cfs_quota_us"] = str(limits.cpu_quota)
    if limits.pids is not None:
        out["pids"]["pids.max"] = str(limits.pids)
    return out


def oom_kills(text: str) -> int:
    """The `oom_kill` counter of v2 `memory.events` or v1 `memory.oom_control`."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def own_paths(proc_self_cgroup: str) -> dict[str, str]:
    """This process's cgroup per v1 controller, and under "" its v2 path."""
    out: dict[str, str] = {}
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    return out


@dataclass
class TaskCgroup:
    """The cgroup(s) of one attempt: one folder on v2, one per controller on v1."""

    dirs: list[Path]
    memory_dir: Path | None
    version: int

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_killed(self) -> bool:
        if self.memory_dir is None:
            return False
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            return oom_kills((self.memory_dir / name).read_text()) > 0
        except OSError:
            return False

    def kill(self) -> None:
        """Kill every process left in the cgroup (the task's own daemons included)."""
        for folder in self.dirs:
            if self.version == 2 and (folder / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (folder / "cgroup.kill").write_text("1")
                continue
            with contextlib.suppress(OSError):
                for pid in (folder / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)

    def remove(self) -> None:
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                folder.rmdir()


@dataclass
class Cgroups:
    """Where attempts' cgroups go on this host, found once at start-up."""

    version: int = 0  # 0: no usable cgroup
    parents: dict[str, Path] = field(default_factory=dict)  # controller -> parent folder

    @classmethod
    def probe(cls, root: Path = ROOT) -> Cgroups:
        try:
            own = own_paths(Path("/proc/self/cgroup").read_text())
        except OSError:
            own = {}
        if (root / "cgroup.controllers").exists():
            found = cls._probe_v2(root, own.get("", "/"))
        else:
            found = cls._probe_v1(root, own)
        found.sweep()
        missing = [c for c in CONTROLLERS if c not in found.parents]
        if missing:
            log.warning(
                "cgroup controller(s) %s not usable here: the matching limits (%s) are NOT "
                "enforced for local tasks", ", ".join(missing),
                ", ".join({"memory": "resources.limits.memory", "pids": "HELIOS_LOCAL_PIDS_MAX",
                           "cpu": "resources.limits.cpu"}[c] for c in missing))
        else:
            log.info("local task limits enforced through cgroup v%d", found.version)
        return found

    @classmethod
    def _probe_v1(cls, root: Path, own: dict[str, str]) -> Cgroups:
        parents: dict[str, Path] = {}
        for controller in CONTROLLERS:
            # Nested under this process's own cgroup: the tasks stay within its limits.
            parent = root / controller / own.get(controller, "/").lstrip("/") / "helios"
            if _make_dir(parent):
                parents[controller] = parent
        return cls(version=1 if parents else 0, parents=parents)

    @classmethod
    def _probe_v2(cls, root: Path, own: str) -> Cgroups:
        # A v2 cgroup holding processes cannot hand controllers to children, so our own
        # cgroup only works as the parent when empty of them; otherwise the tree's root.
        for base in (root / own.lstrip("/"), root):
            parent = base / "helios"
            if not _make_dir(parent):
                continue
            wanted = [c for c in CONTROLLERS if c in _read(base / "cgroup.controllers").split()]
            enabled = [c for c in wanted
                       if _write(base / "cgroup.subtree_control", f"+{c}")
                       and _write(parent / "cgroup.subtree_control", f"+{c}")]
            if enabled:
                return cls(version=2, parents={c: parent for c in enabled})
        return cls()

    def sweep(self, min_age_s: float = SWEEP_MIN_AGE_S) -> int:
        """Remove attempts' cgroups left empty by a runner that died (or was killed)
        before removing them. A cgroup with processes cannot be removed, and a young one
        may be one another runner is about to enter: both are left alone."""
        removed = 0
        now = time.time()
        for parent in set(self.parents.values()):
            with contextlib.suppress(OSError):
                for child in parent.iterdir():
                    try:
                        if child.is_dir() and now - child.stat().st_mtime > min_age_s:
                            child.rmdir()
                            removed += 1
                    except OSError:
                        continue
        if removed:
            log.info("removed %d cgroup(s) left behind by earlier runs", removed)
        return removed

    def create(self, name: str, limits: Limits) -> TaskCgroup | None:
        """The attempt's cgroup with its limits written; None where none is usable."""
        if not self.version:
            return None
        if self.version == 2:
            folder = next(iter(self.parents.values())) / name
            if not _make_dir(folder):
                return None
            for file, value in v2_files(limits).items():
                _write(folder / file, value)
            memory = folder if "memory" in self.parents else None
            return TaskCgroup(dirs=[folder], memory_dir=memory, version=2)
        dirs: list[Path] = []
        writes = v1_files(limits)
        for controller, parent in self.parents.items():
            folder = parent / name
            if not _make_dir(folder):
                continue
            dirs.append(folder)
            for file, value in writes[controller].items():
                _write(folder / file, value)
        if not dirs:
            return None
        memory = self.parents["memory"] / name if "memory" in self.parents else None
        return TaskCgroup(dirs=dirs, memory_dir=memory, version=1)


def _make_dir(path: Path) -> bool:
    try:
        path.mkdir(exist_ok=True)
        return os.access(path / "cgroup.procs", os.W_OK)
    except OSError:
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False
