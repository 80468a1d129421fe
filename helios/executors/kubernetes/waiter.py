"""The task pod's "wait" container: upload the outputs once the user's command succeeded.

`python -m helios.executors.kubernetes.waiter` waits for the exit status that the
wrapper script of `jobs.py` writes to `HELIOS_EXIT_CODE_FILE`, then:

- status 0: runs the uploader (`helios.uploader`'s entry point, imported while the
  user's command still runs, so the upload starts without an interpreter's start-up);
  its output and exit code are this container's;
- any other status: exits 0 without uploading: the user container's own exit code is
  what the task reports, and a second failing container would only blur it.

It never waits for a status that cannot come: when the user container dies without
writing it, the watcher fails the attempt from the container status and deletes the Job.
"""

from __future__ import annotations

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


def main() -> int:
    path = Path(os.environ.get("HELIOS_EXIT_CODE_FILE", "/var/run/helios/exitcode"))
    from helios.artifacts.cli import uploader_main  # the slow imports, done while waiting

    status = wait_status(path)
    if status != 0:
        print(f"[HELIOS] command exited with status {status}; outputs not uploaded", flush=True)
        return 0
    return uploader_main()


if __name__ == "__main__":
    raise SystemExit(main())
