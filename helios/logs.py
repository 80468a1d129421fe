"""Structured logging: one JSON object a line, with dagId/task/attempt/subject fields.

Call sites pass context through `extra=`; `log_fields()` keeps the keys consistent.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_CONTEXT_KEYS = ("service", "dagId", "dagName", "task", "attempt", "subject", "msgId", "job")
_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def log_fields(**fields: Any) -> dict[str, Any]:
    """`extra=` for a log call, dropping None values."""
    return {k: v for k, v in fields.items() if v is not None}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__("%(asctime)s %(levelname)-5s " + service + " %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = " ".join(f"{k}={record.__dict__[k]}" for k in _CONTEXT_KEYS if k in record.__dict__)
        return f"{line} {ctx}" if ctx else line


def configure(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter that is noise at INFO.
    for noisy in ("aiobotocore", "botocore", "aiohttp.access", "kubernetes_asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
