"""An outbound sandbox whose network cannot be attached is started again once: its
command was still blocked and never ran, so starting it again is safe. The fault is a
real slirp4netns that fails on its first start (a wrapper ahead of it on PATH)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from helios.settings import Settings
from tests.security.support import run_task


@pytest.fixture
def first_slirp_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    real = shutil.which("slirp4netns")
    if real is None:
        pytest.skip("slirp4netns is not installed (run.sh installs it)")
    folder = tmp_path / "bin"
    folder.mkdir()
    starts = tmp_path / "slirp-starts"
    wrapper = folder / "slirp4netns"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo start >> "{starts}"\n'
        f'if [ "$(wc -l < "{starts}")" -eq 1 ]; then echo "injected failure" >&2; exit 1; fi\n'
        f'exec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return starts


async def test_a_network_that_could_not_be_attached_is_set_up_again(
        settings: Settings, s3: Any, tmp_path: Path, first_slirp_fails: Path) -> None:
    ran = await run_task(settings, s3, tmp_path, "grep -q tap0 /proc/net/dev && echo 'has tap0'",
                         local={"network": "outbound"})
    assert ran.outcome.ok, ran.text
    assert first_slirp_fails.read_text().split() == ["start", "start"]
    assert "has tap0" in ran.lines
    failed = [line for line in ran.lines if "Could not set up the task's network" in line]
    assert len(failed) == 1 and "injected failure" in failed[0], ran.text
    assert "[HELIOS] Starting the sandbox again for its network" in ran.lines
