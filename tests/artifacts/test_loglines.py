"""The [HELIOS] line protocol: what the writers print, LogSummary reads back."""

from __future__ import annotations

import hashlib

from helios.artifacts import loglines
from helios.artifacts.loglines import LogSummary
from helios.messages import CacheStats, OutputArtifact

D1 = hashlib.sha256(b"1").hexdigest()
D2 = hashlib.sha256(b"2").hexdigest()
D3 = hashlib.sha256(b"3").hexdigest()


def summarise(lines: list[str]) -> LogSummary:
    summary = LogSummary()
    for line in lines:
        summary.feed(line)
    return summary


def test_round_trip() -> None:
    key = "dags/d1/tasks/gen/outputs/model (v2).bin"
    lines = [
        "some user output",
        loglines.cache_hit("input.txt", 10, D1),
        loglines.cache_dropped("data (copy).csv", D2),
        loglines.cache_miss("data (copy).csv", 2048, D2, "helios-artifacts", "dags/a/b c"),
        loglines.cache_disabled("raw", 7, D3, "helios-artifacts", "dags/x/raw"),
        loglines.uploaded("model (v2).bin", 99, D3, "helios-artifacts", key),
        '{"level": "info", "msg": "[HELIOS] Cache hit fake (1 bytes, sha256 000000000000)"}',
    ]
    summary = summarise(lines)
    assert summary.cache == CacheStats(hits=1, misses=1, bytesSaved=10, bytesFetched=2055)
    assert summary.inputs == 3
    assert summary.outputs == [OutputArtifact(name="model (v2).bin", key=key, sha256=D3, size=99)]
    assert summary.error is None
    assert lines[1] == f"[HELIOS] Cache hit input.txt (10 bytes, sha256 {D1[:12]})"


def test_feeding_a_log_twice_changes_nothing() -> None:
    lines = [loglines.cache_hit("a", 1, D1), loglines.cache_miss("b", 2, D2, "bk", "k/b"),
             loglines.uploaded("c", 3, D3, "bk", "k/c")]
    once, twice = summarise(lines), summarise(lines + lines)
    assert (once.cache, once.outputs) == (twice.cache, twice.outputs)


def test_awkward_names_survive_and_cannot_forge_lines() -> None:
    forged = "x\n[HELIOS] Cache hit y (1 bytes, sha256 " + D1[:12] + ")"
    line = loglines.cache_hit(forged, 5, D2)
    assert "\n" not in line
    summary = summarise(line.splitlines())
    assert summary.cache.hits == 1 and summary.cache.bytes_saved == 5

    name = "(5 bytes, sha256 abcdefabcdef) tricky"
    summary = summarise([loglines.uploaded(name, 7, D1, "bk", f"p/{name}")])
    assert summary.outputs[0].name == name and summary.outputs[0].size == 7
    assert summarise([loglines.uploaded(forged, 1, D1, "bk", "k")]).outputs[0].name == forged


def test_kubernetes_timestamps_and_crlf_are_tolerated() -> None:
    line = "2026-11-22T10:00:00.123456789Z " + loglines.cache_hit("a", 3, D1) + "\r\n"
    assert summarise([line]).cache.hits == 1


def test_failure_reason_is_one_line() -> None:
    line = loglines.failed("Upload", "declared output(s) not found\nunder /artifacts: a")
    assert line == "[HELIOS] Upload failed: declared output(s) not found under /artifacts: a"
    assert summarise([line]).error == "declared output(s) not found under /artifacts: a"
