"""`helios dev` and the CLI as a user runs them: separate processes, real ports, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from importlib import resources
from pathlib import Path

import pytest

from helios.devstack.procs import free_port

SEED = Path(str(resources.files("helios").joinpath("examples/cache-test.yaml")))
HELIOS = [sys.executable, "-m", "helios.cli.main"]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


async def cli(api: str, *args: str, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> tuple[int, str]:
    """The CLI as a user runs it; in `cwd` it finds `./.helios/auth/token` by itself."""
    proc = await asyncio.create_subprocess_exec(
        *HELIOS, "--api", api, *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {})},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


@pytest.fixture
async def dev(tmp_path: Path):  # type: ignore[no-untyped-def]
    data = tmp_path / ".helios"  # the default data dir, seen from tmp_path
    port, metrics_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        *HELIOS, "dev", "--data-dir", str(data), "--port", str(port),
        "--metrics-port", str(metrics_port), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout
    lines: list[str] = []
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, "helios dev exited early:\n" + "".join(lines)
            lines.append(line)
            if "Helios is ready" in line:
                break
    yield proc, f"http://127.0.0.1:{port}", data, "".join(lines)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_dev_stack_runs_the_seed_with_the_cli_and_stops_cleanly(dev) -> None:  # type: ignore[no-untyped-def]
    proc, api, data, _ = dev
    home = data.parent  # the CLI finds ./.helios/auth/token there, as after `helios dev`
    code, out = await cli(api, "submit", str(SEED), "--follow", cwd=home)
    assert code == 0, out
    dag_id = out.split("submitted cache-test as ")[1].split()[0]
    assert "process-data" in out and "run SUCCEEDED" in out

    code, out = await cli(api, "logs", dag_id, "process-data", cwd=home)
    assert code == 0 and "test data" in out

    code, out = await cli(api, "status", dag_id, cwd=home)
    assert code == 0 and "SUCCEEDED" in out

    code, out = await cli(api, "submit", str(SEED), "--no-cache", "--wait", cwd=home)
    assert code == 0 and "SUCCEEDED" in out

    code, out = await cli(api, "metrics", "cache-test", cwd=home)
    assert code == 0 and dag_id in out, out

    code, out = await cli(api, "status", "0" * 32, cwd=home)
    assert code == 2 and "Not Found" in out

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert processes_mentioning(str(data)) == []


async def test_follow_exits_non_zero_when_the_run_fails(dev, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, api, data, _ = dev
    token = {"HELIOS_TOKEN": (data / "auth" / "token").read_text().strip()}
    dag = tmp_path / "fail.yaml"
    dag.write_text('apiVersion: v1\ndagName: "cli-fail"\ntasks:\n'
                   '  - name: "boom"\n    image: "x"\n    command: ["/bin/sh", "-c", "exit 4"]\n')
    code, out = await cli(api, "submit", str(dag), "--follow", env=token)
    assert code == 1, out
    assert "FAILED" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text('apiVersion: v1\ndagName: "BAD"\ntasks: []\n')
    code, out = await cli(api, "submit", str(bad), env=token)
    assert code == 2 and "dagName" in out


async def test_dev_makes_a_private_token_and_says_how_to_use_it(dev, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, api, data, printed = dev
    async with asyncio.timeout(30):  # the rest of the banner
        while "HELIOS_TOKEN" not in printed:
            line = (await proc.stdout.readline()).decode()
            assert line, printed
            printed += line
    tokens, token = data / "auth" / "tokens", data / "auth" / "token"
    assert tokens.stat().st_mode & 0o777 == 0o600 and token.stat().st_mode & 0o777 == 0o600
    assert f"export HELIOS_TOKEN=$(cat {token.resolve()})" in printed
    assert token.read_text().strip() not in printed
    # Elsewhere, without a token, the CLI is refused and told what to do.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, out = await cli(api, "status", "0" * 32, cwd=elsewhere)
    assert code == 2 and "Unauthorized" in out and "HELIOS_TOKEN" in out, out
    code, out = await cli(api, "status", "0" * 32, env={"HELIOS_TOKEN": "wrong-token-0123456789"})
    assert code == 2 and "Unauthorized" in out, out


async def test_cli_without_a_server_explains(tmp_path: Path) -> None:
    code, out = await cli(f"http://127.0.0.1:{free_port()}", "status", "0" * 32)
    assert code == 2 and "cannot reach the API" in out
