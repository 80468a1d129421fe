"""How soon the scheduler sees a message again: redelivery delays as data."""

from __future__ import annotations

from nats.aio.msg import Msg

# A report ahead of the record is deferred on its first deliveries (0.5 + 1 + 2 + 4 s of
# waiting for the record to catch up) and adopted on this one.
DEFER_DELIVERIES = 5


def deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message (tests): first delivery
        return 1


def defer_delay(msg: Msg) -> float:
    """Between deferrals: 0.5 s doubling per delivery, capped at 8 s."""
    return min(8.0, 0.5 * 2 ** min(deliveries(msg) - 1, 4))


def error_backoff(msg: Msg) -> float:
    """0.5 s doubling per delivery, capped at 30 s: patient through an outage."""
    return min(30.0, 0.5 * 2 ** min(msg.metadata.num_delivered - 1, 6))
