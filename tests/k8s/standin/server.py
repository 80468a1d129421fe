"""The stand-in's HTTP API: the paths, verbs and answers the real API server gives for
batch/v1 Jobs, v1 Pods (with `log`) and v1 Secrets, so the real kubernetes-asyncio
client can talk to it.

Watches stream one JSON event a line (chunked), resume from a resourceVersion, send
BOOKMARK events when asked (`allowWatchBookmarks`), end after `timeoutSeconds`, and
answer a compacted resourceVersion with an ERROR event carrying a 410 Status (the usual
form) or, when a test asks for it, an HTTP 410. Tests can also break every open watch,
mute them (a silent, dead-looking stream), and make the next requests fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import defaults
from .store import KINDS, ApiError, Obj, Store, gone, matches, parse_selector

TOKEN = "standin-token"
TRUE = ("1", "t", "T", "true", "True", "TRUE")  # what Go's strconv.ParseBool accepts


@dataclass
class Fault:
    """Answer the next `times` requests whose method and path match with `code`."""

    method: str
    path_part: str
    code: int
    times: int = 1
    retry_after: int | None = None
    query_part: str = ""  # and, when set, whose query string contains this


@dataclass
class Knobs:
    bookmark_interval_s: float = 1.0
    expire_as: str = "event"  # how a too-old resourceVersion is answered: event | http
    muted: bool = False
    faults: list[Fault] = field(default_factory=list)


class ApiServer:
    def __init__(self, store: Store, logs: Any) -> None:
        self.store = store
        self.logs = logs  # the kubelet: .log_text(namespace, pod, container)
        self.knobs = Knobs()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.list_versions: list[str] = []  # the resourceVersion of each list answered
        self.deletions: dict[str, str] = {}  # uid -> propagationPolicy of its delete
        # Set by the cluster: (resource, ns, name, policy, gracePeriodSeconds) -> obj.
        self.on_delete: Any = None
        self._streams: set[web.StreamResponse] = set()
        self._generation = 0  # bumped to end every open watch
        self._silenced = 0  # bumped by mute(): every watch open at that moment is dead
        self._requested = asyncio.Event()  # replaced by a fresh one at every request

    # --- test controls -------------------------------------------------------------

    def expire(self, how: str = "event") -> None:
        """Compact history and end open watches: their resume gets 410 Gone."""
        self.knobs.expire_as = how
        self.store.compact()
        self.break_watches()

    def break_watches(self) -> None:
        self._generation += 1
        self.store.kick()

    def mute(self, on: bool = True) -> None:
        """Open watches go silent for good; new ones stay silent while `on`."""
        self.knobs.muted = on
        if on:  # at once, not when the stream next wakes (the test may unmute before)
            self._silenced += 1
        self.store.kick()

    def fail(self, method: str, path_part: str, code: int, times: int = 1,
             retry_after: int | None = None, query_part: str = "") -> None:
        self.knobs.faults.append(Fault(method, path_part, code, times, retry_after,
                                       query_part))

    def count(self, method: str, path_part: str, watch: bool | None = None) -> int:
        return sum(1 for m, p, q in self.requests if m == method and path_part in p
                   and (watch is None or (q.get("watch") in TRUE) == watch))

    async def until_count(self, method: str, path_part: str, n: int,
                          watch: bool | None = None, timeout: float = 10.0) -> None:
        """Until `count(...)` reaches `n`, re-checked at every request."""
        async with asyncio.timeout(timeout):
            while self.count(method, path_part, watch) < n:
                await self._requested.wait()

    # --- plumbing -----------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/version", self._version)
        for prefix, resource in (("/apis/batch/v1", "jobs"), ("/api/v1", "pods"),
                                 ("/api/v1", "secrets"), ("/api/v1", "serviceaccounts")):
            base = f"{prefix}/namespaces/{{ns}}/{resource}"
            r.add_get(base, self._collection(resource))
            r.add_post(base, self._create(resource))
            r.add_get(base + "/{name}", self._read(resource))
            r.add_delete(base + "/{name}", self._delete(resource))
        r.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", self._log)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        requested, self._requested = self._requested, asyncio.Event()
        requested.set()
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _status(ApiError(401, "Unauthorized", "Unauthorized"))
        for fault in self.knobs.faults:
            if fault.times > 0 and fault.method == request.method \
                    and fault.path_part in request.path \
                    and fault.query_part in request.query_string:
                fault.times -= 1
                err = ApiError(fault.code, "InjectedFault", "injected by the test",
                               **({"retryAfterSeconds": fault.retry_after}
                                  if fault.retry_after else {}))
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                return _status(err, headers)
        try:
            return await handler(request)
        except ApiError as err:
            return _status(err)

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0-standin"})

    # --- CRUD ---------------------------------------------------------------------

    def _collection(self, resource: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            ns = request.match_info["ns"]
            if request.query.get("watch") in TRUE:
                return await self._watch(request, resource, ns)
            items = self.store.list(resource, ns, request.query.get("labelSelector"))
            self.list_versions.append(str(self.store.rv))
            api_version, kind = KINDS[resource]
            return web.json_response({"kind": f"{kind}List", "apiVersion": api_version,
                                      "metadata": {"resourceVersion": str(self.store.rv)},
                                      "items": items})
        return handler

    def _create(self, resource: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            body = await request.json()
            ns = request.match_info["ns"]
            if (body.get("metadata") or {}).get("namespace", ns) != ns:
                raise ApiError(400, "BadRequest", "the namespace of the object does not "
                               "match the namespace on the request")
            return web.json_response(self.store.create(resource, ns,
                                                       defaults.apply(resource, body)),
                                     status=201)
        return handler

    def _read(self, resource: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            m = request.match_info
            return web.json_response(self.store.get(resource, m["ns"], m["name"]))
        return handler

    def _delete(self, resource: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            m = request.match_info
            # DeleteOptions come as query parameters or as a body; the body wins.
            policy = request.query.get("propagationPolicy")
            grace_text = request.query.get("gracePeriodSeconds")
            if request.can_read_body:
                with contextlib.suppress(ValueError, AttributeError):
                    options = await request.json()
                    policy = options.get("propagationPolicy") or policy
                    if options.get("gracePeriodSeconds") is not None:
                        grace_text = str(options["gracePeriodSeconds"])
            try:
                grace = int(grace_text) if grace_text not in (None, "") else None
            except ValueError:
                raise ApiError(400, "BadRequest", "gracePeriodSeconds: not an integer") from None
            self.store.get(resource, m["ns"], m["name"])  # 404 when absent
            obj = self.on_delete(resource, m["ns"], m["name"], policy, grace)
            return web.json_response(obj)
        return handler

    async def _log(self, request: web.Request) -> web.Response:
        m = request.match_info
        pod = self.store.get("pods", m["ns"], m["name"])
        names = [c["name"] for key in ("initContainers", "containers")
                 for c in pod["spec"].get(key) or []]
        container = request.query.get("container")
        if container is None:
            if len(names) != 1:
                raise ApiError(400, "BadRequest", "a container name must be specified for pod "
                               f"{m['name']}, choose one of: {names}")
            container = names[0]
        if container not in names:
            raise ApiError(400, "BadRequest",
                           f"container {container} is not valid for pod {m['name']}")
        text = self.logs.log_text(m["ns"], m["name"], container)
        if text is None:
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{m["name"]}" '
                           "is waiting to start: PodInitializing")
        limit = request.query.get("limitBytes")
        if limit:
            text = text.encode()[:int(limit)].decode(errors="ignore")
        return web.Response(text=text, content_type="text/plain")

    # --- watch --------------------------------------------------------------------

    async def _watch(self, request: web.Request, resource: str, ns: str) -> web.StreamResponse:
        q = request.query
        selector = parse_selector(q.get("labelSelector"))
        since = q.get("resourceVersion") or ""
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = q.get("allowWatchBookmarks") in TRUE
        if since not in ("", "0") and int(since) < self.store.floor \
                and self.knobs.expire_as == "http":
            return _status(gone(f"too old resource version: {since} ({self.store.floor})"))
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        self._streams.add(resp)
        try:
            await self._stream(resp, resource, ns, selector, since, timeout, bookmarks)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(resp)
        return resp

    async def _stream(self, resp: web.StreamResponse, resource: str, ns: str, selector: Any,
                      since: str, timeout: float, bookmarks: bool) -> None:
        async def send(kind: str, obj: Obj) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        generation, silenced = self._generation, self._silenced
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        if since in ("", "0"):  # no version: the current state as ADDED events first
            for obj in self.store.list(resource, ns):
                if matches(obj, selector):
                    await send("ADDED", obj)
            index = len(self.store.history)
        elif int(since) < self.store.floor:
            await send("ERROR", gone(f"too old resource version: {since} "
                                     f"({self.store.floor})").status())
            return
        else:
            index = next((i for i, e in enumerate(self.store.history) if e.rv > int(since)),
                         len(self.store.history))
        next_bookmark = loop.time() + self.knobs.bookmark_interval_s
        dead = False  # once muted, a stream stays silent: a dead connection never recovers
        while loop.time() < end and generation == self._generation:
            dead = dead or self.knobs.muted or silenced != self._silenced
            history = self.store.history
            while index < len(history) and not dead:
                event = history[index]
                index += 1
                if event.resource == resource and event.obj["metadata"].get("namespace") == ns \
                        and matches(event.obj, selector):
                    await send(event.type, event.obj)
            if bookmarks and not dead and loop.time() >= next_bookmark:
                api_version, kind = KINDS[resource]
                await send("BOOKMARK", {"kind": kind, "apiVersion": api_version,
                                        "metadata": {"resourceVersion": str(self.store.rv)}})
                next_bookmark = loop.time() + self.knobs.bookmark_interval_s
            wait = min(end, next_bookmark if bookmarks else end) - loop.time()
            # A muted stream stays open and says nothing (a dead connection), whatever
            # changes, until the test breaks it or its timeout ends it.
            waiter = self.store.next_change() if dead \
                else self.store.wait_change(index)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, max(0.01, wait))


def _status(err: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(err.status(), status=err.code, headers=headers)
