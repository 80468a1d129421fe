"""The Job manifest of one attempt, checked field by field (pure: no cluster)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helios.executors.kubernetes import jobs, waiter
from helios.executors.kubernetes.labels import label_value
from helios.messages import InputArtifact
from helios.settings import CacheSettings, KubernetesSettings, S3Settings, Settings

from .helpers import dispatch

SETTINGS = Settings(
    k8s=KubernetesSettings(namespace="tasks", task_image="reg.example/helios:1.2",
                           node_cache_dir="/srv/helios-cache", ttl_seconds_after_finished=600),
    s3=S3Settings(endpoint_url="http://minio:9000", bucket="arts"),
    cache=CacheSettings(max_bytes=12345),
)
INPUT = InputArtifact(name="input.txt", from_task="gen", artifact="output.txt",
                      key="dags/run-1/tasks/gen/outputs/output.txt", sha256="ab" * 32, size=10)
USER_SECURITY = {
    "privileged": False, "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}
HELPER_SECURITY = {
    "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}


def build(task: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    task = task or {"name": "process-data", "command": ["/bin/bash", "-c", "cat x"]}
    return jobs.build_job(dispatch(task, **kw), SETTINGS)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def containers(job: dict[str, Any], key: str = "containers") -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in job["spec"]["template"]["spec"][key]}


def test_identity_labels_and_job_spec() -> None:
    job = build(dag_id="run-1", attempt=2, dag_name="cache-test")
    meta, spec = job["metadata"], job["spec"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert meta["name"] == dispatch({"name": "process-data", "command": ["x"]},
                                    attempt=2).job_name
    assert meta["namespace"] == "tasks"
    assert meta["labels"] == {"app": "helios-task", "helios.dev/run-id": "run-1",
                              "helios.dev/dag-name": "cache-test",
                              "helios.dev/task": "process-data", "helios.dev/attempt": "2"}
    assert meta["annotations"]["helios.dev/dag-id"] == "run-1"
    assert spec["backoffLimit"] == 0
    assert spec["completions"] == spec["parallelism"] == 1
    assert spec["ttlSecondsAfterFinished"] == 600
    assert "activeDeadlineSeconds" not in spec
    template = spec["template"]
    assert template["metadata"]["labels"] == {**meta["labels"], "helios.dev/job": meta["name"]}
    pod = template["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] == 3  # HELIOS_K8S_CANCEL_GRACE_S
    assert pod["serviceAccountName"] == "helios-task"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["shareProcessNamespace"] is False
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_label_values_that_are_not_valid_labels_become_digests() -> None:
    long_id = "x" * 80
    job = build(dag_id=long_id)
    value = job["metadata"]["labels"]["helios.dev/run-id"]
    assert value == label_value(long_id) and len(value) <= 63 and value != long_id
    assert job["metadata"]["annotations"]["helios.dev/dag-id"] == long_id


def test_timeout_times_the_command_and_the_deadline_is_a_backstop() -> None:
    job = build({"name": "t", "command": ["sleep", "9"], "timeoutSeconds": 30})
    # The watcher reads the command's bound from the Job and times it from its start.
    assert job["metadata"]["annotations"]["helios.dev/timeout-seconds"] == "30"
    k8s = SETTINGS.k8s
    assert (k8s.start_timeout_s, k8s.pending_timeout_s, k8s.image_pull_timeout_s) == (
        600, 300, 120)
    # Above the longest start bound plus the command's time plus the kill's grace.
    assert job["spec"]["activeDeadlineSeconds"] == 600 + 30 + 3 + 60


def test_task_without_inputs_or_outputs_is_one_plain_container() -> None:
    # Nothing of Helios's runs before or after the command: no init container, no
    # wrapper, no uploader, one emptyDir (issue 9's overhead next to a bare Job).
    job = build()
    pod = job["spec"]["template"]["spec"]
    assert pod["initContainers"] == []
    [main] = pod["containers"]
    assert main["name"] == "main" and main["image"] == "ubuntu:latest"
    assert main["command"] == ["/bin/bash", "-c", "cat x"]  # not wrapped: no upload
    assert [v["name"] for v in pod["volumes"]] == ["artifacts"]
    assert main["volumeMounts"] == [{"name": "artifacts", "mountPath": "/artifacts"}]
    assert "imagePullPolicy" not in main  # Kubernetes' own rule when nothing is set


def test_image_pull_policy_from_the_task_else_the_cluster_default() -> None:
    def policy(task_policy: str | None, default: str | None) -> str | None:
        k8s = SETTINGS.k8s.model_copy(update={"image_pull_policy": default})
        task = {"name": "t", "command": ["x"], "outputs": ["o"],
                **({"imagePullPolicy": task_policy} if task_policy else {})}
        job = jobs.build_job(dispatch(task), SETTINGS.model_copy(update={"k8s": k8s}))
        found = containers(job)
        assert found["uploader"]["imagePullPolicy"] == "IfNotPresent"  # Helios's own image
        return found["main"].get("imagePullPolicy")
    assert policy("Never", None) == "Never"
    assert policy(None, "IfNotPresent") == "IfNotPresent"
    assert policy("Always", "Never") == "Always"
    assert policy(None, None) is None


def test_downloader_is_the_only_writer_of_the_node_cache() -> None:
    job = build(inputs=[INPUT])
    pod = job["spec"]["template"]["spec"]
    inits = containers(job, "initContainers")
    assert list(inits) == ["cache-owner", "downloader"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["helios-cache"]["hostPath"] == {"path": "/srv/helios-cache",
                                                   "type": "DirectoryOrCreate"}
    assert volumes["artifacts"] == {"name": "artifacts", "emptyDir": {}}

    down = inits["downloader"]
    assert down["image"] == "reg.example/helios:1.2"
    assert down["command"] == ["python", "-m", "helios.downloader"]
    assert down["securityContext"] == HELPER_SECURITY
    assert {m["mountPath"]: m.get("readOnly", False) for m in down["volumeMounts"]} == {
        "/artifacts": False, "/var/helios/cache": False, "/tmp": False}
    env = env_of(down)
    assert json.loads(env["HELIOS_INPUT_ARTIFACTS"].replace("$$", "$")) == [
        INPUT.model_dump(by_alias=True)]
    assert env["HELIOS_CACHE_ENABLED"] == "true"
    assert env["HELIOS_CACHE_DIR"] == "/var/helios/cache"
    assert env["HELIOS_CACHE_MAX_BYTES"] == "12345"
    assert env["HELIOS_ARTIFACTS_DIR"] == "/artifacts"
    assert env["HELIOS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["HELIOS_S3_BUCKET"] == "arts"
    for key in ("HELIOS_S3_ACCESS_KEY_ID", "HELIOS_S3_SECRET_ACCESS_KEY"):
        assert env[key] == {"secretKeyRef": {"name": "helios-s3", "key": key,
                                             "optional": True}}

    owner = inits["cache-owner"]
    assert owner["command"] == ["chown", "10001:10001", "/var/helios/cache"]
    assert owner["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert owner["securityContext"]["allowPrivilegeEscalation"] is False
    assert owner["volumeMounts"] == [{"name": "helios-cache", "mountPath": "/var/helios/cache"}]

    main = containers(job)["main"]
    assert all(m["name"] != "helios-cache" for m in main["volumeMounts"])
    assert not any("HELIOS_S3" in e["name"] for e in main["env"])  # no credentials


def test_cache_disabled_means_no_cache_volume_at_all() -> None:
    job = build(inputs=[INPUT], use_cache=False)
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["downloader"]
    assert all("hostPath" not in v for v in pod["volumes"])
    down = pod["initContainers"][0]
    assert env_of(down)["HELIOS_CACHE_ENABLED"] == "false"
    assert all(m["name"] != "helios-cache" for m in down["volumeMounts"])


def test_outputs_wrap_the_command_and_add_the_uploader() -> None:
    task = {"name": "gen", "outputs": ["output.txt"],
            "command": ["/bin/bash", "-c", "echo $HOME $(id) > /artifacts/output.txt"],
            "args": ["a b", "$(NOT_EXPANDED)"]}
    job = build(task, dag_id="run-1")
    main, up = containers(job)["main"], containers(job)["uploader"]
    assert main["command"][:2] == ["/bin/sh", "-c"]
    assert main["command"][2] == jobs.literal(jobs.WRAPPER)
    # The user's strings are positional parameters, `$` escaped for Kubernetes only.
    assert main["command"][3:] == ["helios-task", "/bin/bash", "-c",
                                   "echo $$HOME $$(id) > /artifacts/output.txt"]
    assert main["args"] == ["a b", "$$(NOT_EXPANDED)"]
    assert {"name": "helios-run", "mountPath": "/var/run/helios"} in main["volumeMounts"]
    assert up["command"] == ["python", "-m", "helios.executors.kubernetes.waiter"]
    assert up["securityContext"] == HELPER_SECURITY
    assert {m["mountPath"]: m.get("readOnly", False) for m in up["volumeMounts"]} == {
        "/artifacts": True, "/var/run/helios": True, "/tmp": False}
    env = env_of(up)
    assert json.loads(env["HELIOS_OUTPUTS"]) == ["output.txt"]
    assert (env["HELIOS_DAG_ID"], env["HELIOS_TASK"]) == ("run-1", "gen")
    assert env["HELIOS_EXIT_CODE_FILE"] == "/var/run/helios/exitcode"
    assert json.loads(job["metadata"]["annotations"]["helios.dev/outputs"]) == ["output.txt"]


def test_user_container_fields() -> None:
    task = {"name": "train", "image": "pytorch/pytorch:2", "command": ["python", "t.py"],
            "args": ["--epochs", "3"], "env": {"MODE": "fast", "PRICE": "$5"},
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                          "limits": {"memory": "2Gi"}},
            "nodeSelector": {"kubernetes.io/hostname": "gpu-1"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "serviceAccountName": "trainer", "imagePullSecrets": ["regcred"],
            "envFromSecrets": ["wandb"]}
    job = build(task)
    pod = job["spec"]["template"]["spec"]
    main = containers(job)["main"]
    assert main["image"] == "pytorch/pytorch:2"
    assert main["command"] == ["python", "t.py"] and main["args"] == ["--epochs", "3"]
    env = env_of(main)
    assert env["MODE"] == "fast" and env["PRICE"] == "$$5"
    assert env["HELIOS_ARTIFACTS_DIR"] == "/artifacts"
    assert main["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                 "limits": {"memory": "2Gi"}}
    assert main["envFrom"] == [{"secretRef": {"name": "wandb"}}]
    assert main["securityContext"] == USER_SECURITY
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "gpu-1"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "trainer"
    assert pod["automountServiceAccountToken"] is False
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_no_container_is_privileged_or_escalates() -> None:
    job = build({"name": "all", "command": ["x"], "outputs": ["o"]}, inputs=[INPUT])
    pod = job["spec"]["template"]["spec"]
    for c in [*pod["initContainers"], *pod["containers"]]:
        sc = c["securityContext"]
        assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
        if c["name"] != "main":
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "ALL" in sc["capabilities"]["drop"]
            assert c["resources"]["limits"]["memory"]


# Every pod shape build_job makes: inputs or not, outputs or not, cache on or off.
SHAPES = [
    pytest.param(task, kw, id=name)
    for name, task, kw in [
        ("plain", {"name": "p", "command": ["x"]}, {}),
        ("inputs", {"name": "i", "command": ["x"]}, {"inputs": [INPUT]}),
        ("outputs", {"name": "o", "command": ["x"], "outputs": ["o"]}, {}),
        ("both", {"name": "b", "command": ["x"], "outputs": ["o"]}, {"inputs": [INPUT]}),
        ("no-cache", {"name": "n", "command": ["x"], "outputs": ["o"]},
         {"inputs": [INPUT], "use_cache": False}),
    ]
]


@pytest.mark.parametrize(("task", "kw"), SHAPES)
def test_only_helios_helpers_touch_the_node_cache(task: dict[str, Any],
                                                  kw: dict[str, Any]) -> None:
    """The hostPath is mounted by `cache-owner` and `downloader` only; user code never
    sees the cache, so it can neither read other runs' entries nor poison them."""
    pod = build(task, **kw)["spec"]["template"]["spec"]
    host_volumes = {v["name"] for v in pod["volumes"] if "hostPath" in v}
    assert host_volumes <= {"helios-cache"}
    for c in [*pod["initContainers"], *pod["containers"]]:
        mounted = {m["name"] for m in c["volumeMounts"]}
        if mounted & host_volumes:
            assert c["name"] in ("cache-owner", "downloader"), c["name"]
            assert c["image"] == SETTINGS.k8s.task_image
    main = containers(build(task, **kw))["main"]
    assert {m["name"] for m in main["volumeMounts"]} <= {"artifacts", "helios-run"}


