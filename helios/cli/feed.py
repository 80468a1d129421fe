"""Following a run's SSE feed until its terminal event, through API restarts.

A stream can close for many reasons that are not the end of the run: the API drains for
a restart, a proxy times out, the connection drops, the API is down for a moment. None of
them is taken as the end. The follower resumes with `Last-Event-ID` (the id of the last
event it saw), backing off between tries, until it has seen the terminal run event or the
API answers `204` (the run is over and this client saw its end). Only a client error (a
`4xx`: no such run, no access) stops it early.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

# Seconds between reconnection tries; the last value repeats for as long as it takes.
BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0)
# A stream that sends neither an event nor a heartbeat (every 15 s) for this long is dead.
SILENCE_S = 45.0
TERMINAL_RUN_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
# Errors after which the feed is resumed: the connection, not the request, went wrong.
TRANSIENT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


@dataclass(frozen=True)
class FeedEvent:
    id: int
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.data.get("type") == "run" and self.data.get("state") in TERMINAL_RUN_STATES


class FeedError(Exception):
    """The API refused the feed (a 4xx): resuming cannot help."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body}")


def backoff_s(failures: int) -> float:
    """The pause before the `failures`-th consecutive reconnection try (1-based)."""
    return BACKOFF_S[min(max(failures, 1), len(BACKOFF_S)) - 1]


class SseParser:
    """Incremental Server-Sent Events parser: feed it lines, get events with an id."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def line(self, raw: str) -> FeedEvent | None:
        line = raw.rstrip("\r\n")
        if line.startswith(":"):
            return None  # a comment: the server's heartbeat
        if line:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            self.fields[key] = self.fields[key] + "\n" + value if key == "data" and key in self.fields else value
            return None
        fields, self.fields = self.fields, {}
        if "data" not in fields or "id" not in fields:
            return None  # e.g. the `retry:` preamble
        return FeedEvent(int(fields["id"]), json.loads(fields["data"]))


async def follow_feed(
    session: aiohttp.ClientSession, url: str, *, last_event_id: int | None = None,
    headers: dict[str, str] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> AsyncIterator[FeedEvent]:
    """Every event of the feed at `url` once, in order, until the run's terminal event.

    `on_note` hears one line when the stream is lost and one when it is resumed."""
    last = last_event_id
    failures = 0  # consecutive tries that brought no event
    interrupted = False  # told `on_note` the feed was lost, not yet that it is back
    seen_terminal = False
    while True:
        request_headers = dict(headers or {})
        if last is not None:
            request_headers["Last-Event-ID"] = str(last)
        reason: str
        try:
            async with session.get(url, headers=request_headers, timeout=aiohttp.ClientTimeout(
                total=None, connect=10, sock_connect=10, sock_read=SILENCE_S,
            )) as resp:
                if resp.status == 204:
                    return  # the run is over and we saw its end
                if 400 <= resp.status < 500:
                    raise FeedError(resp.status, await _body(resp))
                if resp.status != 200:
                    reason = f"HTTP {resp.status}"
                else:
                    if interrupted and on_note:
                        on_note("feed resumed" + (f" after event {last}" if last is not None else ""))
                    interrupted = False
                    parser = SseParser()
                    async for raw in resp.content:
                        event = parser.line(raw.decode())
                        if event is None:
                            continue
                        failures = 0
                        last = event.id
                        seen_terminal = event.terminal
                        yield event
                    if seen_terminal:
                        return  # the server ends the feed after the run's terminal event
                    reason = "the stream closed before the run ended"
        except TRANSIENT as exc:
            reason = why(exc)
        failures += 1
        if not interrupted and on_note:
            where = f"after event {last}" if last is not None else "from the start"
            on_note(f"feed interrupted ({reason}); resuming {where}")
        interrupted = True
        await asyncio.sleep(backoff_s(failures))


def why(exc: BaseException) -> str:
    """A few words on a transient error, for the note a user reads."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "the API is unreachable"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no data for {SILENCE_S:g} s"
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        return "the connection dropped"
    return type(exc).__name__


async def _body(resp: aiohttp.ClientResponse) -> Any:
    text = await resp.text()
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text
