"""The stand-in's object store: namespaced objects, one resourceVersion counter (like
etcd's revision), an event history for watches, and compaction to make old versions
expire (410 Gone)."""

from __future__ import annotations

import asyncio
import copy
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
KINDS = {  # resource -> (apiVersion, kind)
    "jobs": ("batch/v1", "Job"),
    "pods": ("v1", "Pod"),
    "secrets": ("v1", "Secret"),
    "serviceaccounts": ("v1", "ServiceAccount"),
}


def now_rfc3339(at: float | None = None) -> str:
    """Seconds precision, as the API server writes metav1.Time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))


class ApiError(Exception):
    """Answered as a Status object with this HTTP code."""

    def __init__(self, code: int, reason: str, message: str, **details: Any):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


# --- label selectors (equality- and set-based, as `kubectl -l` accepts them) ----------

_REQ = re.compile(r"""\s*(?:
    (?P<notexists>!\s*(?P<nk>[\w./-]+)) |
    (?P<setop>(?P<sk>[\w./-]+)\s+(?P<op>in|notin)\s*\((?P<vals>[^)]*)\)) |
    (?P<eq>(?P<ek>[\w./-]+)\s*(?P<eop>==|!=|=)\s*(?P<ev>[\w./-]*)) |
    (?P<exists>(?P<xk>[\w./-]+))
)\s*(?:,|$)""", re.X)


Requirement = Callable[[dict[str, str]], bool]


def _requirement(m: re.Match[str]) -> Requirement:
    if m["notexists"]:
        key = m["nk"]
        return lambda lb: key not in lb
    if m["setop"]:
        key, negate = m["sk"], m["op"] == "notin"
        values = {v.strip() for v in m["vals"].split(",") if v.strip()}
        return lambda lb: (lb.get(key) in values) != negate
    if m["eq"]:
        key, value, negate = m["ek"], m["ev"], m["eop"] == "!="
        return lambda lb: (lb.get(key) == value) != negate
    key = m["xk"]
    return lambda lb: key in lb


def parse_selector(text: str | None) -> list[Requirement]:
    reqs: list[Requirement] = []
    pos, text = 0, (text or "").strip()
    while pos < len(text):
        m = _REQ.match(text, pos)
        if not m or m.end() == pos:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {text[pos:]!r}")
        pos = m.end()
        reqs.append(_requirement(m))
    return reqs


def matches(obj: Obj, selector: list[Requirement]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(req(labels) for req in selector)


@dataclass
class Event:
    rv: int
    resource: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj


Listener = Callable[[Event], None]


class Store:
    def __init__(self) -> None:
        self.rv = 1000  # never 0: a list's "0" would mean "any version" to a watch
        self.floor = 0  # versions below this were compacted away
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.history: list[Event] = []
        self._wake = asyncio.Event()  # replaced by a fresh one at every change
        self.listeners: list[Listener] = []

    def _record(self, resource: str, kind: str, obj: Obj) -> None:
        event = Event(self.rv, resource, kind, copy.deepcopy(obj))
        self.history.append(event)
        for listener in list(self.listeners):
            listener(event)
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def wait_change(self, seen: int) -> None:
        """Return once the history is longer than `seen` events."""
        while len(self.history) <= seen:
            await self._wake.wait()

    async def next_change(self) -> None:
        """Return at the next change or kick, whatever it is."""
        await self._wake.wait()

    def kick(self) -> None:
        """Wake every waiting watch (to notice an injected condition)."""
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    def _bump(self, obj: Obj) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def compact(self) -> None:
        """Forget every version before now: watches from an older one get 410 Gone."""
        self.rv += 1
        self.floor = self.rv

    # --- CRUD ------------------------------------------------------------------------

    def create(self, resource: str, namespace: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
        if not name:
            raise ApiError(422, "Invalid", f"{resource}: metadata.name: Required value")
        key = (resource, namespace, name)
        if key in self.objects:
            group = "batch" if resource == "jobs" else ""
            raise ApiError(409, "AlreadyExists",
                           f'{resource}{"." + group if group else ""} "{name}" already exists',
                           name=name, group=group, kind=resource)
        api_version, kind = KINDS[resource]
        obj["apiVersion"], obj["kind"] = api_version, kind
        meta.update(name=name, namespace=namespace, uid=str(uuid.uuid4()),
                    creationTimestamp=now_rfc3339(), generation=1)
        obj.setdefault("status", {})
        self._bump(obj)
        self.objects[key] = obj
        self._record(resource, "ADDED", obj)
        return copy.deepcopy(obj)

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        obj = self.objects.get((resource, namespace, name))
        if obj is None:
            group = "batch" if resource == "jobs" else ""
            raise ApiError(404, "NotFound",
                           f'{resource}{"." + group if group else ""} "{name}" not found',
                           name=name, group=group, kind=resource)
        return copy.deepcopy(obj)

    def find(self, resource: str, namespace: str, name: str) -> Obj | None:
        obj = self.objects.get((resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None, selector: str | None = None
             ) -> list[Obj]:
        reqs = parse_selector(selector)
        return [copy.deepcopy(o) for (r, ns, _), o in sorted(self.objects.items())
                if r == resource and (namespace is None or ns == namespace) and matches(o, reqs)]

    def update(self, resource: str, namespace: str, name: str,
               mutate: Callable[[Obj], None]) -> Obj | None:
        """Apply `mutate` to the stored object and emit MODIFIED; None if it is gone."""
        obj = self.objects.get((resource, namespace, name))
        if obj is None:
            return None
        before = copy.deepcopy(obj)
        mutate(obj)
        if obj == before:
            return copy.deepcopy(obj)
        self._bump(obj)
        self._record(resource, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def remove(self, resource: str, namespace: str, name: str) -> Obj | None:
        obj = self.objects.pop((resource, namespace, name), None)
        if obj is None:
            return None
        self._bump(obj)
        self._record(resource, "DELETED", obj)
        return copy.deepcopy(obj)
