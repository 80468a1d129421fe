"""NATS/JetStream plumbing shared by every service: connect, streams, publish, consume.

Consumers follow one rule (STYLE.md #6): ack after the effect is stored, `nak(delay)`
on a transient error, `term()` on a poison message, each logged with subject and id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, BadRequestError, NotFoundError

from helios.messages import Message
from helios.settings import NatsSettings
from helios.subjects import Streams

log = logging.getLogger(__name__)


class Transient(Exception):
    """Raise from a handler to have the message redelivered after `delay` seconds."""

    def __init__(self, reason: str, delay: float = 1.0):
        super().__init__(reason)
        self.delay = delay


CONNECT_RETRY_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)  # then 2 s until the deadline


async def connect(settings: NatsSettings, name: str, *, deadline_s: float = 60.0) -> NATS:
    """Connect, retrying for a while: in a cluster (or `helios dev`) NATS may come up
    after us. Once connected, the client reconnects forever by itself."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    for attempt in itertools.count():
        try:
            return await nats.connect(
                servers=[s.strip() for s in settings.url.split(",")],
                name=name,
                connect_timeout=settings.connect_timeout_s,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
                error_cb=_log_error,
                disconnected_cb=_log_disconnect,
            )
        except (TimeoutError, NoServersError, OSError) as exc:
            if loop.time() > give_up:
                raise
            delay = CONNECT_RETRY_S[min(attempt, len(CONNECT_RETRY_S) - 1)]
            log.info("NATS not reachable yet (%s); retrying in %.2fs", exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def connected_check(nc: NATS) -> Callable[[], Awaitable[None]]:
    """A readiness check: the client holds a live connection to NATS."""
    async def check() -> None:
        if not nc.is_connected:
            raise ConnectionError("not connected to NATS")

    return check


async def close(nc: NATS, timeout_s: float = 5.0) -> None:
    """Flush what we published and acked, then close. The services drain their own
    in-flight work first; `nc.drain()` would wait on pull subscriptions' buffers."""
    if nc.is_closed:
        return
    with contextlib.suppress(Exception):
        await nc.flush(timeout=int(timeout_s))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), timeout_s)


async def _log_error(exc: Exception) -> None:
    log.warning("nats error: %s", exc)


async def _log_disconnect() -> None:
    log.warning("nats disconnected")


