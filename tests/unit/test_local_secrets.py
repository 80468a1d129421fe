"""The local executor's Secret files (helios/executors/local/secrets.py): format,
permissions, names, merging, and how the values reach bwrap (an fd, never argv)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helios.executors.local import secrets
from helios.executors.local.sandbox import bwrap_argv
from helios.executors.local.secrets import SecretError, parse, read_secret, resolve


def put(folder: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = folder / f"{name}.env"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_parse_takes_values_literally_and_skips_comments() -> None:
    text = "# creds\n\nTOKEN=a=b 'c' \"d\" $HOME\n  # indented comment\nEMPTY=\n_X1=y\n"
    assert parse(text, "s") == {"TOKEN": "a=b 'c' \"d\" $HOME", "EMPTY": "", "_X1": "y"}


@pytest.mark.parametrize("line", ["NOEQUALS", "1ABC=x", "A-B=x", "A B=x", "=x", "ÄB=x"])
def test_parse_refuses_bad_lines_and_names(line: str) -> None:
    with pytest.raises(SecretError) as err:
        parse(f"OK=fine\n{line}\n", "s")
    assert err.value.reason == secrets.INVALID and "line 2" in str(err.value)
    assert "fine" not in str(err.value)  # errors never quote a value


def test_read_secret_refuses_files_others_can_read(tmp_path: Path) -> None:
    put(tmp_path, "open", "TOKEN=hunter2\n", 0o644)
    with pytest.raises(SecretError) as err:
        read_secret(tmp_path, "open")
    assert err.value.reason == secrets.INVALID
    assert "0644" in str(err.value) and "chmod 600" in str(err.value)
    assert "hunter2" not in str(err.value)
    put(tmp_path, "grp", "TOKEN=x\n", 0o640)
    with pytest.raises(SecretError):
        read_secret(tmp_path, "grp")
    put(tmp_path, "ro", "TOKEN=x\n", 0o400)
    assert read_secret(tmp_path, "ro") == {"TOKEN": "x"}


def test_read_secret_refuses_symlinks_folders_and_bad_names(tmp_path: Path) -> None:
    target = put(tmp_path, "real", "A=1\n")
    (tmp_path / "link.env").symlink_to(target)
    (tmp_path / "dir.env").mkdir(mode=0o700)
    for name in ("link", "dir", "../real", "Upper", "a/b", ".hidden"):
        with pytest.raises(SecretError) as err:
            read_secret(tmp_path, name)
        assert err.value.reason == secrets.INVALID, name


def test_missing_secret_or_folder_is_secret_not_found(tmp_path: Path) -> None:
    for folder in (tmp_path, None):
        with pytest.raises(SecretError) as err:
            read_secret(folder, "warehouse-creds")
        assert err.value.reason == "SecretNotFound"
        assert str(err.value).startswith("warehouse-creds")


def test_resolve_merges_in_order_and_leaves_reserved_names_out(tmp_path: Path) -> None:
    put(tmp_path, "first", "A=1\nB=1\n")
    put(tmp_path, "second", "B=2\n")
    got = resolve(tmp_path, ["first", "helios-s3", "second", "helios-api-tokens"])
    assert got.env == {"A": "1", "B": "2"}  # a later Secret wins, as with envFrom
    assert got.skipped == ["helios-s3", "helios-api-tokens"]


def test_values_reach_bwrap_through_an_fd_not_its_command_line() -> None:
    env = {"TOKEN": "v a=l\nue", "B": ""}
    assert secrets.bwrap_args(env) == b"--setenv\0TOKEN\0v a=l\nue\0--setenv\0B\0\0"
    fd = secrets.args_fd(env)
    try:
        assert os.get_inheritable(fd) is False
        assert os.read(fd, 4096) == secrets.bwrap_args(env)
        argv = bwrap_argv("bwrap", Path("/w"), ["true"], env={"PATH": "/bin"}, secrets_fd=fd)
    finally:
        os.close(fd)
    i = argv.index("--clearenv")
    # the Secrets first: the task's own env (after them) wins, as env wins over envFrom
    assert argv[i + 1:i + 3] == ["--args", str(fd)] and argv.index("PATH") > i + 2
    assert not any("v a=l" in a for a in argv)
