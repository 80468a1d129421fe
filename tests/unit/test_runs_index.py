"""The runs index's pure parts: cursors, which sets a filter reads, merging, paging, and
the route's query checks (the same rules the OpenAPI document declares)."""

from __future__ import annotations

import re

import pytest
from multidict import MultiDict

from helios import keys
from helios.runs_index import (
    CursorError,
    Position,
    after,
    decode_cursor,
    encode_cursor,
    merge,
    page,
    sources,
    summary,
)
from helios.states import RunState
from services.api.listing import NAME_PATTERN, STATE_PATTERN, parse_query
from services.api.problems import Problem

ID_A = "a" * 32
ID_B = "b" * 32


@pytest.mark.parametrize("score", [1764585297.123456, 1764585297.0, 0.1, 1e16, 0.00001, 1764585297.1234567])
def test_cursor_round_trips_exactly(score: float) -> None:
    pos = Position(score, ID_A)
    raw = encode_cursor(pos)
    assert decode_cursor(raw) == pos
    assert re.fullmatch(r"[0-9._a-f]+", raw)  # URL-safe as is


@pytest.mark.parametrize("raw", [
    "", "x", "garbage_" + ID_A, "1.5_" + "A" * 32, "1.5_" + "a" * 31, "1.5" + ID_A, "-1.5_" + ID_A,
    "1e9_" + ID_A, "nan_" + ID_A, "inf_" + ID_A, "1.5_" + ID_A + "\n", "1" * 18 + "_" + ID_A,
])
def test_bad_cursors_are_refused(raw: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor(raw)


def test_sources_one_set_per_filter_combination() -> None:
    assert sources(None, []) == [keys.RUNS_SUBMITTED]
    assert sources("etl", []) == [keys.runs_by_name("etl")]
    assert sources(None, [RunState.FAILED]) == [keys.runs_by_state("FAILED")]
    assert sources("etl", [RunState.SUCCEEDED, RunState.FAILED, RunState.FAILED]) == [
        keys.runs_by_name_state("etl", "FAILED"), keys.runs_by_name_state("etl", "SUCCEEDED")]


def test_after_is_strict_and_breaks_ties_by_id() -> None:
    entries = [(ID_B, 10.0), (ID_A, 10.0), ("c" * 32, 9.0)]
    assert after(entries, None) == [Position(10.0, ID_B), Position(10.0, ID_A), Position(9.0, "c" * 32)]
    # The cursor is B at 10: A (same instant, smaller id) and C follow it; B itself does not.
    assert after(entries, Position(10.0, ID_B)) == [Position(10.0, ID_A), Position(9.0, "c" * 32)]
    assert after(entries, Position(9.0, "c" * 32)) == []


def test_merge_is_newest_first_without_duplicates() -> None:
    running = [Position(9.0, "9" * 32), Position(5.0, "5" * 32)]
    failed = [Position(8.0, "8" * 32), Position(5.0, "5" * 32), Position(1.0, "1" * 32)]
    assert [p.submitted_at for p in merge([running, failed], 10)] == [9.0, 8.0, 5.0, 1.0]
    assert [p.submitted_at for p in merge([running, failed], 2)] == [9.0, 8.0]
    assert merge([], 3) == []


def test_page_hands_out_a_cursor_only_when_more_follow() -> None:
    positions = [Position(float(s), f"{s:032x}") for s in (5, 4, 3)]
    shown, nxt = page(positions, 2)
    assert shown == positions[:2] and nxt == encode_cursor(positions[1])
    assert page(positions, 3) == (positions, None)
    assert page([], 2) == ([], None)


def test_summary_from_hash_fields() -> None:
    row = summary(ID_A, ["etl", "SUCCEEDED", "100.0", "101.0", "103.5", "false", "4"])
    assert row is not None
    assert row.model_dump(by_alias=True) == {
        "dagId": ID_A, "dagName": "etl", "state": RunState.SUCCEEDED, "submittedAt": 100.0,
        "startedAt": 101.0, "endedAt": 103.5, "durationMs": 2500, "taskCount": 4, "useCache": False}
    running = summary(ID_A, ["etl", "RUNNING", "100.0", None, "", "true", None])
    assert running is not None and running.duration_ms is None and running.task_count is None
    assert summary(ID_A, [None] * 7) is None  # deleted after the index was read


def test_query_defaults_and_values() -> None:
    q = parse_query(MultiDict())
    assert (q.name, q.states, q.limit, q.cursor) == (None, frozenset(), 50, None)
    q = parse_query(MultiDict([("name", "etl"), ("state", "FAILED,CANCELLED"), ("state", "RUNNING"),
                               ("limit", "200"), ("cursor", encode_cursor(Position(3.5, ID_A)))]))
    assert q.name == "etl" and q.limit == 200 and q.cursor == Position(3.5, ID_A)
    assert q.states == {RunState.FAILED, RunState.CANCELLED, RunState.RUNNING}
    # An empty value is a form's "all": no filter.
    q = parse_query(MultiDict([("name", ""), ("state", ""), ("cursor", "")]))
    assert (q.name, q.states, q.cursor) == (None, frozenset(), None)


@pytest.mark.parametrize("query", [
    [("limit", "0")], [("limit", "201")], [("limit", "ten")], [("limit", "+5")], [("limit", "")],
    [("limit", "5"), ("limit", "6")], [("state", "running")], [("state", "DONE")],
    [("state", "RUNNING,")], [("state", "RUNNING, FAILED")], [("name", "Not_A_Label")],
    [("name", "a" * 64)], [("name", "a"), ("name", "b")], [("cursor", "nope")],
])
def test_bad_queries_are_400(query: list[tuple[str, str]]) -> None:
    with pytest.raises(Problem) as caught:
        parse_query(MultiDict(query))
    assert caught.value.status == 400


def test_patterns_match_what_the_parser_accepts() -> None:
    assert re.fullmatch(STATE_PATTERN, "RUNNING,SUCCEEDED") and re.fullmatch(STATE_PATTERN, "")
    assert not re.fullmatch(STATE_PATTERN, "RUNNING,,FAILED")
    assert re.fullmatch(NAME_PATTERN, "") and re.fullmatch(NAME_PATTERN, "cache-test")
    assert not re.fullmatch(NAME_PATTERN, "-x")
