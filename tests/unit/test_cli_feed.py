"""The CLI's SSE parsing and reconnection pacing (pure parts of `helios.cli.feed`)."""

from __future__ import annotations

import aiohttp

from helios.cli.feed import BACKOFF_S, FeedEvent, SseParser, backoff_s, why


def parse(text: str) -> list[FeedEvent]:
    parser = SseParser()
    return [e for line in text.splitlines(keepends=True) if (e := parser.line(line))]


def test_events_carry_their_ids_and_skip_preamble_and_heartbeats() -> None:
    events = parse('retry: 2000\n\n: keepalive\n\nid: 7\nevent: task\ndata: {"type": "task", '
                   '"state": "RUNNING"}\n\nid: 9\nevent: run\ndata: {"type": "run", "state": "FAILED"}\n\n')
    assert [e.id for e in events] == [7, 9]
    assert not events[0].terminal and events[1].terminal


def test_multi_line_data_is_joined_and_crlf_accepted() -> None:
    (event,) = parse('id: 3\r\ndata: {"type": "run",\r\ndata:  "state": "RUNNING"}\r\n\r\n')
    assert event == FeedEvent(3, {"type": "run", "state": "RUNNING"})
    assert not event.terminal


def test_backoff_grows_then_stays_at_its_cap() -> None:
    pauses = [backoff_s(n) for n in range(1, 12)]
    assert pauses == sorted(pauses) and pauses[0] == BACKOFF_S[0] and pauses[-1] == BACKOFF_S[-1]
    assert backoff_s(0) == BACKOFF_S[0]


def test_notes_name_the_trouble_in_a_few_words() -> None:
    assert why(aiohttp.ServerDisconnectedError()) == "the connection dropped"
    assert why(TimeoutError()).startswith("no data for")
