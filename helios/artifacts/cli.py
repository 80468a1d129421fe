"""`python -m helios.downloader` and `python -m helios.uploader`: environment in, lines out.

They run in Helios's own image (the Job's init container and upload step). `[HELIOS]`
lines go to stdout, diagnostics to stderr. On failure: one `[HELIOS] ... failed: reason`
line on stderr, the same reason in the Kubernetes termination message when the kubelet
provides `/dev/termination-log`, and exit status 1 (2 for bad configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from helios import logs
from helios.artifacts import loglines
from helios.artifacts.cache import NodeCache
from helios.artifacts.downloader import place_inputs
from helios.artifacts.uploader import upload_outputs
from helios.messages import InputArtifact
from helios.s3 import open_s3
from helios.settings import CacheSettings, S3Settings

TERMINATION_LOG = Path("/dev/termination-log")
_INPUTS = TypeAdapter(list[InputArtifact])
_NAMES = TypeAdapter(list[str])


class ConfigError(Exception):
    pass


def downloader_main() -> int:
    return _main("Download", _download)


def uploader_main() -> int:
    return _main("Upload", _upload)


async def _download() -> None:
    inputs = _INPUTS.validate_json(_env("HELIOS_INPUT_ARTIFACTS", "[]"))
    s3_settings = S3Settings()  # type: ignore[call-arg]  # fields come from HELIOS_S3_*
    cache = None
    if _flag("HELIOS_CACHE_ENABLED", default=True):
        cache_settings = CacheSettings()  # type: ignore[call-arg]
        cache = NodeCache(
            cache_settings.dir, cache_settings.max_bytes,
            hardlink=_flag("HELIOS_CACHE_HARDLINK", default=False),
        )
    async with open_s3(s3_settings) as s3:
        await place_inputs(
            inputs, _artifacts_dir(), s3=s3, bucket=s3_settings.bucket, cache=cache, emit=_emit
        )


async def _upload() -> None:
    dag_id, task = _required("HELIOS_DAG_ID"), _required("HELIOS_TASK")
    outputs = _NAMES.validate_json(_env("HELIOS_OUTPUTS", "[]"))
    s3_settings = S3Settings()  # type: ignore[call-arg]  # fields come from HELIOS_S3_*
    async with open_s3(s3_settings) as s3:
        await upload_outputs(
            dag_id, task, outputs, _artifacts_dir(), s3=s3, bucket=s3_settings.bucket, emit=_emit
        )


def _main(step: str, run: Callable[[], Awaitable[None]]) -> int:
    logs.configure(f"helios-{step.lower()}er", "INFO", "text")
    try:
        asyncio.run(run())  # type: ignore[arg-type]
        return 0
    except (ConfigError, ValidationError) as exc:
        _fail(step, f"invalid configuration: {_one_line(exc)}")
        return 2
    except Exception as exc:
        _fail(step, _one_line(exc))
        return 1


def _emit(line: str) -> None:
    print(line, flush=True)


def _fail(step: str, reason: str) -> None:
    line = loglines.failed(step, reason)
    print(line, file=sys.stderr, flush=True)
    if TERMINATION_LOG.exists():
        with contextlib.suppress(OSError):  # best effort: the line above already says it
            TERMINATION_LOG.write_text(line + "\n")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()
        )
    text = " ".join(str(exc).split())
    # Library errors (botocore, OSError) read better with their type in front.
    return text if exc.__module__.startswith("helios") else f"{type(exc).__name__}: {text}"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def _flag(name: str, *, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def _artifacts_dir() -> Path:
    return Path(_env("HELIOS_ARTIFACTS_DIR", "/artifacts"))
