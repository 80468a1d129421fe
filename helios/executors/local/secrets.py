"""`envFromSecrets` on the local executor: Secrets are files in HELIOS_LOCAL_SECRETS_DIR.

One file per Secret, named like the Kubernetes Secret plus `.env`
(`warehouse-creds.env`), holding `KEY=VALUE` lines: the value is everything after the
first `=`, taken literally (no quotes, no escapes, no expansion); blank lines and lines
starting with `#` are skipped. A file must be a regular file (not a symlink) readable by
its owner only (mode 0600 or 0400): a Secret the whole machine can read is no secret,
so such a file is refused rather than used.

As with `envFrom` on Kubernetes, a key in a later Secret wins over the same key in an
earlier one, and the task's own `env` wins over every Secret. A Secret that does not
exist fails the attempt (`SecretNotFound`, as the kubelet's CreateContainerConfigError
does); Helios's own Secrets are left out, as the Job builder leaves them out.

The values reach the task through bwrap's `--args FD` (a memfd), never through a command
line (any host user can read `/proc/*/cmdline`), the launcher's environment, a log
line, the run's status or its events.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from helios.dag.model import ENV_NAME

# The same names the Kubernetes Job builder leaves out (helios/executors/kubernetes/jobs.py);
# kept literal here so the local runner does not import the Kubernetes executor.
RESERVED_SECRETS = frozenset({"helios-s3", "helios-api-tokens"})
SUFFIX = ".env"
MAX_BYTES = 1024 * 1024  # a Kubernetes Secret's own size limit
NOT_FOUND = "SecretNotFound"
INVALID = "SecretInvalid"
_ENV_NAME_RE = re.compile(ENV_NAME)
_SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class SecretError(Exception):
    """A Secret the attempt cannot use; `reason` is the TaskReport reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Resolved:
    env: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # reserved names left out


def parse(text: str, name: str) -> dict[str, str]:
    """The variables of one Secret file; errors name the line, never a value."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SecretError(INVALID, f"{name}: line {number} is not KEY=VALUE")
        if _ENV_NAME_RE.fullmatch(key) is None:
            raise SecretError(INVALID, f"{name}: line {number}: {key[:64]!r} is not a valid "
                                       "variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if "\0" in value:
            raise SecretError(INVALID, f"{name}: line {number}: the value of {key} holds NUL")
        out[key] = value
    return out


def read_secret(folder: Path | None, name: str) -> dict[str, str]:
    """Read `folder/name.env`, refusing anything but a small private regular file."""
    if _SECRET_NAME_RE.fullmatch(name) is None or ".." in name:
        raise SecretError(INVALID, f"{name[:64]!r} is not a valid Secret name")
    if folder is None:
        raise SecretError(NOT_FOUND, f"{name} (no secrets folder: set HELIOS_LOCAL_SECRETS_DIR)")
    path = folder / f"{name}{SUFFIX}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SecretError(NOT_FOUND, f"{name} (no file {name}{SUFFIX} in the secrets "
                                     "folder)") from None
    except OSError as exc:  # ELOOP: a symlink; EACCES: not ours to read
        raise SecretError(INVALID, f"{name}: cannot open {name}{SUFFIX}: "
                                   f"{exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretError(INVALID, f"{name}: {name}{SUFFIX} is not a regular file")
        if st.st_mode & 0o077:
            raise SecretError(INVALID, (
                f"{name}: {name}{SUFFIX} has mode {stat.S_IMODE(st.st_mode):04o}; other "
                "users of this machine could read or change it, so it is refused "
                f"(chmod 600 {name}{SUFFIX})"))
        if st.st_size > MAX_BYTES:
            raise SecretError(INVALID, f"{name}: {name}{SUFFIX} is over {MAX_BYTES} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        raise SecretError(INVALID, f"{name}: {name}{SUFFIX} is over {MAX_BYTES} bytes")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise SecretError(INVALID, f"{name}: {name}{SUFFIX} is not UTF-8") from None
    return parse(text, name)


def resolve(folder: Path | None, names: Iterable[str]) -> Resolved:
    """Every named Secret merged in order (a later one wins), reserved ones left out."""
    out = Resolved()
    for name in names:
        if name in RESERVED_SECRETS:
            out.skipped.append(name)
            continue
        out.env.update(read_secret(folder, name))
    return out


def bwrap_args(env: Mapping[str, str]) -> bytes:
    """`--setenv KEY VALUE` for each variable, NUL-separated, as bwrap's `--args` reads."""
    parts: list[str] = []
    for key, value in env.items():
        parts += ["--setenv", key, value]
    return b"".join(p.encode() + b"\0" for p in parts)


def args_fd(env: Mapping[str, str]) -> int:
    """A memfd holding `bwrap_args(env)`, at offset 0, close-on-exec (pass_fds hands it
    to the launcher only). The caller closes it once the child has started."""
    fd = os.memfd_create("helios-secrets", os.MFD_CLOEXEC)
    try:
        data = bwrap_args(env)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
