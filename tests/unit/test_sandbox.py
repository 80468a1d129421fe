"""The local sandbox's command line (pure)."""

from __future__ import annotations

from pathlib import Path

from helios.executors.local.sandbox import bwrap_argv, launcher_env


def test_user_env_is_set_inside_after_clearenv_never_on_bwrap() -> None:
    argv = bwrap_argv("bwrap", Path("/w"), ["cmd"], env={"LD_PRELOAD": "/x.so", "A": "1"})
    sep = argv.index("--")
    assert argv[sep + 1:] == ["cmd"]
    opts = argv[:sep]
    assert "--clearenv" in opts
    assert opts.index("--clearenv") < opts.index("--setenv")
    assert opts[opts.index("LD_PRELOAD") - 1:][:3] == ["--setenv", "LD_PRELOAD", "/x.so"]
    assert set(launcher_env()) == {"PATH", "LANG"}  # what bwrap itself starts with


def test_root_is_never_the_hosts_and_artifacts_is_the_workspace() -> None:
    argv = bwrap_argv("bwrap", Path("/data/ws"), ["cmd"])
    pairs = list(zip(argv, argv[1:], argv[2:], strict=False))
    assert ("--bind", "/data/ws", "/artifacts") in pairs
    assert not any(src == "/" for flag, src, _ in pairs if flag.endswith("bind"))
    assert not any(flag.endswith("bind") and dst == "/" for flag, _, dst in pairs)
    assert ("--tmpfs", "/tmp") in [(a, b) for a, b, _ in pairs]


def test_network_none_gets_a_private_namespace() -> None:
    assert "--unshare-net" in bwrap_argv("bwrap", Path("/w"), ["c"], network=False)
    assert "--unshare-net" not in bwrap_argv("bwrap", Path("/w"), ["c"])
