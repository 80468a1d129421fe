"""The batch/v1 Job of one task attempt, built as a plain dict (pure, no I/O).

Pod layout, modelled on Argo's emissary executor (an init step that prepares the
workspace, the user's command wrapped so its exit status lands in a shared emptyDir,
and a "wait" container that saves the outputs once that status appears):

- init container `cache-owner` (Helios's image, `chown 10001:10001 /var/helios/cache`,
  uid 0 with only CAP_CHOWN): the kubelet creates a `DirectoryOrCreate` hostPath as
  root 0755 and fsGroup does not apply to hostPath, so this step hands that one folder
  to the downloader's user (the arrangement deploy/README.md describes).
- init container `downloader` (Helios's image, `python -m helios.downloader`, uid
  10001): fills `/artifacts` from the node cache or S3. These two are the only
  containers that mount the hostPath cache; both are left out when the attempt has no
  inputs, and the cache (volume and `cache-owner`) when caching is off.
- container `main` (the user's image): the user's `command`/`args`/`env`/`resources`.
  It never mounts the node cache and never gets the S3 credentials (those are only in
  the helpers' environment, and the containers do not share a process namespace, so
  `main` cannot read them from /proc either). Its security context: no privilege
  escalation, every capability dropped (`HELIOS_K8S_TASK_ADD_CAPABILITIES` gives back
  some of Pod Security baseline's, e.g. for images that run `apt-get` as root), the
  runtime's default seccomp profile. `runAsNonRoot` is not forced by default: most
  public images (`ubuntu:latest`, the seed example's) declare no USER, and the kubelet
  refuses to start a container that must be non-root but names no numeric uid. A cluster
  whose task images all work as any user sets `HELIOS_K8S_TASK_RUN_AS_USER` (uid and gid
  of `main`, with `runAsNonRoot`). Root in `main` without capabilities writes only files
  it owns (its image's, in its own container) and the world-writable `/artifacts`:
  nothing of the node, of the helpers, or of other pods.
  With declared outputs, the argv is wrapped by a FIXED shell script that never contains
  user data: `/bin/sh -c WRAPPER helios-task <command...> <args...>`. The user's strings
  arrive as positional parameters (`"$@"`), so nothing is ever parsed by a shell. The
  script runs them as a child (a shell as PID 1 would ignore SIGTERM, so it forwards it),
  writes the child's exit status to `/var/run/helios/exitcode` and exits with that same
  status: the container's exit code *is* the user command's. Only `/bin/sh` is needed
  in the user's image, and only when the task declares outputs; otherwise the argv runs
  unwrapped.
- container `uploader` (Helios's image, `python -m helios.executors.kubernetes.waiter`):
  the "wait" container. It reads `/artifacts` and the exit-status file read-only, waits
  for the status, and on 0 runs the uploader (`helios.uploader`'s entry point, imported
  while the user's command runs: sha256 and size of each output; a missing output or a
  failed upload makes it exit non-zero); on any other status it exits 0 without
  uploading, so the pod reports only the user's failure. If `main` dies without writing
  a status (killed), the watcher fails the attempt from `main`'s status and deletes the
  Job, which ends the waiting uploader.
  Why not copy a helper binary into the user's container like Argo does: Helios's
  helpers are Python, and a user image must not need Python. Why not a native sidecar
  (an init container with restartPolicy Always): sidecars are terminated when the main
  containers end, which would race the upload.

What a task pays for, in sequence before and after its command (issue 9's overhead): a
task without inputs or outputs is one container and one emptyDir, the user's argv run
unwrapped, nothing else, so it starts like a bare Job with that container. Inputs add
the two init containers (one container start each, then the download or the cache copy)
before the command; outputs add `/bin/sh` as the command's parent and the upload after
it (the uploader starts beside `main` and imports while the command runs).

`main` gets the task's `imagePullPolicy`, else HELIOS_K8S_IMAGE_PULL_POLICY, else none
(Kubernetes' rule); the pod's `terminationGracePeriodSeconds` is HELIOS_K8S_CANCEL_GRACE_S;
`timeoutSeconds` travels as an annotation for the watcher, which times the command from
its start, and the Job's `activeDeadlineSeconds` is only a backstop (`timeouts.py`).

The watcher decides the attempt's outcome from the container statuses (the kubelet's
truth), not from the exit-status file, which the user's process could overwrite.

Kubernetes expands `$(VAR)` in command, args and env values; Helios passes user strings
literally (as the local executor does), so every `$` is escaped as `$$`.
"""

