"""The task pod's "wait" container: upload the outputs once the user's command succeeded.

`python -m helios.executors.kubernetes.waiter` waits for the exit status that the
wrapper script of `jobs.py` writes to `HELIOS_EXIT_CODE_FILE`, then:

- status 0: when HELIOS_RESULT_OBJECT is set (a `when` reads the task's result), puts
  `/artifacts/.result`, validated as `helios.results` reads it locally, in that object
  (none when the task wrote none; `[HELIOS] InvalidResult: ...` and exit 1 when it is not
  a small JSON file); then runs the uploader when there are outputs (`helios.uploader`'s
  entry point, imported while the user's command still runs, so the upload starts
  without an interpreter's start-up); its output and exit code are this container's;
- any other status: exits 0 without uploading: the user container's own exit code is
  what the task reports, and a second failing container would only blur it.

It never waits for a status that cannot come: when the user container dies without
writing it, the watcher fails the attempt from the container status and deletes the Job.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

# Then every 0.05 s: the upload starts within 50 ms of the command's exit (it is on the
# task's critical path), and a stat of a local file 20 times a second costs nothing.
POLL_S = (0.01, 0.02, 0.05)


def read_status(path: Path) -> int | None:
    """The recorded status, or None while absent or half-written (no trailing newline)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    if not text.endswith("\n"):
        return None
    try:
        return int(text.strip())
    except ValueError:
        return 125  # garbage where a number should be: treat as a failed command


def wait_status(path: Path) -> int:
    step = 0
    while (status := read_status(path)) is None:
        time.sleep(POLL_S[min(step, len(POLL_S) - 1)])
        step += 1
    return status


def collect_result(key: str) -> int:
    """Put the task's `.result` (re-encoded, so at most 64 KiB of valid JSON) at `key`."""
    import orjson

    from helios.results import INVALID_RESULT, ResultError, read_result
    from helios.s3 import open_s3
    from helios.settings import S3Settings

    try:
        value = read_result(Path(os.environ.get("HELIOS_ARTIFACTS_DIR", "/artifacts")))
    except ResultError as exc:
        print(f"[HELIOS] {INVALID_RESULT}: {exc}", flush=True)
        return 1
    if value is None:
        return 0  # no object: the watcher reports no result, as the local executor does

    async def put() -> None:
        s3 = S3Settings()  # type: ignore[call-arg]  # fields come from HELIOS_S3_*
        async with open_s3(s3) as client:
            await client.put_object(Bucket=s3.bucket, Key=key, Body=orjson.dumps(value),
                                    ContentType="application/json")

    try:
        asyncio.run(put())
    except Exception as exc:
        print(f"[HELIOS] Result upload failed: {str(exc)[:500]}", flush=True)
        return 1
    return 0


def main() -> int:
    path = Path(os.environ.get("HELIOS_EXIT_CODE_FILE", "/var/run/helios/exitcode"))
    from helios.artifacts.cli import uploader_main  # the slow imports, done while waiting

    status = wait_status(path)
    if status != 0:
        print(f"[HELIOS] command exited with status {status}; outputs not uploaded", flush=True)
        return 0
    key = os.environ.get("HELIOS_RESULT_OBJECT")
    if key and (code := collect_result(key)) != 0:
        return code
    if not json.loads(os.environ.get("HELIOS_OUTPUTS") or "[]"):
        return 0  # wrapped for the result alone
    return uploader_main()


if __name__ == "__main__":
    raise SystemExit(main())
