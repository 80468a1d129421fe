"""Retention's decisions and the run-record reader's decoding, as pure functions."""

from __future__ import annotations

import orjson
import pytest

from helios import keys
from helios.runs_view import RecordError, RunRecord, decode_detail, decode_run, encode_detail
from helios.states import RunState
from services.scheduler.retention import (
    DAY_S,
    batches,
    cutoff,
    expired,
    memo_kept,
    objects_to_delete,
)

NOW = 1_800_000_000.0


def run(state: RunState, ended_days_ago: float | None) -> RunRecord:
    ended = None if ended_days_ago is None else NOW - ended_days_ago * DAY_S
    return RunRecord(dag_id="r", state=state, started_at=NOW - 400 * DAY_S, ended_at=ended)


@pytest.mark.parametrize(("record", "gone"), [
    (run(RunState.SUCCEEDED, 31), True),
    (run(RunState.FAILED, 30), True),  # exactly at the cutoff
    (run(RunState.CANCELLED, 29.9), False),  # recent
    (run(RunState.RUNNING, None), False),  # in flight, however old its start
    (run(RunState.RUNNING, 100), False),  # retried: RUNNING again, endedAt of before
    (run(RunState.SUCCEEDED, None), False),  # no end recorded: never guess
    (None, True),  # the record is gone: only leftovers remain
])
def test_only_runs_ended_before_the_cutoff_expire(record: RunRecord | None, gone: bool) -> None:
    assert expired(record, NOW, 30) is gone
    assert cutoff(NOW, 30) == NOW - 30 * DAY_S


def memo_entry(dag_id: str, *keys_: str) -> str:
    return orjson.dumps({"dagId": dag_id, "attempt": 1, "outputs": [
        {"name": k.rsplit("/", 1)[-1], "key": k, "sha256": "0" * 64, "size": 1} for k in keys_
    ]}).decode()


def test_live_memo_entries_keep_their_objects_until_they_expire() -> None:
    mine = "dags/r/tasks/gen/outputs/a.txt"
    entries = [
        (memo_entry("r", mine), 5_000),            # live for 5 s more
        (memo_entry("other", "dags/other/x"), 60_000),  # taken over by a newer run
        (None, -2),                                # expired meanwhile
        (memo_entry("r", "dags/r/tasks/b/outputs/b"), -2),  # gone between GET and PTTL
    ]
    keep, until = memo_kept("r", entries, NOW)
    assert keep == {mine} and until == NOW + 5
    assert memo_kept("r", [(None, -2)], NOW) == (set(), None)
    listed = [mine, "dags/r/tasks/use/outputs/o.txt", "dags/r/tasks/use/logs/1.log"]
    assert objects_to_delete(listed, keep) == ["dags/r/tasks/use/logs/1.log",
                                               "dags/r/tasks/use/outputs/o.txt"]


def test_deletes_go_in_bounded_batches() -> None:
    items = [str(i) for i in range(2501)]
    chunks = batches(items, 1000)
    assert [len(c) for c in chunks] == [1000, 1000, 501]
    assert [k for c in chunks for k in c] == items


def test_run_keys_cover_every_per_run_key_family() -> None:
    listed = set(keys.run_keys("r", {"a": 2}))
    assert {keys.definition("r"), keys.use_cache("r"), keys.run("r"), keys.outbox("r"),
            keys.metrics("r"), keys.metrics_state("r"), keys.task_logs("r", "a"),
            keys.task_detail("r", "a"), keys.task_outputs("r", "a"),
            keys.attempt_claim("r", "a", 2), keys.attempt_watch("r", "a", 3)} <= listed
    assert keys.memo_refs("r") not in listed  # lives as long as the objects it guards
    assert all(k.startswith("dag:r:") for k in listed)


def test_detail_round_trips_and_a_bad_value_is_an_error() -> None:
    raw = encode_detail({"node": "local", "exitCode": 3, "memoized": True,
                         "timings": {"startedAt": 1.5}, "cache": {"hits": 2},
                         "memoKey": "abc", "state": "FAILED"})
    detail = decode_detail("k", raw)
    assert detail.node == "local" and detail.exit_code == 3 and detail.memoized
    assert detail.timings is not None and detail.timings.started_at == 1.5
    assert detail.cache is not None and detail.cache.hits == 2
    with pytest.raises(RecordError, match="k"):
        decode_detail("k", {"node": "not json"})
    with pytest.raises(RecordError):
        decode_detail("k", {"exitCode": '"three"'})


def test_run_hash_decodes_with_defaults_and_rejects_garbage() -> None:
    record = decode_run("r", {"dagName": "n", "state": "FAILED", "useCache": "false",
                              "startedAt": "10.0", "endedAt": "12.5", "generation": "2"}, {})
    assert record.state is RunState.FAILED and not record.use_cache
    assert record.generation == 2 and record.duration_ms == 2500
    running = decode_run("r", {"dagName": "n", "endedAt": ""}, {})
    assert running.state is RunState.RUNNING and running.ended_at is None
    with pytest.raises(RecordError):
        decode_run("r", {"state": "HALF-DONE"}, {})
