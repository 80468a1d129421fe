"""The image's entrypoints, run from the package as the Dockerfile's builder installs it
(the context `.dockerignore` admits, `pip install .` into a folder of its own): each
command the manifests and the task Jobs give the Helios image exists there, and the
services and task helpers start from it, cwd away from the repository."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from helios import objects
from helios.devstack.procs import free_port
from helios.s3 import open_s3
from helios.settings import Settings
from tests.conftest import WRITE_TOKEN

from .image import ROOT, WEB_OUTPUT, build_context, image_commands, install_like_the_builder
from .render import needs_kubectl

# Programs other than python that the image runs: coreutils, Essential in Debian, so
# python:3.11-slim has them.
BASE_IMAGE_PROGRAMS = {"chown", "sleep"}
SERVICES = ("api", "metrics", "scheduler", "watcher")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("image")
    return install_like_the_builder(work / "site", work)


def run_env(site: Path, **env: str) -> dict[str, str]:
    """This venv's interpreter and dependencies, Helios itself only from `site`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HELIOS_", "PYTHON"))}
    return {**base, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1", **env}


async def python(site: Path, cwd: Path, module: str, env: dict[str, str]) -> tuple[int, str]:
    """`python -m module` from the install; its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, cwd=cwd, env=run_env(site, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode()


def test_the_build_context_is_the_package_and_the_page_sources_only() -> None:
    files = build_context()
    assert {"pyproject.toml", "README.md", "helios/__init__.py", "services/api/__main__.py",
            "web/package.json", "web/package-lock.json"} <= set(files)
    tops = {f.split("/")[0] for f in files}
    assert tops <= {"pyproject.toml", "README.md", "helios", "services", "web"}, tops
    for f in files:  # no build output, caches, installed modules or dev data
        assert not f.startswith((f"{WEB_OUTPUT}/", "web/node_modules/")), f
        assert "__pycache__" not in f and not f.endswith((".pyc", ".pem", ".key")), f
        assert not Path(f).name.startswith(".env"), f
    # Every source of the Dockerfile's COPY lines (not --from a stage) is in the context.
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            for src in (w for w in words[1:-1] if not w.startswith("--")):
                src = src.rstrip("/")
                assert src == "." or any(f == src or f.startswith(src + "/") for f in files), \
                    f"Dockerfile copies {src}, which .dockerignore leaves out"


@needs_kubectl
def test_every_command_of_the_image_exists_in_the_install(installed: Path) -> None:
    modules: dict[str, str] = {}
    for where, argv in image_commands():
        if argv[:2] == ["python", "-m"]:
            modules[argv[2]] = where
        elif argv[0] == "python":  # a script from a ConfigMap: the standard library only
            script = ROOT / "deploy" / "overlays" / "dev" / Path(argv[1]).name
            tree = ast.parse(script.read_text())
            imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                        for a in n.names}
            imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                         if isinstance(n, ast.ImportFrom) and not n.level}
            assert imported - {"__future__"} <= sys.stdlib_module_names, (where, imported)
        else:
            assert argv[0] in BASE_IMAGE_PROGRAMS, f"{where}: {argv[0]} is not in the image"
    assert {"services.api", "services.metrics", "services.scheduler", "services.watcher",
            "helios.downloader"} <= set(modules)
    # Found in the install itself (as the entrypoint tests below run them), not the repo.
    probe = ("import importlib.util, sys\n"
             "for m in sys.argv[1:]:\n"
             "    spec = importlib.util.find_spec(m)\n"
             "    print(m, spec.origin if spec else None)\n")
    out = subprocess.run([sys.executable, "-c", probe, "helios", "services", *modules],
                         env=run_env(installed), cwd=installed.parent, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for line in out.splitlines():
        module, origin = line.split(" ", 1)
        assert origin.startswith(str(installed)), f"{modules.get(module, module)}: {origin}"
    for rel in ("helios/py.typed", "helios/examples/cache-test.yaml", "services/api/__main__.py",
                "helios/executors/kubernetes/waiter.py", "helios/uploader.py"):
        assert (installed / rel).is_file(), rel
    if (ROOT / WEB_OUTPUT / "index.html").is_file():
        built = {p.relative_to(ROOT) for p in (ROOT / WEB_OUTPUT).rglob("*") if p.is_file()}
        assert all((installed / p).is_file() for p in built), "the page is not package data"


async def test_the_task_helpers_run_from_the_install(installed: Path, settings: Settings,
                                                     tmp_path: Path) -> None:
    """The Job's two helpers at once: the upload step (the waiter, which runs the uploader
    once the command's status is 0) and the downloader, on an object put there first."""
    s3 = settings.s3
    assert s3.endpoint_url and s3.access_key_id and s3.secret_access_key
    creds = {"HELIOS_S3_ENDPOINT_URL": s3.endpoint_url, "HELIOS_S3_BUCKET": s3.bucket,
             "HELIOS_S3_ACCESS_KEY_ID": s3.access_key_id.get_secret_value(),
             "HELIOS_S3_SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value()}
    produced, consumed, cwd = tmp_path / "produced", tmp_path / "consumed", tmp_path / "cwd"
    for folder in (produced, consumed, cwd):
        folder.mkdir()
    data = b"from the installed package\n"
    (produced / "out.txt").write_bytes(data)
    (tmp_path / "exitcode").write_text("0\n")
    key = objects.output("image-test", "earlier", "out.txt")
    async with open_s3(s3) as client:
        await client.put_object(Bucket=s3.bucket, Key=key, Body=data)
    inputs = [{"name": "input.txt", "fromTask": "earlier", "artifact": "out.txt", "key": key,
               "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}]
    (w_code, w_out), (d_code, d_out) = await asyncio.gather(
        python(installed, cwd, "helios.executors.kubernetes.waiter", {
            **creds, "HELIOS_DAG_ID": "image-test", "HELIOS_TASK": "gen",
            "HELIOS_ARTIFACTS_DIR": str(produced), "HELIOS_OUTPUTS": json.dumps(["out.txt"]),
            "HELIOS_EXIT_CODE_FILE": str(tmp_path / "exitcode")}),
        python(installed, cwd, "helios.downloader", {
            **creds, "HELIOS_ARTIFACTS_DIR": str(consumed),
            "HELIOS_CACHE_DIR": str(tmp_path / "cache"),
            "HELIOS_INPUT_ARTIFACTS": json.dumps(inputs)}))
    assert w_code == 0, w_out
    async with open_s3(s3) as client:
        uploaded = await client.get_object(Bucket=s3.bucket,
                                           Key=objects.output("image-test", "gen", "out.txt"))
        assert await uploaded["Body"].read() == data
    assert d_code == 0 and "[HELIOS] Cache miss input.txt" in d_out, d_out
    assert (consumed / "input.txt").read_bytes() == data


@contextlib.asynccontextmanager
async def started(installed: Path, settings: Settings, tmp: Path, name: str, port: int,
                  metrics_port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    s3 = settings.s3
    assert s3.endpoint_url and s3.access_key_id and s3.secret_access_key and settings.auth.tokens_file
    env = run_env(installed, HELIOS_NATS_URL=settings.nats.url, HELIOS_REDIS_URL=settings.redis.url,
                  HELIOS_S3_ENDPOINT_URL=s3.endpoint_url, HELIOS_S3_BUCKET=s3.bucket,
                  HELIOS_S3_ACCESS_KEY_ID=s3.access_key_id.get_secret_value(),
                  HELIOS_S3_SECRET_ACCESS_KEY=s3.secret_access_key.get_secret_value(),
                  HELIOS_AUTH_TOKENS_FILE=str(settings.auth.tokens_file),
                  HELIOS_HTTP_HOST="127.0.0.1", HELIOS_HTTP_PORT=str(port),
                  HELIOS_METRICS_URL=f"http://127.0.0.1:{metrics_port}",
                  HELIOS_CACHE_DIR=str(tmp / "cache"), HELIOS_LOCAL_WORK_DIR=str(tmp / "work"),
                  HELIOS_LOG_FORMAT="text", HELIOS_DRAIN_TIMEOUT_S="5")
    log = (tmp / f"{name}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"services.{name}", cwd=tmp, env=env, stdout=log,
        stderr=asyncio.subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


async def test_the_services_start_from_the_install(
        installed: Path, settings: Settings, tmp_path: Path) -> None:
    ports = {name: free_port() for name in SERVICES}

    async def ready(name: str, proc: asyncio.subprocess.Process, http: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(60):
            while True:
                assert proc.returncode is None, (tmp_path / f"{name}.log").read_text()
                with contextlib.suppress(aiohttp.ClientError, ValueError):
                    async with http.get(f"http://127.0.0.1:{ports[name]}/readyz") as resp:
                        if resp.status == 200 and (await resp.json())["service"] == name:
                            return
                await asyncio.sleep(0.1)

    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        procs = {name: await stack.enter_async_context(
            started(installed, settings, tmp_path, name, ports[name], ports["metrics"]))
            for name in SERVICES}
        await asyncio.gather(*(ready(n, p, http) for n, p in procs.items()))
        # The api of the install serves its own OpenAPI document and page.
        auth = {"Authorization": f"Bearer {WRITE_TOKEN}"}
        async with http.get(f"http://127.0.0.1:{ports['api']}/api/v1/openapi.json",
                            headers=auth) as resp:
            assert resp.status == 200
        if (ROOT / WEB_OUTPUT / "index.html").is_file():
            async with http.get(f"http://127.0.0.1:{ports['api']}/") as resp:
                assert resp.status == 200 and "<html" in (await resp.text()).lower()
        # Their SIGTERM drain is tested through helios dev (tests/devstack, tests/e2e); here
        # they are killed on the way out, which saves the suite a few seconds.
