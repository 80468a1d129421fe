"""Submitted documents are parsed off the event loop, bounded in depth and in time.

YAML is parsed in pure Python: a hostile megabyte can hold the CPU for seconds, and a
thread would still hold the GIL, so every request of the API would wait. Documents go to
a few worker processes instead (`python -m services.api.parsing`, framed messages over
stdin/stdout). Each worker parses one document at a time; a parse that outlives the time
bound kills its worker, which is replaced in the background, and the client gets a 400.
When every worker is busy, a request waits for one, up to a bound, then gets a 503.

The depth bound is `helios.dag.parse`'s: a linear pre-scan refuses deep `[`/`{` nesting
before the parser starts, and the YAML composer refuses deep block nesting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import struct
import sys
import traceback
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson
from aiohttp import web

from helios.dag.graph import FieldError
from helios.dag.parse import DagError, parse_dag_document
from helios.instantiate import RunSpec, instantiate

log = logging.getLogger(__name__)

WORKERS = 2
PARSE_TIMEOUT_S = 5.0  # a 1 MiB DAG of 1000 tasks parses in about a second
WAIT_FOR_WORKER_S = 10.0
START_TIMEOUT_S = 30.0  # a worker imports pydantic and the models: slow on a busy node
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
WORKER_NICENESS = 10
WORKER_MEMORY_BYTES = 1024**3

# A frame: two big-endian u32 (header length, payload length), a JSON header, the payload.
_FRAME = struct.Struct(">II")
READY = b"R"


@dataclass(frozen=True, slots=True)
class Parsed:
    """A validated DAG as the submit handler needs it: the stored form is already encoded."""

    document: bytes
    dag_name: str
    use_cache: bool
    task_count: int
    # With a run (`helios.instantiate`): every parameter's value, and the document as
    # submitted when rendering changed it (resubmit starts from it), else None.
    params: dict[str, Any] | None = None
    source: bytes | None = None


class ParserBusy(Exception):
    """Every worker stayed busy for the whole wait."""


def frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = orjson.dumps(header)
    return _FRAME.pack(len(head), len(payload)) + head + payload


def parse_job(body: bytes, media: str, use_cache: bool | None,
              run: dict[str, Any] | None = None) -> tuple[dict[str, Any], bytes]:
    """What a worker does with one document: a result header and the stored document
    (followed, for a rendered run, by the document as submitted)."""
    extra: dict[str, Any] = {}
    source = b""
    try:
        dag = parse_dag_document(body, media)
        if run is not None:
            instance = instantiate(dag, RunSpec.from_json(run))
            extra["params"] = instance.params
            if instance.templated:
                source = orjson.dumps(dag.to_document())
            dag = instance.dag
    except DagError as exc:
        return {"kind": "invalid", "title": exc.title,
                "errors": [[e.loc, e.msg] for e in exc.errors]}, b""
    except RecursionError:
        return {"kind": "invalid", "title": "document too deeply nested",
                "errors": [["", "nesting too deep to parse"]]}, b""
    try:
        if use_cache is not None:
            dag = dag.model_copy(update={"use_cache": use_cache})
        document = orjson.dumps(dag.to_document())
    except orjson.JSONEncodeError as exc:
        # JSON may escape a lone surrogate ("\\ud800") that no UTF-8 store can hold.
        return {"kind": "invalid", "title": "invalid DAG",
                "errors": [["", f"the document cannot be stored: {exc}"[:300]]]}, b""
    except Exception as exc:
        # A bug of ours, not the document's: the API answers 500 and the worker lives on.
        traceback.print_exc()
        return {"kind": "failed", "error": repr(exc)[:300]}, b""
    return ({"kind": "ok", "dagName": dag.dag_name, "useCache": dag.use_cache,
             "taskCount": len(dag.tasks), "documentBytes": len(document), **extra},
            document + source)


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def worker_main() -> None:
    """One document in, one result out, until the API closes our stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the API process decides when we stop
    # Parsing yields to the API itself when CPUs are scarce: requests stay quick.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    # A megabyte of document never needs a gigabyte: past that, this worker fails alone.
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    # The protocol owns the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    source = sys.stdin.buffer
    out.write(READY)
    out.flush()
    while (head := _read_exactly(source, _FRAME.size)) is not None:
        header_len, body_len = _FRAME.unpack(head)
        header = _read_exactly(source, header_len)
        body = _read_exactly(source, body_len)
        if header is None or body is None:
            return
        job = orjson.loads(header)
        result, payload = parse_job(body, job["media"], job["useCache"], job.get("run"))
        out.write(frame(result, payload))
        out.flush()


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process

    @classmethod
    async def start(cls) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.api.parsing",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        worker = cls(process)
        try:
            assert process.stdout is not None
            async with asyncio.timeout(START_TIMEOUT_S):
                if await process.stdout.readexactly(1) != READY:
                    raise ConnectionError("parser worker did not start")
        except BaseException:
            await worker.kill()
            raise
        return worker

    async def ask(self, request: bytes, timeout_s: float) -> tuple[dict[str, Any], bytes]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        async with asyncio.timeout(timeout_s):
            stdin.write(request)
            await stdin.drain()
            header_len, payload_len = _FRAME.unpack(await stdout.readexactly(_FRAME.size))
            header = orjson.loads(await stdout.readexactly(header_len))
            return header, await stdout.readexactly(payload_len)

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5.0)

    async def stop(self) -> None:
        """Closing stdin ends the worker's loop; a worker that lingers is killed."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 2.0)
        except TimeoutError:
            await self.kill()


class ParserPool:
    """`async with ParserPool() as pool: parsed = await pool.parse(body, media)`."""

    def __init__(self, workers: int = WORKERS, timeout_s: float = PARSE_TIMEOUT_S,
                 wait_s: float = WAIT_FOR_WORKER_S):
        self.workers = workers
        self.timeout_s = timeout_s
        self.wait_s = wait_s
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    async def __aenter__(self) -> ParserPool:
        try:
            for worker in await asyncio.gather(*(_Worker.start() for _ in range(self.workers))):
                self._give_back(worker)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        workers, self._all = list(self._all), set()
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)

    def _give_back(self, worker: _Worker) -> None:
        self._all.add(worker)
        self._idle.put_nowait(worker)

    def _own(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _replace(self, worker: _Worker) -> None:
        """Kill a stuck or dead worker and start another; the pool never shrinks for long."""
        self._all.discard(worker)
        await worker.kill()
        for attempt in range(1000):
            try:
                self._give_back(await _Worker.start())
                return
            except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
                delay = RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)]
                log.error("parser worker did not start (%r); retrying in %ss", exc, delay)
                await asyncio.sleep(delay)

    async def _run(self, worker: _Worker, request: bytes) -> tuple[dict[str, Any], bytes]:
        """One job on one worker. Owned by the pool, not by the request: a client that
        leaves does not leave a worker with an unread answer in the pool."""
        try:
            result = await worker.ask(request, self.timeout_s)
        except TimeoutError:
            self._own(asyncio.create_task(self._replace(worker), name="parser-restart"))
            return {"kind": "timeout"}, b""
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, struct.error):
            self._own(asyncio.create_task(self._replace(worker), name="parser-restart"))
            return {"kind": "crashed"}, b""
        self._give_back(worker)
        return result

    async def parse(self, body: bytes, media: str, use_cache: bool | None = None,
                    run: dict[str, Any] | None = None) -> Parsed:
        """The validated DAG (rendered for `run`, a `helios.instantiate.RunSpec` as JSON);
        raises DagError (a 400) or ParserBusy (a 503)."""
        if self._closed:
            raise ParserBusy
        try:
            worker = await asyncio.wait_for(self._idle.get(), self.wait_s)
        except TimeoutError:
            raise ParserBusy from None
        request = frame({"media": media, "useCache": use_cache, "run": run}, body)
        job = self._own(asyncio.create_task(self._run(worker, request), name="parser-job"))
        header, payload = await asyncio.shield(job)
        kind = header["kind"]
        if kind == "ok":
            cut = header["documentBytes"]
            return Parsed(payload[:cut], header["dagName"], header["useCache"],
                          header["taskCount"], header.get("params"), payload[cut:] or None)
        if kind == "invalid":
            raise DagError(header["title"], [FieldError(loc, msg) for loc, msg in header["errors"]])
        if kind == "failed":
            raise RuntimeError(f"document parse failed in the worker: {header.get('error')}")
        log.warning("document parse %s", kind, extra={"bytes": len(body), "media": media})
        reason = (f"parsing took longer than {self.timeout_s:g} s" if kind == "timeout"
                  else "the parser gave up on this document")
        raise DagError("document too complex", [FieldError("", reason)])


PARSER = web.AppKey("parser", ParserPool)


if __name__ == "__main__":
    worker_main()
