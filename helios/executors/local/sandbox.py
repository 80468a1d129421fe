"""The command line of one sandboxed attempt, and the files of its private root (pure
argv building; `prepare_root` writes a handful of small files).

The task sees what a container image would give it: read-only `/usr` (and the `/bin`,
`/lib`... next to it), an `/etc` of its own (a generated passwd, group, hosts,
resolv.conf and nsswitch.conf, plus a few harmless host entries such as the dynamic
loader's cache and `alternatives`: never `shadow`), no `/opt`, an empty `/usr/local`,
a disk-backed `/tmp` in its workspace, its workspace at `/artifacts`, its own PID, IPC,
UTS and (by default) network namespaces, and no capabilities. It runs as uid 1000 in
a user namespace that maps to an unprivileged host user: when Helios runs as root,
the launcher drops to `HELIOS_LOCAL_TASK_UID` before bwrap starts, because a user
namespace created by root still reaches files as host root.

Network (`HELIOS_LOCAL_NETWORK`): `none`, the default, gives the task a namespace with
only its own loopback: no address of the host, loopback included, answers, so neither
Helios's servers nor anything else on the machine can be reached, and a task that
needs no network (the common case: inputs and outputs travel through Helios) loses
nothing. Safe by default; access is opted into. `outbound` adds internet access
through slirp4netns with the host's loopback disabled (see network.py for its one
caveat); `host` shares the host's network and is UNSAFE: every task reaches every
service of the machine.

Chain of processes: `sh` (joins the attempt's cgroups, sets RLIMIT_FSIZE, as Helios's
user) -> `unshare --mount` + `sh` (root only: stages the workspace folders) ->
`setpriv` (root only: drops to the task user) -> `bwrap` -> command. The root is
bwrap's own tmpfs, made read-only once mounted, never a bind of the host's `/`: bwrap
creates missing mount points in the new root, and with `/` bound that would be the
host's own filesystem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

ARTIFACTS = "/artifacts"
HOSTNAME = "helios-task"
TASK_UID = TASK_GID = 1000  # the task's ids inside its user namespace
# Folders of a usable userland; missing ones are skipped. Symlinks (merged /usr) are
# recreated as symlinks. /opt and /usr/local are left out: an image would not have
# this host's.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
MASKED = ("/usr/local",)
# Host /etc entries with no secrets that programs need (loader cache, Debian's
# alternatives symlinks, CA certificates, time zone...). Everything else in /etc is ours.
ETC_SHARED = (
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone",
    "ssl/certs", "ssl/openssl.cnf", "ca-certificates", "mime.types", "protocols", "services",
    "bash.bashrc", "profile", "inputrc", "debian_version", "os-release", "lsb-release",
    "python3", "python3.11", "perl", "terminfo", "magic", "gai.conf", "host.conf",
)
DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
NETWORKS = ("none", "outbound", "host")
SHM_BYTES = 64 * 1024**2  # /dev/shm, Docker's default size

# Runs as Helios's user: join every cgroup given, cap file sizes and core dumps, exec.
_ENTER = (
    'ulimit -c 0; ulimit -f "$1" || exit 125; n=$2; shift 2; '
    'while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; '
    'exec "$@"'
)
# Runs as root in a mount namespace of its own (the host's mounts stay untouched): puts
# the attempt's folders under STAGE, where the task's user can reach them whatever the
# permissions of the folders above the workspace (pytest's and many operators' are 0700).
_STAGE = (
    'mount -t tmpfs -o mode=0755,size=64k helios-stage "$1" || exit 125; s=$1; n=$2; '
    'shift 2; while [ "$n" -gt 0 ]; do mkdir "$s/$1" && mount --bind "$2" "$s/$1" || exit 125; '
    'shift 2; n=$((n-1)); done; exec "$@"'
)
STAGE = "/run"
ENTER_FAILED = 125


def _etc_files(network: str) -> dict[str, str]:
    resolv = "# no network\n"
    if network == "outbound":
        resolv = "nameserver 10.0.2.3\n"  # slirp4netns's DNS forwarder
    elif network == "host":
        try:
            resolv = "".join(line for line in Path("/etc/resolv.conf").read_text().splitlines(True)
                             if line.startswith(("nameserver", "search", "options")))
        except OSError:
            resolv = ""
    return {
        "passwd": (f"root:x:0:0:root:/root:/bin/sh\n"
                   f"task:x:{TASK_UID}:{TASK_GID}:helios task:/tmp:/bin/sh\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        "group": f"root:x:0:\ntask:x:{TASK_GID}:\nnogroup:x:65534:\n",
        "hosts": f"127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "hostname": f"{HOSTNAME}\n",
        "nsswitch.conf": ("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
                          "networks: files\nprotocols: files\nservices: files\n"),
        "resolv.conf": resolv,
    }


def prepare_root(folder: Path, network: str) -> list[str]:
    """Write the sandbox's /etc under `folder/etc` (and an empty `folder/empty` for
    masking), and return the options that bind host /etc entries into it. Safe to run
    again on the same folder (a sandbox started again)."""
    etc = folder / "etc"
    (folder / "empty").mkdir(parents=True, exist_ok=True)
    etc.mkdir(exist_ok=True)
    for name, text in _etc_files(network).items():
        (etc / name).write_text(text)
    binds: list[str] = []
    for entry in ETC_SHARED:
        host = Path("/etc") / entry
        target = etc / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        if host.is_symlink():
            if not target.is_symlink():
                target.symlink_to(os.readlink(host))  # resolves inside: /usr is there
        elif host.is_dir():
            target.mkdir(exist_ok=True)  # the mount point, so /etc can stay read-only
            binds += ["--ro-bind", str(host), f"/etc/{entry}"]
        elif host.is_file():
            target.touch()
            binds += ["--ro-bind", str(host), f"/etc/{entry}"]
    return binds


def _bind(src: Path, dest: str, *, ro: bool = False) -> list[str]:
    return ["--ro-bind" if ro else "--bind", str(src), dest]


def bwrap_argv(
    bwrap: str, workspace: Path, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
    tmp: Path | None = None, etc: Path | None = None, empty: Path | None = None,
    etc_binds: Sequence[str] = (), network: str = "none", extra: Sequence[str] = (),
    secrets_fd: int | None = None,
) -> list[str]:
    """The sandbox command line: `workspace` at /artifacts, `tmp` at /tmp (else a tmpfs),
    `etc` at /etc with `etc_binds` on top (else no /etc), `empty` over /usr/local.

    The task's environment goes in as `--setenv` pairs after `--clearenv`: bwrap itself
    must start with `launcher_env()` only, or a user-chosen LD_PRELOAD would be honoured
    by the loader on the host, before any sandbox exists. Secret variables are read by
    bwrap from `secrets_fd` (`--args`, secrets.py), never put on a command line; the
    task's own `env` comes after them and wins, as `env` wins over `envFrom`."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network mode {network!r}")
    out = [bwrap, "--die-with-parent", "--new-session", "--unshare-user",
           "--uid", str(TASK_UID), "--gid", str(TASK_GID), "--unshare-pid", "--unshare-ipc",
           "--unshare-uts", "--unshare-cgroup-try", "--hostname", HOSTNAME]
    for folder in SYSTEM_DIRS:
        if os.path.islink(folder):
            out += ["--symlink", os.readlink(folder), folder]
        else:
            out += ["--ro-bind-try", folder, folder]
    if etc is not None:
        out += [*_bind(etc, "/etc", ro=True), *etc_binds]
    if empty is not None:
        for masked in MASKED:
            if os.path.isdir(masked):
                out += _bind(empty, masked, ro=True)
    # /dev is bwrap's tmpfs: read-only, with a small /dev/shm (RAM, also charged to the
    # task's memory cgroup) as a container runtime gives; /run is an empty folder of the
    # read-only root. Only /tmp and /artifacts, both on disk and capped, take writes.
    out += ["--proc", "/proc", "--dev", "/dev", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev", "--dir", "/run"]
    out += _bind(tmp, "/tmp") if tmp is not None else ["--tmpfs", "/tmp"]
    # Last: the root tmpfs itself becomes read-only, as an image's root would be to a
    # non-root user; /tmp and /artifacts stay the only writable folders.
    out += [*_bind(workspace, ARTIFACTS), "--remount-ro", "/", "--chdir", ARTIFACTS]
    if network != "host":
        out.append("--unshare-net")  # only a loopback of its own
    out += ["--cap-drop", "ALL"]
    if env is not None:
        out.append("--clearenv")
        if secrets_fd is not None:
            out += ["--args", str(secrets_fd)]
        for key, value in env.items():
            out += ["--setenv", key, value]
    return [*out, *extra, "--", *argv]


def staged(names: Sequence[str]) -> dict[str, Path]:
    """Where `launcher_argv(stage=...)` makes each named folder visible."""
    return {name: Path(STAGE) / name for name in names}


def launcher_argv(
    argv: Sequence[str], *, procs_files: Sequence[str] = (), file_max: int | None = None,
    drop_to: tuple[int, int] | None = None, stage: Mapping[str, Path] | None = None,
) -> list[str]:
    """Wrap `argv`: join the cgroups (their `cgroup.procs` files), cap every file at
    `file_max` bytes (RLIMIT_FSIZE, in the shell's 512-byte blocks), bind the `stage`
    folders (name -> host folder) at `staged(names)` in a private mount namespace, and
    when `drop_to` is given become that (uid, gid) with no supplementary groups."""
    blocks = "unlimited" if file_max is None else str(-(-file_max // 512))
    out = ["/bin/sh", "-c", _ENTER, "helios-enter", blocks, str(len(procs_files)), *procs_files]
    if stage:
        pairs = [str(x) for name, src in stage.items() for x in (name, src)]
        out += ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", _STAGE,
                "helios-stage", STAGE, str(len(stage)), *pairs]
    if drop_to is not None:
        uid, gid = drop_to
        out += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    return [*out, *argv]


def launcher_env() -> dict[str, str]:
    """The environment of the launcher and bwrap: fixed, nothing from the user."""
    return {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}


def task_env(user_env: Mapping[str, str], helios_env: Mapping[str, str]) -> dict[str, str]:
    """The task's environment: a clean base, the user's variables, then Helios's own."""
    env = {"PATH": DEFAULT_PATH, "HOME": "/tmp", "LANG": "C.UTF-8"}
    env.update(user_env)
    env.update(helios_env)
    return env
