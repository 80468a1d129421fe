"""forEach, conditions, trigger rules and exit handlers end to end, in one run.

`list-shards` writes a JSON list of five shards and a result; `process` maps over the
list two at a time, and its shard 3 fails on its first attempt; `merge` fans the five
outputs in; `publish` is skipped by its condition (and `announce` after it); `cleanup`
runs after the failure (trigger all_done); the exit handler `report` sees the failure.
`per-env` maps over a list parameter. `POST /retry` then re-runs only `process[3]`, and
the run succeeds, and `audit`'s condition reads the map's result (the instances' results).
The exit handler `notify` maps over two channels, each time the run ends.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from tests.stack import Stack, by_name, follow, sh, submit, task_logs, wait_run

SHARDS = ('import json; json.dump([{"id": i, "rows": 10 * i} for i in range(5)],'
          ' open("/artifacts/shards.json", "w")); json.dump({"count": 5},'
          ' open("/artifacts/.result", "w"))')

DAG: dict[str, Any] = {
    "apiVersion": "v1", "dagName": "dynamic-e2e",
    "tasks": [
        {"name": "list-shards", "image": "python:3.11", "command": ["python3", "-c", SHARDS],
         "outputs": ["shards.json"]},
        # $1 is the shard id, $2 its rows (rendered per instance, passed as argv).
        sh("process", 'test "$1" != 3 || test "$HELIOS_ATTEMPT" -ge 2 || exit 4;'
                      ' sleep 0.3; echo "shard $1 rows $2" > /artifacts/part.txt;'
                      ' echo "{\\"rows\\": $2}" > /artifacts/.result',
           args=["process", "{{ item.id }}", "{{ item.rows }}"],
           forEach={"fromTask": "list-shards", "artifact": "shards.json"}, maxParallel=2,
           outputs=["part.txt"]),
        sh("merge", "cat /artifacts/parts/*/part.txt | sort > /artifacts/all.txt;"
                    " test $(wc -l < /artifacts/all.txt) -eq 5 && cat /artifacts/all.txt",
           inputs=[{"fromTask": "process", "name": "parts"}], outputs=["all.txt"]),
        sh("publish", "echo publishing", depends_on=["merge", "list-shards"],
           when="tasks['list-shards'].result.count > 100"),
        sh("announce", "echo announced", depends_on=["publish"]),
        sh("cleanup", "echo cleaned up", depends_on=["process"], trigger="all_done"),
        # A map's result: its instances' results, in index order.
        sh("audit", "echo audited", depends_on=["process"],
           when="size(tasks.process.result) == 5 && tasks.process.result[4].rows == 40"),
        # A map over a list parameter, gated by a condition on the parameters.
        sh("per-env", 'echo "env $1"', args=["per-env", "{{ item }}"],
           forEach="{{ params.envs }}", when="size(params.envs) == 2 && !params.dry"),
    ],
    "params": [{"name": "envs", "type": "list", "default": ["staging", "prod"]},
               {"name": "dry", "type": "bool", "default": False}],
    "onExit": [
        sh("report", 'echo "run=$1 failed=$2"', args=["report", "{{ run.status }}",
                                                     "{{ run.failedTasks }}"]),
        # An exit handler may map too: one notification per channel.
        sh("notify", 'echo "notify $1 $2"', args=["notify", "{{ item }}", "{{ run.status }}"],
           forEach=["ops", "dev"]),
    ],
}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:  # an end at the same instant as a start sorts first
        running += step
        peak = max(peak, running)
    return peak


async def test_map_fan_in_conditions_cleanup_exit_handler_and_retry(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    api = stack.api_url
    run = await submit(http, api, DAG)
    dag_id = run["dagId"]
    status = await wait_run(http, api, dag_id)
    tasks = by_name(status)
    assert status["status"] == "FAILED", status

    # The map: five instances listed right after their task, one failed.
    names = [t["name"] for t in status["tasks"]]
    at = names.index("process")
    assert names[at + 1:at + 6] == [f"process[{i}]" for i in range(5)]
    assert tasks["process"]["instances"] == 5 and tasks["process"]["state"] == "FAILED"
    assert tasks["process[3]"] | {"mapOf": "process", "index": 3} == tasks["process[3]"]
    assert {tasks[f"process[{i}]"]["state"] for i in (0, 1, 2, 4)} == {"SUCCEEDED"}
    assert tasks["process[3]"]["state"] == "FAILED" and tasks["process[3]"]["exitCode"] == 4
    assert tasks["list-shards"]["result"] == {"count": 5}
    # maxParallel 2: never more than two instances at once.
    spans = [(t["timings"]["startedAt"], t["timings"]["finishedAt"])
             for t in status["tasks"] if t.get("mapOf") == "process" and t["timings"]]
    assert len(spans) == 5 and max_overlap(spans) <= 2

    assert tasks["merge"]["state"] == "UPSTREAM_FAILED"
    assert tasks["cleanup"]["state"] == "SUCCEEDED"  # all_done: after the failure
    assert tasks["audit"]["state"] == "UPSTREAM_FAILED"
    assert tasks["per-env"]["state"] == "SUCCEEDED" and tasks["per-env"]["instances"] == 2
    assert "env prod" in await task_logs(http, api, dag_id, quote("per-env[1]"))
    assert (tasks["publish"]["state"], tasks["publish"]["reason"]) == ("UPSTREAM_FAILED",
                                                                      "UpstreamFailed")
    assert tasks["report"]["onExit"] is True and tasks["report"]["state"] == "SUCCEEDED"
    assert 'run=FAILED failed=["process[3]"]' in await task_logs(http, api, dag_id, "report")
    assert tasks["notify"]["instances"] == 2 and tasks["notify"]["state"] == "SUCCEEDED"
    assert "notify dev FAILED" in await task_logs(http, api, dag_id, quote("notify[1]"))
    instance_logs = await task_logs(http, api, dag_id, quote("process[1]"))
    assert any("Uploaded part.txt" in line or "part.txt" in line for line in instance_logs)

    # A restarted scheduler holds no instance results in memory: `audit` makes it read
    # them back (mapped_results.NeedResults).
    await stack.restart("scheduler")
    # Retry: only the failed instance runs again; the skipped branch and the exit handler
    # follow; the run succeeds.
    async with http.post(f"{api}/api/v1/dags/{dag_id}/retry") as resp:
        assert resp.status == 202
    status = await wait_run(http, api, dag_id)
    tasks = by_name(status)
    assert status["status"] == "SUCCEEDED", status
    assert tasks["process[3]"]["attempts"] == 2
    assert {tasks[f"process[{i}]"]["attempts"] for i in (0, 1, 2, 4)} == {1}
    assert tasks["cleanup"]["attempts"] == 1  # it had run: not a failure to retry
    assert tasks["audit"]["state"] == "SUCCEEDED", tasks["audit"]
    assert tasks["process[4]"]["result"] == {"rows": 40}
    merged = await task_logs(http, api, dag_id, "merge")
    assert [line for line in merged if line.startswith("shard")] == [
        f"shard {i} rows {10 * i}" for i in range(5)]
    assert (tasks["publish"]["state"], tasks["publish"]["reason"]) == ("SKIPPED",
                                                                      "ConditionFalse")
    assert tasks["announce"]["state"] == "SKIPPED"
    assert "run=SUCCEEDED failed=[]" in await task_logs(http, api, dag_id, "report")
    # The mapped exit handler ran again: second attempts, the new status.
    assert [tasks[f"notify[{i}]"]["attempts"] for i in (0, 1)] == [2, 2]
    assert "notify ops SUCCEEDED" in await task_logs(http, api, dag_id, quote("notify[0]"))

    # The feed carried every instance, and the run's two endings.
    events = await follow(http, api, dag_id)
    seen = {e["task"] for e in events if e["type"] == "task"}
    assert {f"process[{i}]" for i in range(5)} <= seen
    assert [e["state"] for e in events if e["type"] == "run"][-1] == "SUCCEEDED"
