"""The log of one attempt, assembled from its pod's containers, and what it says.

The pod's containers are read one by one (`pods/{name}/log?container=...`): the
downloader, the user's `main`, the uploader. Only the helpers' lines are parsed
(`LogSummary`): the user's container could print a forged `[HELIOS] Uploaded ...` line.
A pod deleted before the watcher could read it (a Job killed at its deadline) leaves the
lines read while it was terminating, or a line saying they are lost. A pod whose user
container never ran gets a line saying so and what it was waiting for, so an empty log
is never mistaken for a command that printed nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helios import tasklogs
from helios.artifacts.loglines import LogSummary
from helios.executors.kubernetes.client import LOG_LIMIT_BYTES, KubeApi
from helios.executors.kubernetes.jobs import CACHE_OWNER, DOWNLOADER, MAIN, UPLOADER
from helios.executors.kubernetes.status import waiting_for

HELPERS = (DOWNLOADER, UPLOADER)
ORDER = (CACHE_OWNER, DOWNLOADER, MAIN, UPLOADER)


@dataclass
class AttemptLogs:
    lines: list[str] = field(default_factory=list)
    summary: LogSummary = field(default_factory=LogSummary)
    complete: bool = True  # every container that ran was read

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


def _started(pod: dict[str, Any]) -> list[str]:
    """Containers of the pod that ran (or run): the others have no log to read."""
    status = pod.get("status") or {}
    names = []
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            state = cs.get("state") or {}
            if cs["name"] == CACHE_OWNER and (state.get("terminated") or {}).get("exitCode") == 0:
                continue  # silent when it works: not worth a request per attempt
            if "running" in state or "terminated" in state:
                names.append(cs["name"])
    return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


async def read_pod(api: KubeApi, pod: dict[str, Any]) -> dict[str, str]:
    """Each started container's log as it is now (None-free: unreadable ones left out)."""
    out: dict[str, str] = {}
    name = pod["metadata"]["name"]
    for container in _started(pod):
        text = await api.read_log(name, container)
        if text is not None:
            out[container] = text
    return out


def assemble(pod: dict[str, Any] | None, read: dict[str, str], snapshot: dict[str, str],
             attempt: int) -> AttemptLogs:
    """The attempt's lines from what was read now, else from an earlier snapshot."""
    logs = AttemptLogs()
    if attempt > 1:
        logs.lines.append(tasklogs.ATTEMPT_BANNER.format(attempt=attempt))
    ran = _started(pod) if pod is not None else []
    names = list(dict.fromkeys([*ran, *sorted(snapshot, key=lambda n: ORDER.index(n)
                                              if n in ORDER else len(ORDER))]))
    for container in names:
        text = read.get(container)
        if text is None or len(snapshot.get(container, "")) > len(text):
            text = snapshot.get(container)  # a killed pod: what was read while it ended
        if text is None:
            logs.complete = False
            logs.lines.append(f"[HELIOS] the log of container {container} is lost: "
                              "its pod was deleted before it could be read")
            continue
        lines = text.splitlines()
        if len(text.encode()) >= LOG_LIMIT_BYTES:
            lines.append(f"[HELIOS] the log of container {container} was cut at "
                         f"{LOG_LIMIT_BYTES // 2**20} MiB")
        logs.lines.extend(lines)
        if container in HELPERS:
            for line in lines:
                logs.summary.feed(line)
    if pod is None and not snapshot:
        logs.complete = False
        logs.lines.append("[HELIOS] no log: the attempt's pod was gone before it could be read")
    elif pod is not None and MAIN not in names:
        logs.lines.append(f"[HELIOS] the command never started: {waiting_for(pod)}")
    return logs
