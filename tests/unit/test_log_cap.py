"""The log cap and consumer drift, as plain functions."""

from __future__ import annotations

from nats.js.api import AckPolicy

from helios import bus, tasklogs


def test_cap_keeps_whole_lines_up_to_the_cap() -> None:
    lines = ["abc", "défg", "hi"]  # 4, 6 (é is 2 bytes), 3 bytes with newlines
    assert tasklogs.cap_lines(lines, 100) == (lines, None)
    assert tasklogs.cap_lines(lines, 10) == (["abc", "défg"], 10)
    assert tasklogs.cap_lines(lines, 9) == (["abc"], 4)
    assert tasklogs.cap_lines(lines, 3) == ([], 0)


def test_truncation_line_names_the_archive() -> None:
    url = tasklogs.archive_url("b", "d1", "t", 2)
    assert url == "s3://b/dags/d1/tasks/t/logs/2.log"
    cut = tasklogs.LogCut(2, 10, url)
    assert cut.as_json() == {"attempt": 2, "keptBytes": 10, "fullLog": url}


def test_consumer_drift_names_what_differs() -> None:
    consumer = bus.Consumer("S", "c", "s.>", max_deliver=-1)
    want = bus.consumer_config(consumer, durable=True)
    assert want.backoff == list(bus.REDELIVERY_S) and want.ack_wait == bus.REDELIVERY_S[0]
    assert bus.config_drift(want, want) == []
    old = bus.consumer_config(bus.Consumer("S", "c", "s.>", ack_wait_s=120.0, backoff_s=(),
                                           max_deliver=-1), durable=True)
    assert bus.config_drift(old, want) == ["ack_wait", "backoff"]
    other = bus.consumer_config(consumer, durable=True)
    other.ack_policy = AckPolicy.ALL
    assert bus.config_drift(other, want) == ["ack_policy"]
