"""NATS/JetStream plumbing shared by every service: connect, streams, publish, consume.

Consumers follow one rule (STYLE.md #6): ack after the effect is stored, `nak(delay)`
on a transient error, `term()` on a poison message, each logged with subject and id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

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


async def ensure_streams(js: JetStreamContext, streams: Streams) -> None:
    """Create each stream, or update it when its config changed. Safe to race."""
    for config in streams.configs():
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)


async def publish(
    js: JetStreamContext, subject: str, message: Message, *, timeout: float = 5.0
) -> int:
    """Publish with `Nats-Msg-Id` so JetStream drops a duplicate; returns the sequence."""
    ack = await js.publish(
        subject, message.to_bytes(), timeout=timeout, headers={"Nats-Msg-Id": message.msg_id}
    )
    return ack.seq


@dataclass(frozen=True)
class Consumer:
    """A durable consumer: where it reads and how patiently."""

    stream: str
    durable: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 20
    batch: int = 256
    max_ack_pending: int = 10_000


def consumer_config(consumer: Consumer, *, durable: bool) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=consumer.durable if durable else None,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=consumer.ack_wait_s,
        max_deliver=consumer.max_deliver,
        max_ack_pending=consumer.max_ack_pending,
        filter_subject=consumer.filter_subject,
    )


async def ensure_consumer(js: JetStreamContext, consumer: Consumer) -> JetStreamContext.PullSubscription:
    return await js.pull_subscribe(
        consumer.filter_subject, durable=consumer.durable, stream=consumer.stream,
        config=consumer_config(consumer, durable=True),
    )


Handler = Callable[[Msg], Awaitable[None]]


async def push_subscribe(
    js: JetStreamContext, consumer: Consumer, cb: Handler
) -> JetStreamContext.PushSubscription:
    """A durable push consumer bound as a queue group: messages arrive the moment they
    are stored (no fetch round trip on the dispatch path), replicas share the work, and
    `max_ack_pending` is the back-pressure: the server holds back what we have not acked.
    `cb` must not block for long; it runs once per message, in order."""
    # The queue name doubles as the durable name (nats-py sets it from `queue`).
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
            await on_batch(msgs)
    finally:
        stopped.cancel()
