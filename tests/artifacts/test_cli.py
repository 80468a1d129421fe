"""`python -m helios.downloader` / `helios.uploader` as real processes, as in a Job."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from helios.artifacts.loglines import LogSummary
from helios.settings import Settings

from .support import publish, random_bytes, s3_env


async def run(module: str, env: dict[str, str]) -> tuple[int, list[str], list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines(), err.decode().splitlines()


async def test_two_init_containers_on_one_node_download_once(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    data = random_bytes(8 * 1024 * 1024)
    inputs = await publish(s3, settings, tmp_path, {"input.bin": data})
    env = {
        **s3_env(settings),
        "HELIOS_INPUT_ARTIFACTS": json.dumps([i.model_dump(by_alias=True) for i in inputs]),
        "HELIOS_CACHE_ENABLED": "true",
        "HELIOS_CACHE_DIR": str(tmp_path / "node-cache"),  # the shared hostPath
        "HELIOS_CACHE_MAX_BYTES": str(10**9),
    }
    results = await asyncio.gather(*(
        run("helios.downloader", {**env, "HELIOS_ARTIFACTS_DIR": str(tmp_path / f"pod{i}")})
        for i in range(2)
    ))
    summaries = []
    for code, out, err in results:
        assert code == 0, err
        summary = LogSummary()
        for line in out:
            summary.feed(line)
        summaries.append(summary.cache)
    assert sum(s.misses for s in summaries) == 1
    assert sum(s.hits for s in summaries) == 1
    assert sum(s.bytes_fetched for s in summaries) == len(data)
    for i in range(2):
        assert (tmp_path / f"pod{i}" / "input.bin").read_bytes() == data


async def test_helpers_report_success_and_failure_in_one_line(
    s3: Any, settings: Settings, tmp_path: Path
) -> None:
    [item] = await publish(s3, settings, tmp_path, {"input.txt": b"test data\n"})
    forged = item.model_copy(update={"sha256": "f" * 64})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "output.txt").write_bytes(b"result\n")
    base = {**s3_env(settings), "HELIOS_ARTIFACTS_DIR": str(tmp_path / "out"),
            "HELIOS_DAG_ID": "run-cli", "HELIOS_TASK": "gen"}
    upload_ok, upload_missing, download_bad, bad_config = await asyncio.gather(
        run("helios.uploader", {**base, "HELIOS_OUTPUTS": '["output.txt"]'}),
        run("helios.uploader", {**base, "HELIOS_OUTPUTS": '["output.txt", "a.txt"]'}),
        run("helios.downloader", {
            **base, "HELIOS_CACHE_ENABLED": "false",
            "HELIOS_INPUT_ARTIFACTS": json.dumps([forged.model_dump(by_alias=True)]),
        }),
        run("helios.downloader", {**base, "HELIOS_INPUT_ARTIFACTS": '[{"name": 1}]'}),
    )

    code, out, _ = upload_ok
    summary = LogSummary()
    for line in out:
        summary.feed(line)
    assert code == 0
    assert [(o.name, o.key, o.size) for o in summary.outputs] == [
        ("output.txt", "dags/run-cli/tasks/gen/outputs/output.txt", 7)
    ]

    code, out, err = upload_missing
    assert (code, out) == (1, [])
    assert err[-1] == (
        "[HELIOS] Upload failed: declared output(s) not found under /artifacts: a.txt"
    )

    code, out, err = download_bad
    assert code == 1 and out == []
    assert err[-1].startswith("[HELIOS] Download failed: input input.txt ")
    assert "does not match its recorded digest" in err[-1]
    assert not (tmp_path / "out" / "input.txt").exists()

    code, _, err = bad_config
    assert code == 2
    assert err[-1].startswith("[HELIOS] Download failed: invalid configuration: 0.name:")
