"""Bearer tokens of the API: the tokens file, the constant-time lookup, and the dev token.

The tokens file (`HELIOS_AUTH_TOKENS_FILE`, in a cluster a mounted Secret) holds one
`scope token` per line:

    # who / why
    write 3q2+7w-example-write-token
    read  Zm9vYmFy-example-read-token

`scope` is `read` or `write` (write = submit, cancel, retry, and implies read); a token
is an RFC 6750 b64token of 16 to 1024 characters; `#` starts a comment; blank lines are
ignored. A bad line is reported by its number only: the error never echoes a token.

Only SHA-256 digests of the tokens are kept in memory, and a presented token is compared
with every configured digest (no early exit), each with `hmac.compare_digest`, so the
time a check takes says nothing about which token, or which prefix, came close.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

READ, WRITE = "read", "write"
SCOPES = (READ, WRITE)
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 1024
# RFC 6750 section 2.1: the characters a bearer token may use in an Authorization header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

DEFAULT_DATA_DIR = Path(".helios")  # `helios dev`'s default --data-dir
TOKEN_ENV = "HELIOS_TOKEN"
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class TokenFileError(ValueError):
    """A tokens file that cannot be used; the message names a line, never a token."""


@dataclass(frozen=True)
class TokenEntry:
    scope: str
    digest: bytes  # sha256 of the token
    line: int


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def parse_tokens(text: str) -> list[TokenEntry]:
    """The entries of a tokens file; raises TokenFileError naming the first bad line."""
    entries: list[TokenEntry] = []
    seen: dict[bytes, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        # `#` cannot occur in a b64token, so everything after it is a comment.
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise TokenFileError(
                f"tokens file line {number}: expected `scope token` (2 fields), found {len(fields)}")
        scope, token = fields
        if scope not in SCOPES:
            # Not echoed: a line written `token scope` would print the token.
            raise TokenFileError(f"tokens file line {number}: the first field must be a scope, "
                                 f"{' or '.join(SCOPES)}")
        if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
            raise TokenFileError(f"tokens file line {number}: a token has {MIN_TOKEN_CHARS} to "
                                 f"{MAX_TOKEN_CHARS} characters (this one has {len(token)})")
        if not _B64TOKEN.fullmatch(token):
            raise TokenFileError(f"tokens file line {number}: a token uses only A-Z a-z 0-9 "
                                 "- . _ ~ + / and trailing = (RFC 6750 b64token)")
        d = digest(token)
        if d in seen:
            raise TokenFileError(f"tokens file line {number}: the same token as line {seen[d]}")
        seen[d] = number
        entries.append(TokenEntry(scope, d, number))
    return entries


def scope_of(entries: list[TokenEntry], presented: str, *,
             same: Callable[[bytes, bytes], bool] = hmac.compare_digest) -> str | None:
    """The scope `presented` grants (the widest if listed twice), or None if unknown.
    `same` is the constant-time compare (a parameter so a test can count its calls)."""
    wanted = digest(presented)
    granted: str | None = None
    for entry in entries:  # every entry, whatever matched before: no early exit
        if same(entry.digest, wanted) and granted != WRITE:
            granted = entry.scope
    return granted


def allows(granted: str, needed: str) -> bool:
    """`write` implies `read`."""
    return granted in (WRITE, needed)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


# -- `helios dev`: one write token under the data dir, made on first start ---------------

def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed


def dev_token_paths(data_dir: Path) -> tuple[Path, Path]:
    """(tokens file the API reads, file holding the write token for the CLI)."""
    return data_dir / "auth" / "tokens", data_dir / "auth" / "token"


def ensure_dev_tokens(data_dir: Path) -> Path:
    """Create `<data-dir>/auth/{tokens,token}` (0600) on first start; returns the tokens file.

    Later starts keep both, so a token exported in another shell stays valid; lines a
    user added to the tokens file (more tokens, read-only ones) are kept too."""
    tokens_file, token_file = dev_token_paths(data_dir)
    tokens_file.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(tokens_file.parent, 0o700)
    if tokens_file.exists() and token_file.exists():
        return tokens_file
    token = new_token()
    _write_private(tokens_file, "# helios dev: API tokens, one `scope token` a line "
                                f"(scopes: read, write)\n{WRITE} {token}\n")
    _write_private(token_file, token + "\n")
    return tokens_file


def new_token(nbytes: int = 32) -> str:
    """A random token that works on any command line: base64url may begin with `-`, which
    `helios --token TOKEN` (argparse) would read as an option, so the prefix is fixed."""
    return "helios_" + secrets.token_urlsafe(nbytes)


def dev_auth_env(data_dir: Path) -> dict[str, str]:
    """The services' environment for `helios dev`: the API reads the dev tokens file."""
    return {"HELIOS_AUTH_TOKENS_FILE": str(ensure_dev_tokens(data_dir))}


def read_token_file(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def dev_token(data_dir: Path) -> str | None:
    """The write token `helios dev` created under `data_dir`, if any."""
    return read_token_file(dev_token_paths(data_dir)[1])


def find_token(explicit: str | None = None, environ: Mapping[str, str] | None = None,
               cwd: Path | None = None, api_url: str | None = None) -> str | None:
    """The CLI's token: `--token`, else `$HELIOS_TOKEN`, else `./.helios/auth/token`.

    The last only for an API on this machine: a local dev token is never sent elsewhere."""
    if explicit:
        return explicit.strip()
    env = os.environ if environ is None else environ
    if env.get(TOKEN_ENV, "").strip():
        return env[TOKEN_ENV].strip()
    if api_url is not None and urlsplit(api_url).hostname not in LOOPBACK:
        return None
    return dev_token((cwd or Path.cwd()) / DEFAULT_DATA_DIR)


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def usage_hint(data_dir: Path) -> str:
    """`helios dev`'s line on how a shell (the CLI, curl) picks up the dev token."""
    return f"export {TOKEN_ENV}=$(cat {dev_token_paths(data_dir)[1]})"


def dev_headers(data_dir: Path) -> dict[str, str]:
    """The Authorization header of `helios dev`'s write token (demo, benchmarks)."""
    return auth_headers(dev_token(data_dir))