async def ensure_streams(js: JetStreamContext, streams: Streams, *,
                         deadline_s: float = 60.0) -> None:
    """Create each stream, or update it when its config changed. Safe to race, and
    patient: on a busy machine creating a file-backed stream can outlast one request's
    timeout (the stream is then usually made; asking again with the same config is a no-op)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    for config in streams.configs():
        while True:
            try:
                try:
                    await js.add_stream(config)
                except BadRequestError:
                    await js.update_stream(config)
                break
            except NatsTimeoutError:
                if loop.time() > give_up:
                    raise
                log.warning("creating stream %s timed out; asking again", config.name)


async def publish(
    js: JetStreamContext, subject: str, message: Message, *, timeout: float = 5.0
) -> int:
    """Publish with `Nats-Msg-Id` so JetStream drops a duplicate; returns the sequence."""
    ack = await js.publish(
        subject, message.to_bytes(), timeout=timeout, headers={"Nats-Msg-Id": message.msg_id}
    )
    return ack.seq


# Recovery after a kill is bounded by the ack wait: what a dead process held comes back
# that long after it died. So the wait is short, and whoever works on a message longer
# signals progress (`in_progress()`, every HEARTBEAT_S: see `keep_alive`). Each further
# redelivery of an unacknowledged message waits longer (JetStream's BackOff): a message
# that kills its consumer every time is retried ever more slowly, not in a hot loop.
REDELIVERY_S: tuple[float, ...] = (3.0, 3.0, 6.0, 15.0, 30.0, 60.0)
HEARTBEAT_S = 1.0


@dataclass(frozen=True)
class Consumer:
    """A durable consumer: where it reads and how patiently.

    `ack_wait_s` is the ack wait of a first delivery, `backoff_s` those of the next ones
    (the last repeats; never shorter than `ack_wait_s`). Handlers that may take longer
    than `ack_wait_s` keep their messages alive (`keep_alive`)."""

    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float = REDELIVERY_S[0]
    backoff_s: tuple[float, ...] = REDELIVERY_S[1:]
    max_deliver: int = 20
    batch: int = 256
    max_ack_pending: int = 10_000


def consumer_config(consumer: Consumer, *, durable: bool) -> ConsumerConfig:
    wait = consumer.ack_wait_s
    backoff = [wait, *(max(wait, b) for b in consumer.backoff_s)] if consumer.backoff_s else None
    return ConsumerConfig(
        durable_name=consumer.durable if durable else None,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=consumer.ack_wait_s,
        backoff=backoff,
        max_deliver=consumer.max_deliver,
        max_ack_pending=consumer.max_ack_pending,
        filter_subject=consumer.filter_subject,
    )


def config_drift(have: ConsumerConfig, want: ConsumerConfig) -> list[str]:
    """The settings of an existing durable that differ from what this code wants."""
    def close(a: float | None, b: float | None) -> bool:
        return abs((a or 0.0) - (b or 0.0)) < 1e-3

    out = []
    if not close(have.ack_wait, want.ack_wait):
        out.append("ack_wait")
    if len(have.backoff or []) != len(want.backoff or []) or not all(
            close(a, b) for a, b in zip(have.backoff or [], want.backoff or [], strict=True)):
        out.append("backoff")
    for name in ("max_deliver", "max_ack_pending", "filter_subject", "ack_policy"):
        if getattr(have, name) != getattr(want, name):
            out.append(name)
    return out


async def reconcile_consumer(js: JetStreamContext, consumer: Consumer) -> None:
    """Bring an existing durable to this code's settings (a durable keeps the config it
    was created with: an upgrade from a version with a 120 s ack wait would keep it).

    The editable fields are updated in place. If the server refuses the edit (a field it
    cannot change, or an older server), the durable is recreated from its ack floor: at
    worst a few acknowledged messages come again, which every consumer tolerates."""
    try:
        info = await js.consumer_info(consumer.stream, consumer.durable)
    except NotFoundError:
        return  # the subscribe creates it with the right config
    want = consumer_config(consumer, durable=True)
    drift = config_drift(info.config, want)
    if not drift:
        return
    have = info.config
    update = dataclasses.replace(
        have, ack_wait=want.ack_wait, backoff=want.backoff, max_deliver=want.max_deliver,
        max_ack_pending=want.max_ack_pending, filter_subject=want.filter_subject,
        ack_policy=want.ack_policy,
    )
    fields = {"consumer": consumer.durable, "changed": drift}
    try:
        await js.add_consumer(consumer.stream, config=update)
        log.info("durable consumer updated", extra=fields)
        return
    except APIError as exc:
        log.warning("durable consumer not updatable (%s); recreating it from its ack floor",
                    exc.description, extra=fields)
    start = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
    recreated = dataclasses.replace(
        update, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
        opt_start_time=None, name=None,
    )
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(consumer.stream, consumer.durable)
    try:
        await js.add_consumer(consumer.stream, config=recreated)
    except APIError as exc:  # another replica recreated it first: its config is ours
        log.info("durable consumer recreated elsewhere: %s", exc.description, extra=fields)


async def ensure_consumer(js: JetStreamContext, consumer: Consumer) -> JetStreamContext.PullSubscription:
    await reconcile_consumer(js, consumer)
    return await js.pull_subscribe(
        consumer.filter_subject, durable=consumer.durable, stream=consumer.stream,
        config=consumer_config(consumer, durable=True),
    )


async def progress(msgs: Iterable[Msg]) -> None:
    """Tell JetStream these messages are still being worked on (resets their ack wait)."""
    for msg in msgs:
        with contextlib.suppress(Exception):  # acked meanwhile, or the connection is down
            await msg.in_progress()


@contextlib.asynccontextmanager
async def keep_alive(msgs: Sequence[Msg], every_s: float = HEARTBEAT_S) -> AsyncIterator[None]:
    """While the body runs, signal progress on `msgs` every `every_s`."""
    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            await progress(msgs)

    task = asyncio.create_task(beat(), name="in-progress")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


Handler = Callable[[Msg], Awaitable[None]]


async def push_subscribe(
    js: JetStreamContext, consumer: Consumer, cb: Handler
) -> JetStreamContext.PushSubscription:
    """A durable push consumer bound as a queue group: messages arrive the moment they
    are stored (no fetch round trip on the dispatch path), replicas share the work, and
    `max_ack_pending` is the back-pressure: the server holds back what we have not acked.
    `cb` must not block for long; it runs once per message, in order."""
    # The queue name doubles as the durable name (nats-py sets it from `queue`).
    await reconcile_consumer(js, consumer)
    config = consumer_config(consumer, durable=False)
    return await js.subscribe(
        consumer.filter_subject, queue=consumer.durable, stream=consumer.stream,
        config=config, manual_ack=True, cb=cb,
        pending_msgs_limit=max(1024, consumer.max_ack_pending * 2),
    )


async def pull_forever(
    sub: JetStreamContext.PullSubscription,
    on_batch: Callable[[list[Msg]], Awaitable[None]],
    *,
    batch: int,
    stop: asyncio.Event,
    idle_timeout_s: float = 5.0,
) -> None:
    """Fetch batches until `stop` is set; each batch goes to `on_batch` in order.

    A fetch that is still waiting when `stop` is set is abandoned at once (anything it
    was about to receive is redelivered after ack_wait); a batch being handled is
    finished first: that is the drain.
    """
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            fetch = asyncio.ensure_future(sub.fetch(batch, timeout=idle_timeout_s))
            await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(BaseException):
                    await fetch
                return
            try:
                msgs = fetch.result()
            except (TimeoutError, NatsTimeoutError):
                continue
            except NotFoundError:
                log.error("consumer vanished; stopping the pull loop")
                raise
            async with keep_alive(msgs):  # a long batch must not be redelivered meanwhile
                await on_batch(msgs)
    finally:
        stopped.cancel()
