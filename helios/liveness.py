"""Liveness that tells the truth: a service whose durable consumer is gone is not alive.

A push or pull subscription on a JetStream consumer that the server no longer has (its
store was lost, or someone deleted it) receives nothing, forever, while the process
looks healthy. The watchdog asks the server about each consumer the service depends on;
when one stays missing it marks the service not live and stops it with a failure, so
the supervisor (`helios dev`, or Kubernetes through `/healthz`) restarts it and the
start-up path creates the consumer again. A server that cannot be reached is not a
missing consumer: NATS outages are ridden out by the client's reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from helios.health import Health
from helios.runtime import StopEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerRef:
    stream: str
    durable: str


def verdict(missing_streak: int, misses_allowed: int) -> bool:
    """Whether a consumer missing for `missing_streak` checks in a row means death.

    One miss is tolerated: a stream being re-created at start-up by another replica
    briefly has no consumers."""
    return missing_streak > misses_allowed


async def watch_consumers(
    js: JetStreamContext,
    consumers: Sequence[ConsumerRef],
    health: Health,
    stop: StopEvent,
    *,
    interval_s: float = 5.0,
    misses_allowed: int = 1,
    timeout_s: float = 2.0,
    rounds: int | None = None,
) -> None:
    """Run until `stop` (or for `rounds` checks: the finite mode tests use); fail the
    service when a consumer stays missing."""
    streaks = {c: 0 for c in consumers}
    done = 0
    while not stop.is_set() and (rounds is None or done < rounds):
        done += 1
        for ref in consumers:
            try:
                await asyncio.wait_for(js.consumer_info(ref.stream, ref.durable), timeout_s)
            except NotFoundError:
                streaks[ref] += 1
            except Exception:  # unreachable or slow server: not a verdict on the consumer
                continue
            else:
                streaks[ref] = 0
            if verdict(streaks[ref], misses_allowed):
                reason = f"consumer {ref.durable} on stream {ref.stream} is gone"
                health.dead = reason
                log.error("%s; stopping so that a restart creates it again", reason)
                stop.fail(reason)
                return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
