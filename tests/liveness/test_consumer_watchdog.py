"""A service whose durable consumer vanished must stop being live (real NATS)."""

from __future__ import annotations

import asyncio

import nats

from helios import bus
from helios.health import Health
from helios.liveness import ConsumerRef, verdict, watch_consumers
from helios.runtime import StopEvent
from helios.settings import Settings
from helios.subjects import Streams


def test_one_miss_is_tolerated() -> None:
    assert not verdict(1, misses_allowed=1)
    assert verdict(2, misses_allowed=1)


async def test_watchdog_fails_the_service_when_its_consumer_is_deleted(settings: Settings) -> None:
    nc = await nats.connect(settings.nats.url)
    try:
        js = nc.jetstream()
        streams = Streams()
        await bus.ensure_streams(js, streams)
        consumer = bus.Consumer(streams.runs, "liveness-probe", "helios.run.*.>")
        await bus.ensure_consumer(js, consumer)
        health, stop = Health("probe"), StopEvent()
        probe = [ConsumerRef(streams.runs, "liveness-probe")]
        # Alive while the consumer exists: several checks pass without a verdict.
        await asyncio.wait_for(watch_consumers(js, probe, health, stop, interval_s=0.01,
                                               rounds=5), 30)
        assert not stop.is_set() and health.dead is None
        watchdog = asyncio.create_task(watch_consumers(
            js, probe, health, stop, interval_s=0.05, misses_allowed=1))
        await js.delete_consumer(streams.runs, "liveness-probe")
        await asyncio.wait_for(stop.wait(), 30)
        await asyncio.wait_for(watchdog, 30)
        assert stop.failure is not None and "liveness-probe" in stop.failure
        assert health.dead is not None
    finally:
        await nc.close()


async def test_unreachable_server_is_not_a_verdict(settings: Settings) -> None:
    nc = await nats.connect(settings.nats.url)
    js = nc.jetstream()
    await nc.close()  # every call now fails with a connection error, not NotFound
    health, stop = Health("probe"), StopEvent()
    await asyncio.wait_for(watch_consumers(
        js, [ConsumerRef("nope", "nope")], health, stop, interval_s=0.01, timeout_s=0.2,
        rounds=5), 30)
    assert not stop.is_set() and health.dead is None
