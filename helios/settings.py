"""Settings from HELIOS_* environment variables, one validated object per service.

Each concern reads its own prefix (HELIOS_NATS_URL, HELIOS_REDIS_URL, HELIOS_S3_BUCKET,
HELIOS_CACHE_DIR, ...), so the names stay flat for operators and nested in code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Env(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)


class NatsSettings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_NATS_")

    url: str = Field("nats://127.0.0.1:4222", description="NATS server URL(s), comma-separated.")
    stream_replicas: int = Field(1, ge=1, le=5, description="JetStream replicas of each stream.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Per-attempt connect timeout.")
    request_timeout_s: float = Field(5.0, gt=0, description="JetStream publish/ack timeout.")


class RedisSettings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_REDIS_")

    url: str = Field("redis://127.0.0.1:6379/0", description="Redis (or Valkey) URL.")
    timeout_s: float = Field(5.0, gt=0, description="Socket timeout of every command.")


class S3Settings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_S3_")

    endpoint_url: str | None = Field(None, description="S3 endpoint; unset means AWS.")
    bucket: str = Field("helios-artifacts", description="Bucket holding every artifact.")
    region: str = Field("us-east-1", description="Signing region.")
    access_key_id: SecretStr | None = Field(None, description="Access key (or AWS defaults).")
    secret_access_key: SecretStr | None = Field(None, description="Secret key.")
    timeout_s: float = Field(60.0, gt=0, description="Connect/read timeout of S3 calls.")


class CacheSettings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_CACHE_")

    dir: Path = Field(Path("/var/helios/cache"), description="Node-local content cache.")
    max_bytes: int = Field(10 * 1024**3, ge=0, description="LRU bound of the node cache.")


class HttpSettings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_HTTP_")

    host: str = Field("0.0.0.0", description="Address the HTTP server binds.")
    port: int = Field(8080, ge=0, le=65535, description="Port of /healthz, /readyz, /metrics.")


class LocalExecutorSettings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_LOCAL_")

    work_dir: Path = Field(Path("/tmp/helios/work"), description="Per-attempt workspaces.")
    node_name: str = Field("local", description="Reported as the task's node.")
    max_parallel: int = Field(32, ge=1, description="Attempts running at once.")
    sandbox: Literal["bwrap", "none"] = Field(
        "bwrap", description="bwrap: a private root with /artifacts; none: tests only."
    )
    keep_workspaces: bool = Field(False, description="Keep workspaces for debugging.")
    network: Literal["none", "outbound", "host"] = Field(
        "none", description="Tasks' network: none (own namespace, loopback only; the safe "
        "default), outbound (internet through slirp4netns, host unreachable), host (UNSAFE: "
        "tasks reach every service of the machine)."
    )
    task_uid: int = Field(65534, ge=1, description="Host uid tasks run as when Helios is root.")
    task_gid: int = Field(65534, ge=1, description="Host gid tasks run as when Helios is root.")
    pids_max: int = Field(1024, ge=16, description="Processes and threads one task may have.")
    tmp_max_bytes: int = Field(1024**3, ge=4096, description="Cap of a task's disk-backed /tmp.")
    output_max_bytes: int = Field(
        10 * 1024**3, ge=4096, description="Cap of what one attempt writes to /artifacts."
    )
    secrets_dir: Path | None = Field(
        None, description="envFromSecrets: one `NAME.env` file (KEY=VALUE lines, mode 0600) "
        "per Secret; unset: no Secret exists (helios dev: <data dir>/secrets)."
    )


# The capabilities Pod Security "baseline" (and deploy/extras/pod-guard) admits.
BaselineCapability = Literal[
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
]


class KubernetesSettings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_K8S_")

    namespace: str = Field("helios", description="Namespace of task Jobs.")
    task_image: str = Field("helios:latest", description="Image of the downloader/uploader.")
    task_s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint as task pods reach it; unset: HELIOS_S3_ENDPOINT_URL."
    )
    node_cache_dir: str = Field("/var/helios/cache", description="hostPath of the node cache.")
    ttl_seconds_after_finished: int = Field(3600, ge=0, description="Safety net for Job GC.")
    max_parallel_jobs: int = Field(200, ge=1, description="Global cap on running Jobs.")
    max_parallel_jobs_per_run: int = Field(50, ge=1, description="Per-run cap on Jobs.")
    api_qps: float = Field(20.0, gt=0, description="Client-side rate limit of API calls.")
    pending_timeout_s: float = Field(
        300.0, gt=0, description="Fail a pod unschedulable (or its config unusable) after this."
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        None, description="imagePullPolicy of tasks that set none; unset: Kubernetes' rule "
        "(Always for :latest or no tag, else IfNotPresent)."
    )
    image_pull_timeout_s: float = Field(
        120.0, gt=0, description="Fail a task whose image cannot be pulled after this."
    )
    start_timeout_s: float = Field(
        600.0, gt=0, description="From Job creation to the command's start (scheduling, "
        "image pull, inputs); past it the attempt fails StartTimeout."
    )
    cancel_grace_s: int = Field(
        3, ge=1, le=3600, description="Seconds a task's processes get between SIGTERM and "
        "SIGKILL on cancel or timeout (the pod's terminationGracePeriodSeconds)."
    )
    in_cluster: bool = Field(True, description="Use the in-cluster config, else kubeconfig.")
    kubeconfig: str | None = Field(None, description="Path of a kubeconfig (out of cluster).")
    task_run_as_user: int | None = Field(
        None, ge=1, le=2**31 - 1,
        description="uid and gid of user containers (runAsNonRoot); unset: the image's USER.",
    )
    task_add_capabilities: list[BaselineCapability] = Field(
        default_factory=list,
        description="Capabilities given back to user containers (all are dropped); JSON list.",
    )


class SchedulerSettings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_SCHED_")

    retry_backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles each time.")
    retry_backoff_max_s: float = Field(300.0, ge=0, description="Cap of the retry delay.")
    max_runs_in_flight: int = Field(256, ge=1, description="Runs evaluated concurrently.")
    lost_attempts_max: int = Field(
        3, ge=0, description="Attempts lost with their executor re-run per task (no retry spent)."
    )


class AuthSettings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_AUTH_")

    tokens_file: Path | None = Field(
        None, description="File of `scope token` lines (scope read or write); the API refuses "
                          "to start without it unless HELIOS_AUTH_DISABLED is set."
    )
    public_reads: bool = Field(False, description="Reads (GET) need no token; writes still do.")
    disabled: bool = Field(
        False, description="No authentication at all: only on a machine nobody else reaches."
    )
    reload_s: float = Field(1.0, gt=0, description="How often the tokens file is checked for changes.")


class FiringSettings(_Env):
    """The api's firing loops: schedules, backfills, object triggers, chained runs."""

    model_config = SettingsConfigDict(env_prefix="HELIOS_FIRING_")

    enabled: bool = Field(True, description="Run the firing loops in this api instance.")
    tick_s: float = Field(1.0, gt=0, le=60, description="Schedules and backfills are looked at this often.")
    objects_poll_s: float = Field(10.0, gt=0, description="Object triggers list their prefix this often.")
    objects_page: int = Field(1000, ge=1, le=1000, description="Keys per S3 listing request.")
    objects_max_per_poll: int = Field(
        100_000, ge=1, description="Keys one trigger looks at per poll (the rest next poll).")
    objects_clock_skew_s: float = Field(
        5.0, ge=1.0, description="An object written up to this long before its trigger was "
        "created still counts as new (the object store's clock, and its one-second "
        "timestamps, may lag ours).")
    lease_ttl_s: float = Field(
        10.0, gt=0, description="Another api instance takes the firing loops over this long "
        "after the one running them died.")
    pass_timeout_s: float = Field(60.0, gt=0, description="Bound of one pass of a loop.")
    buckets: list[str] = Field(
        default_factory=list, description="Buckets object triggers may watch besides the "
        "artifacts bucket (JSON list).")


