"""`GET /api/v1/dags/{dagId}/events`: the run's transitions as Server-Sent Events.

Replayed from JetStream (an ordered consumer on `helios.run.{dagId}.>`), never from
memory: the event id is the stream sequence, so `Last-Event-ID: N` resumes at N+1 and
a client that arrives late still gets the whole history. The stream ends after the
terminal run event of the run's current generation (a retried run keeps going).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import orjson
from aiohttp import web
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from helios import subjects
from helios.runs_view import read_head
from helios.states import RunState
from helios.subjects import STREAMS
from services.api.context import ApiContext, ctx
from services.api.problems import Problem
from services.api.runs import load_dag

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
RECHECK_S = 1.0  # how soon a feed notices that NATS reconnected under it
LAST_EVENT_ID = re.compile(r"[0-9]{1,19}")


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or "0"
    # Digits only, as the OpenAPI document says: int() would also take "+5", " 5", "1_0".
    if not LAST_EVENT_ID.fullmatch(raw):
        raise Problem(400, "Bad Request", "Last-Event-ID must be an event id (an integer)")
    value = int(raw)
    if not 0 <= value < 2**63:
        raise Problem(400, "Bad Request", "Last-Event-ID must be an event id in 0..2^63-1")
    return value


async def events(request: web.Request) -> web.StreamResponse:
    c = ctx(request)
    dag_id = request.match_info["dag_id"]
    await load_dag(request, dag_id)  # 404 before the stream starts
    after = _last_event_id(request)
    if await _already_over(c, dag_id, after):
        # The client saw the end (or the run's events aged out and nothing is left to
        # replay): 204 tells an EventSource to stop reconnecting.
        return web.Response(status=204)
    config = ConsumerConfig(opt_start_seq=after + 1) if after else None
    sub = await c.js.subscribe(
        subjects.run_feed(dag_id), ordered_consumer=True,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after else DeliverPolicy.ALL,
        config=config, inactive_threshold=60.0,
    )
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # nginx: stream, don't buffer
    })
    shutdown = asyncio.ensure_future(c.shutting_down.wait())
    sent = after
    reconnects = c.nc.stats["reconnects"]
    idle_s = 0.0
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        while True:
            nxt = asyncio.ensure_future(sub.next_msg(timeout=RECHECK_S))
            done, _ = await asyncio.wait({nxt, shutdown}, return_when=asyncio.FIRST_COMPLETED)
            if shutdown in done:
                nxt.cancel()
                break  # the client reconnects elsewhere with Last-Event-ID
            try:
                msg = nxt.result()
            except (TimeoutError, NatsTimeoutError):
                if c.nc.stats["reconnects"] != reconnects:
                    # NATS restarted: this ordered consumer died with it and would stall
                    # until the next heartbeat check; the client's resume replays at once.
                    break
                idle_s += RECHECK_S
                if idle_s < HEARTBEAT_S:
                    continue
                idle_s = 0.0
                if await _end_seq(c, dag_id) is not None or await _stalled(c, dag_id, sent):
                    # The run's end is published but did not come through here (it aged
                    # out, or this subscription lost its place across a NATS restart):
                    # close, and the client's resume replays what it has not seen.
                    break
                await response.write(b": keepalive\n\n")
                continue
            idle_s = 0.0
            seq = sent = msg.metadata.sequence.stream
            event = orjson.loads(msg.data)
            kind = event.get("type", "task")
            await response.write(f"id: {seq}\nevent: {kind}\ndata: ".encode() + msg.data + b"\n\n")
            if kind == "run" and await _is_final(c.redis, dag_id, event):
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the client went away
    except Exception as exc:
        # The headers are out, so no problem response can follow (the middleware's 503
        # would leave this stream open and silent until the client's read timeout). End
        # the stream: the client resumes with Last-Event-ID once the backend is back.
        log.warning("feed closed early: %r", exc, extra={"dagId": dag_id})
    finally:
        shutdown.cancel()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def _already_over(c: ApiContext, dag_id: str, after: int) -> bool:
    """True when the run has ended and `after` is at or past its terminal event."""
    end = await _end_seq(c, dag_id)
    return end is not None and after >= end


async def _end_seq(c: ApiContext, dag_id: str) -> int | None:
    """The stream sequence of the run's terminal event once the run has ended and that
    event is published (0 if the run's events aged out of the stream); None otherwise.

    The run state alone is not enough: the scheduler stores a run's end before it
    publishes the event (its outbox), so a feed that ended on the state could end
    before the terminal event, and a client resuming after it would never see it."""
    head = await read_head(c.redis, dag_id)
    if head is None or not head.state.terminal:
        return None
    try:
        last = await c.js.get_last_msg(STREAMS.runs, subjects.run_event(dag_id))
    except NotFoundError:
        return 0  # ended, and its events are gone from the stream
    event = orjson.loads(last.data or b"{}")
    if not RunState(event.get("state")).terminal or int(event.get("generation", 0)) < head.generation:
        return None  # the end is stored, its event not yet sent
    return last.seq or 0


async def _stalled(c: ApiContext, dag_id: str, sent: int) -> bool:
    """True when the stream holds an event of this run past the last one this feed sent:
    the subscription stopped delivering (its consumer went away with a NATS restart)."""
    try:
        last = await c.js.get_last_msg(STREAMS.runs, subjects.run_feed(dag_id))
    except Exception:  # no event yet, or a server too old for a wildcard lookup
        return False
    return (last.seq or 0) > sent


async def _is_final(redis, dag_id: str, event: dict) -> bool:  # type: ignore[no-untyped-def]
    """A terminal event ends the feed unless a later retry restarted the run."""
    if not RunState(event["state"]).terminal:
        return False
    head = await read_head(redis, dag_id)
    return (head.generation if head else 0) <= int(event.get("generation", 0))
