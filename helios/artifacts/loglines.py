"""The `[HELIOS] ...` lines of the downloader and uploader, and their parser.

On Kubernetes the watcher only sees pod logs, so these lines are the protocol that
carries cache statistics and uploaded outputs back. Each line is declared once, as a
template; writing and parsing both derive from it, so the two cannot drift apart.

Feed `LogSummary` only the logs of Helios's own containers (downloader, uploader):
user code can print anything, including a forged `[HELIOS] Uploaded ...` line.
"""

from __future__ import annotations

import re
from typing import Any

from helios.messages import CacheStats, OutputArtifact

PREFIX = "[HELIOS] "

_FIELD_PATTERNS = {
    # Artifact names cannot contain "/", which keeps "s3://" and the suffixes unambiguous.
    "name": r"[^/]+",
    "size": r"\d+",
    "short": r"[0-9a-f]{12}",
    "digest": r"[0-9a-f]{64}",
    "bucket": r"[^/\s]+",
    "key": r".+",
    "step": r"Download|Upload",
    "reason": r".+",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")
# `kubectl logs --timestamps` (and the API's timestamps=true) put RFC 3339 first.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+ ")


class Line:
    """One line format: `format(**fields)` writes it, `parse(text)` reads it back."""

    def __init__(self, template: str):
        self.template = template
        parts = re.split(r"\{(\w+)\}", template)
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>{_FIELD_PATTERNS[part]})"
            for i, part in enumerate(parts)
        )
        self._regex = re.compile(re.escape(PREFIX) + regex + "$")

    def format(self, **fields: Any) -> str:
        if "name" in fields:
            fields["name"] = _escape(fields["name"])
        if "reason" in fields:
            fields["reason"] = " ".join(str(fields["reason"]).split())  # one line, always
        return PREFIX + self.template.format(**fields)

    def parse(self, text: str) -> dict[str, str] | None:
        match = self._regex.match(text)
        if match is None:
            return None
        fields = match.groupdict()
        if "name" in fields:
            fields["name"] = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), fields["name"])
        return fields


CACHE_HIT = Line("Cache hit {name} ({size} bytes, sha256 {short})")
CACHE_MISS = Line(
    "Cache miss {name} ({size} bytes, sha256 {short}) fetched from s3://{bucket}/{key}"
)
CACHE_DISABLED = Line(
    "Cache disabled {name} ({size} bytes, sha256 {short}) fetched from s3://{bucket}/{key}"
)
CACHE_DROPPED = Line(
    "Cache entry of {name} (sha256 {short}) failed verification: dropped, fetching again"
)
UPLOADED = Line("Uploaded {name} ({size} bytes, sha256 {digest}) to s3://{bucket}/{key}")
FAILED = Line("{step} failed: {reason}")


def cache_hit(name: str, size: int, digest: str) -> str:
    return CACHE_HIT.format(name=name, size=size, short=digest[:12])


def cache_miss(name: str, size: int, digest: str, bucket: str, key: str) -> str:
    return CACHE_MISS.format(name=name, size=size, short=digest[:12], bucket=bucket, key=key)


def cache_disabled(name: str, size: int, digest: str, bucket: str, key: str) -> str:
    return CACHE_DISABLED.format(name=name, size=size, short=digest[:12], bucket=bucket, key=key)


def cache_dropped(name: str, digest: str) -> str:
    return CACHE_DROPPED.format(name=name, short=digest[:12])


def uploaded(name: str, size: int, digest: str, bucket: str, key: str) -> str:
    return UPLOADED.format(name=name, size=size, digest=digest, bucket=bucket, key=key)


def failed(step: str, reason: object) -> str:
    return FAILED.format(step=step, reason=reason)


class LogSummary:
    """What one attempt's helper logs say: cache statistics, uploaded outputs, failure.

    Idempotent per artifact name: feeding the same log twice (a re-read after a
    watcher restart) changes nothing. Lines that are not ours are ignored.
    """

    def __init__(self) -> None:
        self._inputs: dict[str, tuple[str, int]] = {}  # name -> (hit|miss|disabled, size)
        self._outputs: dict[str, OutputArtifact] = {}
        self.error: str | None = None

    def feed(self, line: str) -> None:
        text = _TIMESTAMP.sub("", line.rstrip("\r\n"), count=1)
        if not text.startswith(PREFIX):
            return
        for kind, fmt in (("hit", CACHE_HIT), ("miss", CACHE_MISS), ("disabled", CACHE_DISABLED)):
            if (f := fmt.parse(text)) is not None:
                self._inputs[f["name"]] = (kind, int(f["size"]))
                return
        if (f := UPLOADED.parse(text)) is not None:
            self._outputs[f["name"]] = OutputArtifact(
                name=f["name"], key=f["key"], sha256=f["digest"], size=int(f["size"])
            )
        elif (f := FAILED.parse(text)) is not None:
            self.error = f["reason"]

    @property
    def cache(self) -> CacheStats:
        hits = [size for kind, size in self._inputs.values() if kind == "hit"]
        fetched = [size for kind, size in self._inputs.values() if kind != "hit"]
        return CacheStats(
            hits=len(hits),
            misses=sum(1 for kind, _ in self._inputs.values() if kind == "miss"),
            bytesSaved=sum(hits),
            bytesFetched=sum(fetched),
        )

    @property
    def inputs(self) -> int:
        """How many inputs were placed (hit, miss or with the cache disabled)."""
        return len(self._inputs)

    @property
    def outputs(self) -> list[OutputArtifact]:
        return list(self._outputs.values())


def _escape(name: str) -> str:
    # A newline in a name would split the line and let the rest pose as another line.
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name)
