"""A durable consumer created by an older version (120 s ack wait) is brought to this
version's settings: updated in place, or recreated from its ack floor when the server
refuses the edit (real NATS)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from helios import bus
from helios.settings import Settings

STREAM, SUBJECT = "RECONCILE", "reconcile.>"


@pytest.fixture
async def js(settings: Settings) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(settings.nats.url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT]))
    try:
        yield js
    finally:
        await nc.close()


async def test_an_old_push_durable_is_updated_in_place(js: JetStreamContext) -> None:
    await js.add_consumer(STREAM, ConsumerConfig(
        durable_name="old", deliver_group="old", deliver_subject="_INBOX.old",
        ack_policy=AckPolicy.EXPLICIT, ack_wait=120.0, max_deliver=-1, filter_subject=SUBJECT))
    for i in range(3):
        await js.publish(f"reconcile.{i}", b"x")
    consumer = bus.Consumer(STREAM, "old", SUBJECT, max_deliver=-1)
    got: list[Msg] = []

    async def on(msg: Msg) -> None:
        got.append(msg)
        await msg.ack()

    sub = await bus.push_subscribe(js, consumer, on)
    info = await js.consumer_info(STREAM, "old")
    assert info.config.ack_wait == pytest.approx(bus.REDELIVERY_S[0])
    assert info.config.backoff == pytest.approx(list(bus.REDELIVERY_S))
    assert info.config.deliver_subject == "_INBOX.old"  # the same consumer, edited
    await sub.unsubscribe()
    # Already right: nothing to change, nothing logged, no error.
    await bus.reconcile_consumer(js, consumer)


async def test_a_durable_the_server_cannot_edit_is_recreated_from_its_ack_floor(
    js: JetStreamContext,
) -> None:
    await js.add_consumer(STREAM, ConsumerConfig(
        durable_name="legacy", ack_policy=AckPolicy.ALL, ack_wait=120.0, filter_subject=SUBJECT))
    for i in range(5):
        await js.publish(f"reconcile.{i}", str(i).encode())
    old = await js.pull_subscribe_bind("legacy", STREAM)
    first = await old.fetch(3, timeout=5)
    await first[-1].ack_sync()  # AckAll: 0, 1 and 2 are done
    await old.unsubscribe()

    consumer = bus.Consumer(STREAM, "legacy", SUBJECT)
    sub = await bus.ensure_consumer(js, consumer)  # ack policy ALL -> EXPLICIT: recreated
    info = await js.consumer_info(STREAM, "legacy")
    assert info.config.ack_policy == AckPolicy.EXPLICIT
    assert info.config.ack_wait == pytest.approx(bus.REDELIVERY_S[0])
    rest = await sub.fetch(10, timeout=5)
    assert [m.data for m in rest] == [b"3", b"4"]  # nothing acknowledged comes back
