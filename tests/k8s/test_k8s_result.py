"""A task's `/artifacts/.result` on Kubernetes: collected only for tasks a `when` reads
(pure checks of the rule and the Job), then end to end on the stand-in: the wait
container puts the result in S3, the watcher reports it, and `when` conditions on it
run one task and skip another; an invalid result fails its attempt."""

from __future__ import annotations

from typing import Any

import aiohttp

from helios import objects
from helios.dag.model import Dag
from helios.dag.result_readers import base_name, result_readers
from helios.executors.kubernetes import jobs
from helios.executors.kubernetes.labels import A_RESULT
from helios.settings import Settings
from tests.stack import by_name, doc, running_stack, sh, submit, wait_run

from .helpers import dispatch


def test_result_readers_are_the_tasks_a_result_condition_names() -> None:
    dag = Dag.model_validate(doc(
        "d", sh("a", "true"), sh("b", "true"), sh("c", "true"),
        sh("gate", "true", depends_on=["a", "b"],
           when="tasks.a.result.ok && tasks.b.state == 'SUCCEEDED'"),
        sh("other", "true", depends_on=["c"], when="tasks.c.exitCode == 0"),
    ))
    assert result_readers(dag) == {"a", "b"}  # a superset is harmless (b costs a sidecar)
    assert base_name("a[3]") == "a" and base_name("a") == "a"


def test_a_read_result_gets_the_wait_container_and_an_object() -> None:
    plain = jobs.build_job(dispatch({"name": "t", "command": ["x"]}), Settings())
    assert [c["name"] for c in plain["spec"]["template"]["spec"]["containers"]] == ["main"]
    assert A_RESULT not in plain["metadata"]["annotations"]

    d = dispatch({"name": "t", "command": ["x"]}).model_copy(update={"want_result": True})
    job = jobs.build_job(d, Settings())
    pod = job["spec"]["template"]["spec"]
    main, wait = pod["containers"]
    assert main["command"][:2] == ["/bin/sh", "-c"]  # the wrapper records the exit status
    key = objects.result("run-1", "t", 1)
    assert key == "dags/run-1/tasks/t/attempts/1/result.json"
    assert {"name": "HELIOS_RESULT_OBJECT", "value": key} in wait["env"]
    assert job["metadata"]["annotations"][A_RESULT] == key


def gate(name: str, when: str) -> dict[str, Any]:
    return sh(name, "echo ran", depends_on=["score"], when=when)


async def test_when_reads_a_result_written_on_kubernetes(
    k8s: Settings, http: aiohttp.ClientSession,
) -> None:
    dag = doc(
        "k8s-result",
        sh("score", """printf '{"score": 0.9, "label": "ok"}' > /artifacts/.result"""),
        gate("publish", "tasks.score.result.score > 0.5 && tasks.score.result.label == 'ok'"),
        gate("hold", "tasks.score.result.score > 0.95"),
        sh("broken", "printf 'not json' > /artifacts/.result"),
        sh("after", "echo never", depends_on=["broken"], when="tasks.broken.result == 1"),
    )
    async with running_stack(k8s, only=("scheduler", "watcher", "api")) as stack:
        run = await submit(http, stack.api_url, dag)
        status = await wait_run(http, stack.api_url, run["dagId"], timeout_s=90)
    tasks = by_name(status)
    assert tasks["score"]["state"] == "SUCCEEDED", tasks["score"]
    assert tasks["publish"]["state"] == "SUCCEEDED", tasks["publish"]
    assert tasks["hold"]["state"] == "SKIPPED", tasks["hold"]
    assert (tasks["broken"]["state"], tasks["broken"]["reason"]) == ("FAILED", "InvalidResult"), \
        tasks["broken"]
    assert "not JSON" in tasks["broken"]["message"]
    assert tasks["after"]["state"] in ("UPSTREAM_FAILED", "SKIPPED"), tasks["after"]