from __future__ import annotations

import json
from typing import Any

from helios import objects
from helios.dag.model import Task
from helios.executors.kubernetes.labels import (
    A_OUTPUTS,
    A_REFUSED,
    A_RESULT,
    A_TIMEOUT,
    L_JOB,
    AttemptId,
)
from helios.executors.kubernetes.timeouts import backstop_seconds
from helios.messages import TaskDispatch
from helios.settings import KubernetesSettings, Settings

CACHE_OWNER = "cache-owner"
DOWNLOADER = "downloader"
MAIN = "main"
UPLOADER = "uploader"

ARTIFACTS_DIR = "/artifacts"
CACHE_MOUNT = "/var/helios/cache"  # where the downloader sees the node cache
RUN_DIR = "/var/run/helios"  # shared between `main` (rw) and `uploader` (ro)
EXIT_CODE_FILE = f"{RUN_DIR}/exitcode"
S3_SECRET = "helios-s3"  # holds HELIOS_S3_ACCESS_KEY_ID / HELIOS_S3_SECRET_ACCESS_KEY
DEFAULT_SERVICE_ACCOUNT = "helios-task"
API_TOKENS_SECRET = "helios-api-tokens"  # mounted by the api only (deploy/base/api.yaml)
# Helios's own Secrets and ServiceAccounts, which a task must never name: the Secrets
# hold the S3 credentials and the API tokens; a ServiceAccount can carry a cloud identity
# (workload identity webhooks key on it, whatever automountServiceAccountToken says).
RESERVED_SECRETS = frozenset({S3_SECRET, API_TOKENS_SECRET})
RESERVED_SERVICE_ACCOUNTS = frozenset(
    {"helios-api", "helios-metrics", "helios-scheduler", "helios-watcher", "helios-dev-secrets"}
)
HELPER_UID = 10001  # the Dockerfile's `helios` user

V_ARTIFACTS = "artifacts"
V_CACHE = "helios-cache"
V_RUN = "helios-run"
V_TMP = "helios-tmp"

# A constant: user data only ever reaches it as "$@". `kill`, `wait`, `trap`, `echo` and
# `[` are shell builtins, so no other program is needed in the user's image.
WRAPPER = f"""\
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
"$@" &
pid=$!
while :; do
  wait "$pid"; code=$?
  kill -0 "$pid" 2>/dev/null || break
done
if ! echo "$code" > {EXIT_CODE_FILE}; then
  echo "[HELIOS] cannot record the exit status in {RUN_DIR}" >&2
  [ "$code" -ne 0 ] || code=125
fi
exit "$code"
"""
WRAPPER_ARGV0 = "helios-task"  # $0 of the wrapper; shows in `ps`

HELPER_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}


def literal(value: str) -> str:
    """Escape Kubernetes' `$(VAR)` expansion so `value` reaches the process as written."""
    return value.replace("$", "$$")


def _env(pairs: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": literal(v)} for k, v in pairs.items()]


def _s3_env(settings: Settings) -> list[dict[str, Any]]:
    s3 = settings.s3
    plain = {"HELIOS_S3_BUCKET": s3.bucket, "HELIOS_S3_REGION": s3.region,
             "HELIOS_S3_TIMEOUT_S": str(s3.timeout_s)}
    # Where the pods reach S3 may differ from the services' (`helios dev` on a cluster).
    endpoint = settings.k8s.task_s3_endpoint_url or s3.endpoint_url
    if endpoint:
        plain["HELIOS_S3_ENDPOINT_URL"] = endpoint
    # Credentials stay in the Secret; `optional` lets clusters with workload identity
    # (no static keys) run without it.
    secret = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": key,
                                                     "optional": True}}}
        for key in ("HELIOS_S3_ACCESS_KEY_ID", "HELIOS_S3_SECRET_ACCESS_KEY")
    ]
    return _env(plain) + secret