@pytest.mark.parametrize(("task", "kw"), SHAPES)
def test_user_container_never_gets_s3_credentials(task: dict[str, Any],
                                                  kw: dict[str, Any]) -> None:
    pod = build(task, **kw)["spec"]["template"]["spec"]
    main = containers(build(task, **kw))["main"]
    assert not [e for e in main["env"] if e["name"].startswith("HELIOS_S3")]
    assert not [e for e in main["env"] if "valueFrom" in e]
    assert "envFrom" not in main
    assert pod["shareProcessNamespace"] is False  # no peeking at the helpers' /proc
    helpers = [c for c in [*pod["initContainers"], *pod["containers"]]
               if c["name"] in ("downloader", "uploader")]
    for c in helpers:  # the credentials are where they are needed, by reference only
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                for e in c["env"] if "valueFrom" in e}
        assert refs == {"HELIOS_S3_ACCESS_KEY_ID": "helios-s3",
                        "HELIOS_S3_SECRET_ACCESS_KEY": "helios-s3"}


@pytest.mark.parametrize(("task", "kw"), SHAPES)
def test_helpers_are_non_root_and_nothing_escalates(task: dict[str, Any],
                                                    kw: dict[str, Any]) -> None:
    pod = build(task, **kw)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    for c in [*pod["initContainers"], *pod["containers"]]:
        sc = c["securityContext"]
        assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        if c["name"] in ("downloader", "uploader"):
            assert sc == HELPER_SECURITY
        elif c["name"] == "cache-owner":  # uid 0 with CHOWN only, for one chown
            assert sc["capabilities"]["add"] == ["CHOWN"]
            assert sc["readOnlyRootFilesystem"] is True
        else:
            assert c["name"] == "main" and sc == USER_SECURITY


