"""Task logs in Redis are capped per attempt (HELIOS_LOG_MAX_BYTES); the archive holds
everything; the API says where the cut is; the watcher's memory stays bounded whatever
a task prints (real servers; the RSS test runs the watcher as a child process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from helios import keys, objects, tasklogs
from helios.s3 import open_s3
from helios.settings import Settings
from tests.recovery.conftest import StartMixed
from tests.recovery.procs import archived, eventually
from tests.stack import by_name, doc, running_stack, sh, submit, wait_run

CAP = 64 * 1024
LINES = 20_000  # "line 000001" .. : 12 bytes each with the newline, 240 kB: ~3.7x the cap


async def test_redis_keeps_the_cap_the_archive_keeps_everything(
    settings: Settings, http: aiohttp.ClientSession,
) -> None:
    capped = settings.model_copy(update={"log_max_bytes": CAP})
    async with running_stack(capped) as stack:
        run = await submit(http, stack.api_url, doc("loud", sh(
            "loud", f"seq -f 'line %06g' 1 {LINES}")))
        dag_id = run["dagId"]
        status = await wait_run(http, stack.api_url, dag_id)
        assert by_name(status)["loud"]["state"] == "SUCCEEDED"

        redis = aioredis.Redis.from_url(settings.redis.url, decode_responses=True)
        try:
            stored = [str(x) for x in await redis.lrange(keys.task_logs(dag_id, "loud"), 0, -1)]
        finally:
            await redis.aclose()
        *kept, last = stored
        url = f"s3://{settings.s3.bucket}/{objects.log(dag_id, 'loud', 1)}"
        kept_bytes = sum(tasklogs.line_bytes(line) for line in kept)
        assert CAP - 100 < kept_bytes <= CAP, (kept[:3], kept[-3:], len(kept))
        assert last == f"[HELIOS] log truncated after {kept_bytes} bytes; full log: {url}"

        async with http.get(f"{stack.api_url}/api/v1/dags/{dag_id}/tasks/loud/logs") as resp:
            body: dict[str, Any] = await resp.json()
        assert body["truncated"] is True
        assert body["cuts"] == [{"attempt": 1, "keptBytes": kept_bytes, "fullLog": url}]
        assert body["lines"][-1] == last

        full = (await archived(settings, objects.log(dag_id, "loud", 1))).decode().splitlines()
        numbered = [line for line in full if line.startswith("line ")]
        assert numbered == [f"line {i:06d}" for i in range(1, LINES + 1)]
        assert full[:len(kept)] == kept  # Redis holds the head of the same log


async def test_small_logs_are_not_cut(settings: Settings, http: aiohttp.ClientSession) -> None:
    async with running_stack(settings) as stack:
        run = await submit(http, stack.api_url, doc("quiet", sh("quiet", "echo hello")))
        await wait_run(http, stack.api_url, run["dagId"])
        async with http.get(f"{stack.api_url}/api/v1/dags/{run['dagId']}/tasks/quiet/logs"
                            ) as resp:
            body = await resp.json()
        assert body["lines"] == ["hello"] and body["truncated"] is False and body["cuts"] == []


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_watcher_memory_stays_bounded_while_a_task_prints_100_mb(
    mixed: StartMixed, settings: Settings, http: aiohttp.ClientSession,
) -> None:
    m = await mixed(env={"HELIOS_LOG_MAX_BYTES": str(1024**2)})
    watcher = m.children["watcher"]
    assert watcher.proc is not None
    # Warm up (imports, first attempt, first archive), then take the baseline peak.
    warm = await submit(http, m.api, doc("warm", sh("warm", "echo warm")))
    await wait_run(http, m.api, warm["dagId"])
    before = peak_rss_kb(watcher.proc.pid)

    size = 100 * 1000 * 1000
    line = "x" * 999  # 1000 bytes with the newline: 100,000 lines
    run = await submit(http, m.api, doc("flood", sh(
        "flood", f"yes '{line}' | head -c {size}")))
    status = await wait_run(http, m.api, run["dagId"], timeout_s=300)
    assert by_name(status)["flood"]["state"] == "SUCCEEDED", status
    key = objects.log(run["dagId"], "flood", 1)
    async with open_s3(settings.s3) as s3:
        async def uploaded() -> bool:
            try:
                head = await s3.head_object(Bucket=settings.s3.bucket, Key=key)
            except s3.exceptions.ClientError:
                return False
            return int(head["ContentLength"]) == size

        await eventually(uploaded, 120, every_s=0.5)
    growth_mb = (peak_rss_kb(watcher.proc.pid) - before) / 1024
    print(f"watcher peak RSS grew {growth_mb:.1f} MB while a task printed 100 MB")
    assert growth_mb < 96, growth_mb  # measured: ~50 MB for 100 MB and for 250 MB alike
    # Its spool file is gone once archived.
    assert not list((settings.local.work_dir / ".logs").glob("*.log"))