def _helper_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": HELPER_UID,
        "runAsGroup": HELPER_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _helper(name: str, image: str, module: str, env: list[dict[str, Any]],
            mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", module],
        "env": env,
        "volumeMounts": [*mounts, {"name": V_TMP, "mountPath": "/tmp"}],
        "resources": HELPER_RESOURCES,
        "securityContext": _helper_security(),
        # The last log lines become the status message when a helper fails.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _cache_owner(settings: Settings) -> dict[str, Any]:
    return {
        "name": CACHE_OWNER,
        "image": settings.k8s.task_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["chown", f"{HELPER_UID}:{HELPER_UID}", CACHE_MOUNT],  # not recursive
        "volumeMounts": [{"name": V_CACHE, "mountPath": CACHE_MOUNT}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                      "limits": {"memory": "32Mi"}},
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _identity_env(ident: AttemptId) -> dict[str, str]:
    return {"HELIOS_DAG_ID": ident.dag_id, "HELIOS_TASK": ident.task,
            "HELIOS_ATTEMPT": str(ident.attempt), "HELIOS_ARTIFACTS_DIR": ARTIFACTS_DIR}


def _downloader(d: TaskDispatch, settings: Settings, ident: AttemptId) -> dict[str, Any]:
    env = {
        **_identity_env(ident),
        "HELIOS_INPUT_ARTIFACTS": json.dumps([i.model_dump(by_alias=True) for i in d.inputs]),
        "HELIOS_CACHE_ENABLED": "true" if d.use_cache else "false",
        "HELIOS_CACHE_DIR": CACHE_MOUNT,
        "HELIOS_CACHE_MAX_BYTES": str(settings.cache.max_bytes),
    }
    mounts = [{"name": V_ARTIFACTS, "mountPath": ARTIFACTS_DIR}]
    if d.use_cache:
        mounts.append({"name": V_CACHE, "mountPath": CACHE_MOUNT})
    return _helper(DOWNLOADER, settings.k8s.task_image, "helios.downloader",
                   _env(env) + _s3_env(settings), mounts)


def _uploader(d: TaskDispatch, settings: Settings, ident: AttemptId) -> dict[str, Any]:
    env = {**_identity_env(ident), "HELIOS_OUTPUTS": json.dumps(list(d.task.outputs)),
           "HELIOS_EXIT_CODE_FILE": EXIT_CODE_FILE}
    if d.want_result:  # a `when` reads it: the wait container uploads `.result` here
        env["HELIOS_RESULT_OBJECT"] = objects.result(ident.dag_id, ident.task, ident.attempt)
    mounts = [{"name": V_ARTIFACTS, "mountPath": ARTIFACTS_DIR, "readOnly": True},
              {"name": V_RUN, "mountPath": RUN_DIR, "readOnly": True}]
    return _helper(UPLOADER, settings.k8s.task_image, "helios.executors.kubernetes.waiter",
                   _env(env) + _s3_env(settings), mounts)


def _resources(d: TaskDispatch) -> dict[str, Any]:
    res = d.task.resources
    if res is None:
        return {}
    out: dict[str, Any] = {}
    for part in ("requests", "limits"):
        spec = getattr(res, part)
        if spec is not None:
            values = spec.model_dump(exclude_none=True)
            if values:
                out[part] = values
    return out


def reserved_references(task: Task) -> list[str]:
    """The task fields that name a Helios Secret or ServiceAccount (empty when none).

    The submission validator should reject these with a 400; build_job leaves them out
    whatever happens upstream, so a task never receives Helios's credentials.
    """
    refused = [f"envFromSecrets: {s}" for s in task.env_from_secrets if s in RESERVED_SECRETS]
    if task.service_account_name in RESERVED_SERVICE_ACCOUNTS:
        refused.append(f"serviceAccountName: {task.service_account_name}")
    return refused


def _user_security(k8s: KubernetesSettings) -> dict[str, Any]:
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if k8s.task_add_capabilities:
        capabilities["add"] = sorted(set(k8s.task_add_capabilities))
    sc: dict[str, Any] = {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "capabilities": capabilities,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if k8s.task_run_as_user is not None:
        uid = k8s.task_run_as_user
        sc.update(runAsUser=uid, runAsGroup=uid, runAsNonRoot=True)
    return sc


def _main(d: TaskDispatch, ident: AttemptId, wrapped: bool,
          k8s: KubernetesSettings) -> dict[str, Any]:
    task = d.task
    command = [literal(c) for c in task.command]
    if wrapped:
        command = ["/bin/sh", "-c", literal(WRAPPER), WRAPPER_ARGV0, *command]
    mounts = [{"name": V_ARTIFACTS, "mountPath": ARTIFACTS_DIR}]
    if wrapped:
        mounts.append({"name": V_RUN, "mountPath": RUN_DIR})
    container: dict[str, Any] = {
        "name": MAIN,
        "image": task.image,
        **_pull_policy(task, k8s),
        "command": command,
        "args": [literal(a) for a in task.args],
        # The user's variables first, Helios's after: a later entry wins in Kubernetes,
        # and the model already rejects user names with the HELIOS_ prefix.
        "env": _env({**task.env, **_identity_env(ident)}),
        "volumeMounts": mounts,
        "resources": _resources(d),
        "securityContext": _user_security(k8s),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    secrets = [s for s in task.env_from_secrets if s not in RESERVED_SECRETS]
    if secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in secrets]
    return container


def _pull_policy(task: Task, k8s: KubernetesSettings) -> dict[str, Any]:
    """The task's imagePullPolicy, else the cluster-wide default, else none at all: the
    API server then applies Kubernetes' rule (Always for `:latest` or no tag)."""
    policy = task.image_pull_policy or k8s.image_pull_policy
    return {"imagePullPolicy": policy} if policy else {}


def build_job(dispatch: TaskDispatch, settings: Settings) -> dict[str, Any]:
    """The whole Job manifest of `dispatch` (name = `dispatch.job_name`)."""
    d, k8s, task = dispatch, settings.k8s, dispatch.task
    ident = AttemptId(d.dag_id, d.dag_name, task.name, d.attempt)
    # The wait container runs when there is something to upload: outputs, or a result a
    # `when` reads (the pod's files are gone once it ends; the watcher reads the object).
    wrapped = bool(task.outputs) or d.want_result
    labels = ident.labels()
    annotations = {**ident.annotations(), A_OUTPUTS: json.dumps(list(task.outputs))}
    if d.want_result:
        annotations[A_RESULT] = objects.result(ident.dag_id, ident.task, ident.attempt)
    if task.timeout_seconds:
        annotations[A_TIMEOUT] = str(task.timeout_seconds)
    refused = reserved_references(task)
    if refused:
        annotations[A_REFUSED] = "; ".join(refused)
    account = task.service_account_name
    if account is None or account in RESERVED_SERVICE_ACCOUNTS:
        account = DEFAULT_SERVICE_ACCOUNT

    volumes: list[dict[str, Any]] = [{"name": V_ARTIFACTS, "emptyDir": {}}]
    if d.inputs or wrapped:  # the helpers' /tmp (their root filesystem is read-only)
        volumes.append({"name": V_TMP, "emptyDir": {"sizeLimit": "256Mi"}})
    init: list[dict[str, Any]] = []
    if d.inputs:
        if d.use_cache:
            init.append(_cache_owner(settings))
            volumes.append({"name": V_CACHE, "hostPath": {"path": k8s.node_cache_dir,
                                                          "type": "DirectoryOrCreate"}})
        init.append(_downloader(d, settings, ident))
    containers = [_main(d, ident, wrapped, k8s)]
    if wrapped:
        containers.append(_uploader(d, settings, ident))
        volumes.append({"name": V_RUN, "emptyDir": {"sizeLimit": "1Mi"}})

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # SIGTERM, then SIGKILL this much later: a cancel or a timeout stops the task
        # within seconds even when its PID 1 ignores SIGTERM (a shell does). Deleting the
        # Job passes no grace period on to its pods: the garbage collector uses this one.
        "terminationGracePeriodSeconds": k8s.cancel_grace_s,
        "serviceAccountName": account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no Service env variables leaking into the task
        # Each container its own PID namespace: `main` cannot read the helpers'
        # /proc/<pid>/environ, where the S3 credentials are.
        "shareProcessNamespace": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": init,
        "containers": containers,
        "volumes": volumes,
    }
    if task.node_selector:
        pod_spec["nodeSelector"] = dict(task.node_selector)
    if task.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in task.tolerations
        ]
    if task.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in task.image_pull_secrets]

    spec: dict[str, Any] = {
        "backoffLimit": 0,  # retries are the scheduler's
        "completions": 1,
        "parallelism": 1,
        "ttlSecondsAfterFinished": k8s.ttl_seconds_after_finished,
        "template": {
            "metadata": {"labels": {**labels, L_JOB: d.job_name}, "annotations": annotations},
            "spec": pod_spec,
        },
    }
    if task.timeout_seconds:
        # The watcher times the command from its start (timeouts.py); this is the
        # backstop above every bound, for when no watcher runs.
        spec["activeDeadlineSeconds"] = backstop_seconds(task.timeout_seconds, k8s)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": d.job_name, "namespace": k8s.namespace, "labels": labels,
                     "annotations": annotations},
        "spec": spec,
    }
