"""The bubblewrap command line of one attempt (pure).

The task sees a private root: read-only system folders, a fresh /tmp, its own PID
namespace, no capabilities, and its workspace at /artifacts, so the seed example's
`/artifacts/output.txt` works unchanged. The root is bwrap's own tmpfs, never a bind of
the host's `/`: bwrap creates missing mount points in the new root, and with `/` bound
that would be the host's own filesystem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

ARTIFACTS = "/artifacts"
# Folders that make up a usable userland; missing ones are skipped (`-try`).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def bwrap_argv(
    bwrap: str, workspace: Path, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
    extra_ro: Sequence[str] = (), network: bool = True,
) -> list[str]:
    """The sandbox command line. The task's environment goes in as `--setenv` pairs
    after `--clearenv`: bwrap itself must start with `launcher_env()` only, or a
    user-chosen LD_PRELOAD would be honoured by the loader on the host, before any
    sandbox exists."""
    out = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
           "--unshare-uts", "--hostname", "helios-task"]
    for folder in (*SYSTEM_DIRS, *extra_ro):
        if os.path.islink(folder):
            out += ["--symlink", os.readlink(folder), folder]
        else:
            out += ["--ro-bind-try", folder, folder]
    out += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run",
            "--bind", str(workspace), ARTIFACTS, "--chdir", ARTIFACTS]
    if not network:
        out.append("--unshare-net")  # only a loopback of its own
    if os.geteuid() == 0:
        # Root on the host stays root in the sandbox, but with no capabilities at all.
        out += ["--cap-drop", "ALL"]
    if env is not None:
        out.append("--clearenv")
        for key, value in env.items():
            out += ["--setenv", key, value]
    return [*out, "--", *argv]


def launcher_env() -> dict[str, str]:
    """The environment of the bwrap process itself: fixed, nothing from the user."""
    return {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}


def task_env(user_env: Mapping[str, str], helios_env: Mapping[str, str]) -> dict[str, str]:
    """The task's environment: a clean base, the user's variables, then Helios's own."""
    env = {"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8"}
    env.update(user_env)
    env.update(helios_env)
    return env
