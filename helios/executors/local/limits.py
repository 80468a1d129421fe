"""Disk limits of a local attempt: its /tmp and its /artifacts.

No quota is available to an ordinary process, so two mechanisms work together:
RLIMIT_FSIZE (set by the launcher) stops any single file at once, and a watchdog
sums the apparent size of the attempt's /tmp and /artifacts while it runs and once
more after it exits, and kills it when either is over its cap. The per-file limit is
a little above the larger cap, so a file stopped by it is always over a cap too and
the attempt fails with the same documented reason.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from helios.executors.local.cgroups import Cgroups
from helios.settings import LocalExecutorSettings

log = logging.getLogger(__name__)

FSIZE_SLACK = 4096
TMP_REASON = "TmpLimitExceeded"
OUTPUT_REASON = "OutputLimitExceeded"
FILE_REASON = "FileSizeLimitExceeded"


@dataclass(frozen=True)
class DiskCaps:
    tmp_max: int  # bytes in the task's /tmp
    output_max: int  # bytes written to /artifacts beyond the placed inputs

    @property
    def file_max(self) -> int:
        """RLIMIT_FSIZE for the task: no single file larger than either cap allows."""
        return max(self.tmp_max, self.output_max) + FSIZE_SLACK


def tree_size(root: Path) -> int:
    """Apparent size of every regular file under `root` (sparse files count in full)."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    elif stat.S_ISREG(st.st_mode):
                        total += st.st_size
        except OSError:
            continue
    return total


def over_cap(tmp: Path, artifacts: Path, caps: DiskCaps, inputs_size: int) -> tuple[str, str] | None:
    """(reason, message) when the attempt's disk use is over a cap, else None."""
    used = tree_size(tmp)
    if used > caps.tmp_max:
        return TMP_REASON, (f"/tmp holds {used} bytes, over the limit of {caps.tmp_max} "
                            "bytes (HELIOS_LOCAL_TMP_MAX_BYTES)")
    written = tree_size(artifacts) - inputs_size
    if written > caps.output_max:
        return OUTPUT_REASON, (f"/artifacts grew by {written} bytes, over the limit of "
                               f"{caps.output_max} bytes per attempt "
                               "(HELIOS_LOCAL_OUTPUT_MAX_BYTES)")
    return None


@dataclass(frozen=True)
class HostLimits:
    """What this host enforces for every local attempt, found once at start-up."""

    cgroups: Cgroups
    pids_max: int
    disk: DiskCaps
    drop_to: tuple[int, int] | None  # host (uid, gid) tasks run as; None: Helios's own

    @classmethod
    def from_settings(cls, local: LocalExecutorSettings) -> HostLimits:
        drop_to = None
        if local.sandbox == "bwrap" and os.geteuid() == 0:
            drop_to = (local.task_uid, local.task_gid)
        elif local.sandbox == "bwrap":
            log.warning("Helios does not run as root: tasks run as its own host user (uid %d), "
                        "mapped to uid 1000 in their sandbox", os.geteuid())
        else:
            log.warning("HELIOS_LOCAL_SANDBOX=none: tasks run unsandboxed as Helios's own user, "
                        "with the host's network and files (tests only)")
        if local.network == "host":
            log.warning("HELIOS_LOCAL_NETWORK=host: tasks share this machine's network and can "
                        "reach every service listening on it (UNSAFE)")
        elif local.network == "outbound" and shutil.which("slirp4netns") is None:
            log.error("HELIOS_LOCAL_NETWORK=outbound needs slirp4netns, which is not installed: "
                      "every task will fail to start")
        return cls(cgroups=Cgroups.probe(), pids_max=local.pids_max,
                   disk=DiskCaps(tmp_max=local.tmp_max_bytes, output_max=local.output_max_bytes),
                   drop_to=drop_to)
