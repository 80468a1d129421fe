"""How the simulated kubelet runs one container: a bubblewrap sandbox per container.

The sandbox root is bwrap's own tmpfs (never a bind of the host's `/`, on which bwrap
would create missing mount points), with read-only binds of the system folders, the
Python that runs Helios (base install, venv, project source), and each of the pod's
volumes bound at its `mountPath` (read-only when the mount says so). So `/artifacts`
and `/var/helios/cache` are real paths inside, backed by per-node folders outside.

The image is ignored: `python` (Helios's image) is this venv's interpreter, and user
commands such as `/bin/bash -c ...` run from the host's /usr.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helios

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VENV_BIN = str(Path(sys.executable).parent)
PYTHON_DIRS = tuple(dict.fromkeys([sys.base_prefix, sys.prefix,
                                   str(Path(helios.__file__).resolve().parent.parent)]))

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, unknown names stay as-is."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _REF.sub(sub, value)


def container_env(container: dict[str, Any], secrets: Mapping[str, dict[str, str]],
                  helios_image: bool, pod_name: str) -> dict[str, str]:
    """The process environment: image defaults, envFrom, then env (later entries win)."""
    env = {"PATH": f"{VENV_BIN}:{DEFAULT_PATH}" if helios_image else DEFAULT_PATH,
           "HOME": "/tmp" if helios_image else "/root", "HOSTNAME": pod_name}
    if helios_image:
        env["PYTHONUNBUFFERED"] = "1"
    for source in container.get("envFrom") or []:
        ref = source.get("secretRef")
        if ref:
            if ref["name"] not in secrets and not ref.get("optional"):
                raise LookupError(f'secret "{ref["name"]}" not found')
            env.update(secrets.get(ref["name"], {}))
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        elif ref := (var.get("valueFrom") or {}).get("secretKeyRef"):
            data = secrets.get(ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise LookupError(f'secret "{ref["name"]}" key "{ref["key"]}" not found')
            env[var["name"]] = data[ref["key"]]
    return env


def argv(container: dict[str, Any], env: Mapping[str, str], helios_image: bool) -> list[str]:
    parts = [expand(p, env) for p in [*(container.get("command") or []),
                                      *(container.get("args") or [])]]
    if not parts:
        raise ValueError("the stand-in has no image entrypoints: give a command")
    if helios_image and parts[0] == "python":
        parts[0] = sys.executable  # the venv stands in for Helios's image
    return parts


def _parents(paths: list[str]) -> list[str]:
    """Folders to create (0755) before binding `paths`: bwrap would make them 0700, which
    a non-root container user could not traverse."""
    out: dict[str, None] = {}
    for path in paths:
        parts = Path(path).parts[1:-1]
        for i in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:i])
            if not any(folder == d or folder.startswith(d + "/") for d in (*SYSTEM_DIRS, "/tmp")):
                out.setdefault(folder)
    return list(out)


def run_as(security: dict[str, Any]) -> tuple[int, int] | None:
    """(uid, gid) from runAsUser/runAsGroup; None: the image's user (root here)."""
    uid = security.get("runAsUser")
    if uid is None:
        if security.get("runAsNonRoot"):
            raise LookupError("container has runAsNonRoot and image will run as root")
        return None
    return int(uid), int(security.get("runAsGroup", uid))


def bwrap_argv(bwrap: str, command: list[str], mounts: list[tuple[Path, str, bool]],
               workdir: str, hostname: str, security: dict[str, Any]) -> list[str]:
    """`mounts`: (host folder, mountPath, read-only). `security`: the container's
    securityContext: runAsUser/runAsGroup (via setpriv inside the sandbox, so file
    ownership is real), capabilities drop/add."""
    # No --new-session: the sandboxed process must stay in bwrap's process group, so a
    # kill of that group reaches it even before bwrap has armed --die-with-parent (no
    # tty is attached, so the terminal-injection risk --new-session guards against is moot).
    # --as-pid-1: the command is PID 1 of its namespace, as in a container, with the
    # kernel's rule for it (signals it has no handler for are ignored, SIGTERM included).
    out = [bwrap, "--die-with-parent", "--unshare-pid", "--as-pid-1", "--unshare-ipc",
           "--unshare-uts", "--hostname", hostname[:63]]
    for folder in SYSTEM_DIRS:
        if os.path.islink(folder):
            out += ["--symlink", os.readlink(folder), folder]
        else:
            out += ["--ro-bind-try", folder, folder]
    # Parents before children: a pod volume at /tmp (or the private tmpfs there) must be
    # mounted before the Python folders that may live under it (a CI checkout in /tmp),
    # or it would hide them.
    if not any(path == "/tmp" for _, path, _ in mounts):
        out += ["--tmpfs", "/tmp"]
    binds = [(Path(folder), folder, True) for folder in PYTHON_DIRS] + list(mounts)
    binds.sort(key=lambda m: (m[1].rstrip("/").count("/"), m[1]))
    for folder in _parents([path for _, path, _ in binds]):
        out += ["--perms", "0755", "--dir", folder]
    for host, path, read_only in binds:
        out += ["--ro-bind" if read_only else "--bind", str(host), path]
    out += ["--proc", "/proc", "--dev", "/dev"]
    out += ["--chdir", workdir]
    user = run_as(security)
    caps = security.get("capabilities") or {}
    if os.geteuid() == 0 and (user is None or user[0] == 0):
        # Root keeps capabilities in bwrap unless told; a non-root user loses them anyway.
        if "ALL" in (caps.get("drop") or []):
            out += ["--cap-drop", "ALL"]
        for cap in caps.get("add") or []:
            out += ["--cap-add", f"CAP_{cap}"]
    if user is not None and user[0] != 0:
        command = ["/usr/bin/setpriv", f"--reuid={user[0]}", f"--regid={user[1]}",
                   "--clear-groups", "--", *command]
    return [*out, "--", *command]