def test_user_container_runs_as_the_configured_user() -> None:
    k8s = SETTINGS.k8s.model_copy(update={"task_run_as_user": 1000,
                                          "task_add_capabilities": ["SETUID", "CHOWN"]})
    cfg = SETTINGS.model_copy(update={"k8s": k8s})
    job = jobs.build_job(dispatch({"name": "t", "command": ["x"], "outputs": ["o"]},
                                  inputs=[INPUT]), cfg)
    sc = containers(job)["main"]["securityContext"]
    assert sc == {**USER_SECURITY, "runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
                  "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "SETUID"]}}
    assert containers(job)["uploader"]["securityContext"] == HELPER_SECURITY


def test_capabilities_beyond_baseline_are_refused_by_the_settings() -> None:
    from pydantic import ValidationError
    with pytest.raises(ValidationError):
        KubernetesSettings(task_add_capabilities=["SYS_ADMIN"])
    with pytest.raises(ValidationError):
        KubernetesSettings(task_run_as_user=0)  # "non-root" means a uid other than 0


def test_a_task_never_gets_helios_own_secrets_or_service_accounts() -> None:
    task = {"name": "sneaky", "command": ["env"],
            "envFromSecrets": ["wandb", "helios-s3", "helios-api-tokens"],
            "serviceAccountName": "helios-scheduler"}
    job = build(task)
    main, pod = containers(job)["main"], job["spec"]["template"]["spec"]
    assert main["envFrom"] == [{"secretRef": {"name": "wandb"}}]
    assert pod["serviceAccountName"] == "helios-task"
    assert pod["automountServiceAccountToken"] is False
    refused = job["spec"]["template"]["metadata"]["annotations"]["helios.dev/refused"]
    assert refused == ("envFromSecrets: helios-s3; envFromSecrets: helios-api-tokens; "
                       "serviceAccountName: helios-scheduler")
    assert jobs.reserved_references(dispatch({"name": "ok", "command": ["x"]}).task) == []
    assert "helios.dev/refused" not in build()["spec"]["template"]["metadata"]["annotations"]


def test_manifest_validates_against_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    job = build({"name": "all", "command": ["x"], "outputs": ["o"], "timeoutSeconds": 5,
                 "tolerations": [{"key": "k", "operator": "Exists"}]}, inputs=[INPUT])
    kubernetes_validate.validate(job, "1.30", strict=True)
    k8s = SETTINGS.k8s.model_copy(update={"task_run_as_user": 1000,
                                          "task_add_capabilities": ["CHOWN"]})
    configured = jobs.build_job(
        dispatch({"name": "t", "command": ["x"], "outputs": ["o"],
                  "envFromSecrets": ["helios-s3"], "serviceAccountName": "helios-api"},
                 inputs=[INPUT]),
        SETTINGS.model_copy(update={"k8s": k8s}))
    kubernetes_validate.validate(configured, "1.30", strict=True)


# --- the wrapper script and the wait step, run for real ------------------------------


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash", "/bin/dash"])
def test_wrapper_runs_argv_literally_and_keeps_the_exit_code(tmp_path: Path,
                                                             shell: str) -> None:
    if not Path(shell).exists():
        pytest.skip(f"{shell} not installed")
    script = jobs.WRAPPER.replace(jobs.RUN_DIR, str(tmp_path))
    evil = "$(touch pwned); `touch pwned2`; '\"; exit 9"
    out = subprocess.run([shell, "-c", script, "helios-task", "/bin/sh", "-c",
                          'printf "%s|" "$@"; exit 7', "argv0", "a b", evil],
                         capture_output=True, text=True, cwd=tmp_path, timeout=10)
    assert out.returncode == 7
    assert out.stdout == f"a b|{evil}|"
    assert (tmp_path / "exitcode").read_text() == "7\n"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_waiter_reads_complete_statuses_only(tmp_path: Path) -> None:
    path = tmp_path / "exitcode"
    assert waiter.read_status(path) is None
    path.write_text("0")
    assert waiter.read_status(path) is None  # half-written
    path.write_text("0\n")
    assert waiter.read_status(path) == 0
    path.write_text("137\n")
    assert waiter.read_status(path) == 137


def test_waiter_skips_the_upload_after_a_failed_command(tmp_path: Path) -> None:
    (tmp_path / "exitcode").write_text("3\n")
    out = subprocess.run(
        [sys.executable, "-m", "helios.executors.kubernetes.waiter"],
        env={"HELIOS_EXIT_CODE_FILE": str(tmp_path / "exitcode"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "[HELIOS] command exited with status 3; outputs not uploaded" in out.stdout