class RetentionSettings(_Env):
    model_config = SettingsConfigDict(env_prefix="HELIOS_RETENTION_")

    days: float = Field(30.0, gt=0, description="Delete runs that ended more than this ago.")
    interval_s: float = Field(300.0, gt=0, description="Pause between retention passes.")
    batch: int = Field(100, ge=1, le=10_000, description="Runs deleted per step of a pass.")


class Settings(_Env):
    """Everything any service reads; each service uses the parts it needs."""

    model_config = SettingsConfigDict(env_prefix="HELIOS_")

    executor: Literal["local", "kubernetes"] = Field("local", description="Execution backend.")
    log_level: str = Field("INFO", description="Python log level.")
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    metrics_url: str = Field(
        "http://127.0.0.1:8081", description="Metrics service base URL (the api proxies to it)."
    )
    drain_timeout_s: float = Field(20.0, gt=0, description="In-flight budget on SIGTERM.")
    log_max_bytes: int = Field(
        8 * 1024**2, ge=1024, description="Task log bytes kept in Redis per attempt; the rest "
        "is only in the attempt's archived log object."
    )
    nats: NatsSettings = Field(default_factory=NatsSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    local: LocalExecutorSettings = Field(default_factory=LocalExecutorSettings)
    k8s: KubernetesSettings = Field(default_factory=KubernetesSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    firing: FiringSettings = Field(default_factory=FiringSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)


_PARTS: dict[str, type[BaseSettings]] = {
    "nats": NatsSettings, "redis": RedisSettings, "s3": S3Settings, "cache": CacheSettings,
    "http": HttpSettings, "local": LocalExecutorSettings, "k8s": KubernetesSettings,
    "scheduler": SchedulerSettings, "retention": RetentionSettings, "auth": AuthSettings,
    "firing": FiringSettings,
}


def _describe(prefix: str, exc: ValidationError) -> list[str]:
    return [f"{prefix}{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]


def load_settings(**overrides: object) -> Settings:
    """Read the environment; on error, list every bad field of every part and exit 2."""
    problems: list[str] = []
    parts: dict[str, BaseSettings] = {}
    for name, part in _PARTS.items():
        try:
            parts[name] = part()
        except ValidationError as exc:
            problems += _describe(str(part.model_config.get("env_prefix", "")), exc)
            parts[name] = part.model_construct()
    try:
        settings = Settings(**{**parts, **overrides})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems += _describe("HELIOS_", exc)
    if problems:
        print("invalid settings:\n  " + "\n  ".join(problems), file=sys.stderr)
        raise SystemExit(2)
    return settings
