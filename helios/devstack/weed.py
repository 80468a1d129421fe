"""SeaweedFS for the embedded stack: `weed mini` with every internal port locked.

Only the S3 gateway is meant for clients, and it checks the stack's access key. The
rest (master, volume and filer, HTTP and gRPC) would otherwise serve anyone on this
machine, a task included, so at each start we write a fresh `security.toml` next to the
data (weed reads `./security.toml` from its working directory):

- master, volume and filer HTTP APIs are switched off (`-disableHttp`); the volume
  server still answers HTTP for the gateway's chunk traffic, but only with a JWT signed
  by keys drawn at this start (`jwt.signing`, `jwt.signing.read`), and the filer would
  ask for its own (`jwt.filer_signing`, `.read`);
- every gRPC port demands a client certificate from a CA made at this start (mutual
  TLS), so no one without the key files (0600, under the data dir) can talk to them.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
from pathlib import Path

from helios.devstack.supervise import HOST, ChildSpec

log = logging.getLogger(__name__)

GRPC_ROLES = ("master", "volume", "filer", "s3", "admin", "worker", "msg_broker", "msg_agent",
              "mq", "client")


def _key() -> str:
    return secrets.token_urlsafe(32)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_tls(folder: Path) -> tuple[Path, Path, Path] | None:
    """A CA and one certificate for every SeaweedFS component, new at each start.
    Returns (ca, cert, key), or None when `openssl` is missing (gRPC stays plaintext)."""
    if shutil.which("openssl") is None:
        log.warning("openssl not found: SeaweedFS's gRPC ports run without TLS")
        return None
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key, csr, ext = (folder / n for n in ("node.crt", "node.key", "node.csr", "ext.cnf"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-days", "3650", "-subj", "/CN=helios-dev-ca",
             "-keyout", str(ca_key), "-out", str(ca))
    _openssl("req", *ec, "-subj", "/CN=helios-seaweedfs", "-keyout", str(key), "-out", str(csr))
    ext.write_text(f"subjectAltName=IP:{HOST},DNS:localhost\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "3650", "-extfile", str(ext), "-out", str(cert))
    # Nobody needs the CA's key once the one certificate is signed.
    for path in (ca_key, csr, ext, folder / "ca.srl"):
        path.unlink(missing_ok=True)
    for path in folder.iterdir():
        path.chmod(0o600)
    return ca, cert, key


def security_toml(tls: tuple[Path, Path, Path] | None) -> str:
    lines = [
        "# Written by `helios dev` at each start; the keys change every time.",
        "[access]", "ui = false",
        "[filer.expose_directory_metadata]", "enabled = false",
    ]
    for section in ("jwt.signing", "jwt.signing.read", "jwt.filer_signing",
                    "jwt.filer_signing.read"):
        lines += [f"[{section}]", f'key = "{_key()}"', "expires_after_seconds = 10"]
    if tls:
        ca, cert, key = tls
        lines += ["[grpc]", f'ca = "{ca}"']
        for role in GRPC_ROLES:
            lines += [f"[grpc.{role}]", f'cert = "{cert}"', f'key = "{key}"']
    return "\n".join(lines) + "\n"


def write_security(folder: Path) -> Path:
    tls = make_tls(folder / "tls")
    path = folder / "security.toml"
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(security_toml(tls))
    return path


def weed_spec(binary: str, folder: Path, s3_port: int, w: list[int], access_key: str,
              secret_key: str, log_file: Path) -> ChildSpec:
    """`weed mini` serving S3 on `s3_port`, internal ports `w` (9 of them), data and
    security settings under `folder` (its working directory)."""
    write_security(folder)
    argv = [
        binary, "mini", f"-dir={folder}", f"-master.dir={folder / 'master'}", f"-ip={HOST}",
        f"-ip.bind={HOST}", f"-master.port={w[0]}", f"-master.port.grpc={w[1]}",
        f"-volume.port={w[2]}", f"-volume.port.grpc={w[3]}", f"-filer.port={w[4]}",
        f"-filer.port.grpc={w[5]}", f"-s3.port={s3_port}", f"-s3.port.grpc={w[6]}",
        f"-admin.port={w[7]}", f"-admin.port.grpc={w[8]}", "-s3.port.iceberg=0",
        "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
        "-disableHttp",
    ]
    (folder / "master").mkdir(parents=True, exist_ok=True)
    return ChildSpec(
        "s3", "server", argv, log_file, cwd=folder, port=s3_port,
        env={"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key},
        # Its components stop one after another (about 3 s here); on a first start it
        # was seen taking over 10 s, and was then killed.
        grace_s=30.0,
    )
