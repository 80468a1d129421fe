"""The local sandbox's pure parts: command lines, cgroup files, quantities, disk caps."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from helios.artifacts.uploader import OutputTooLarge, upload_outputs
from helios.executors.local.cgroups import (
    Cgroups,
    Limits,
    cpu_quota_us,
    limits_of,
    memory_bytes,
    oom_kills,
    own_paths,
    parse_quantity,
    v1_files,
    v2_files,
)
from helios.executors.local.limits import DiskCaps, over_cap, tree_size
from helios.executors.local.network import NetworkSetupError, child_pid, slirp_argv
from helios.executors.local.sandbox import (
    bwrap_argv,
    launcher_argv,
    launcher_env,
    prepare_root,
    staged,
)


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
    argv = bwrap_argv("bwrap", Path("/data/ws"), ["cmd"], tmp=Path("/data/tmp"))
    pairs = list(zip(argv, argv[1:], argv[2:], strict=False))
    assert ("--bind", "/data/ws", "/artifacts") in pairs
    assert ("--bind", "/data/tmp", "/tmp") in pairs  # disk-backed, not a tmpfs
    assert not any(src == "/" for flag, src, _ in pairs if flag.endswith("bind"))
    assert not any(flag.endswith("bind") and dst == "/" for flag, _, dst in pairs)
    assert not any(src in ("/opt", "/etc") for flag, src, _ in pairs if flag.endswith("bind"))
    # The root is made read-only after every mount is in place.
    remounts = [i for i, (a, b) in enumerate(itertools.pairwise(argv))
                if (a, b) == ("--remount-ro", "/")]
    assert remounts and remounts[0] > argv.index("/artifacts")
    assert ("--remount-ro", "/dev") in list(itertools.pairwise(argv))


def test_task_is_uid_1000_in_its_own_user_namespace_without_capabilities() -> None:
    argv = bwrap_argv("bwrap", Path("/w"), ["c"])
    assert "--unshare-user" in argv
    assert argv[argv.index("--uid") + 1] == "1000" and argv[argv.index("--gid") + 1] == "1000"
    assert argv[argv.index("--cap-drop") + 1] == "ALL"


@pytest.mark.parametrize(("mode", "private"), [("none", True), ("outbound", True), ("host", False)])
def test_network_modes(mode: str, private: bool) -> None:
    assert ("--unshare-net" in bwrap_argv("bwrap", Path("/w"), ["c"], network=mode)) is private


def test_unknown_network_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="network"):
        bwrap_argv("bwrap", Path("/w"), ["c"], network="bridge")


def test_sandbox_etc_is_generated_and_holds_no_secret(tmp_path: Path) -> None:
    binds = prepare_root(tmp_path, "none")
    etc = tmp_path / "etc"
    assert "task:x:1000:1000:" in (etc / "passwd").read_text()
    assert not (etc / "shadow").exists() and not (etc / "gshadow").exists()
    assert (etc / "resolv.conf").read_text() == "# no network\n"
    sources = binds[1::3]
    assert all(src.startswith("/etc/") for src in sources)
    assert not [s for s in sources if "shadow" in s or "sudoers" in s or "ssh" in s]
    assert (tmp_path / "empty").is_dir() and not os.listdir(tmp_path / "empty")


def test_launcher_joins_cgroups_caps_files_stages_and_drops() -> None:
    inner = ["bwrap", "x"]
    argv = launcher_argv(inner, procs_files=["/cg/a/cgroup.procs", "/cg/b/cgroup.procs"],
                         file_max=1024**3 + 4096, drop_to=(65534, 65534),
                         stage={"artifacts": Path("/ws/artifacts")})
    assert argv[:3] == ["/bin/sh", "-c", argv[2]]
    assert argv[4:8] == [str((1024**3 + 4096) // 512), "2", "/cg/a/cgroup.procs",
                         "/cg/b/cgroup.procs"]
    unshare = argv.index("unshare")
    assert argv[unshare:unshare + 4] == ["unshare", "--mount", "--propagation", "private"]
    assert argv[-len(inner) - 5:] == ["setpriv", "--reuid=65534", "--regid=65534",
                                      "--clear-groups", "--", *inner]
    assert staged(["artifacts"]) == {"artifacts": Path("/run/artifacts")}
    plain = launcher_argv(inner)
    assert plain[4:6] == ["unlimited", "0"] and "setpriv" not in plain and plain[-2:] == inner


@pytest.mark.parametrize(("text", "value"), [
    ("64Mi", 64 * 2**20), ("1G", 10**9), ("1.5Gi", 1.5 * 2**30), ("500m", 0.5), ("2", 2),
    ("100k", 100_000),
])
def test_quantities(text: str, value: float) -> None:
    assert parse_quantity(text) == value


def test_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_quantity("64MB")


def test_limits_become_cgroup_files() -> None:
    assert memory_bytes("64Mi") == 67108864
    assert cpu_quota_us("500m") == 50_000 and cpu_quota_us("1m") == 1000
    limits = Limits(memory=67108864, cpu_quota=50_000, pids=1024)
    assert v2_files(limits) == {
        "memory.max": "67108864", "memory.swap.max": "0", "memory.oom.group": "1",
        "cpu.max": "50000 100000", "pids.max": "1024",
    }
    v1 = v1_files(limits)
    assert list(v1["memory"]) == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    assert v1["cpu"] == {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000"}
    assert v1["pids"] == {"pids.max": "1024"}
    assert v2_files(Limits(pids=7)) == {"pids.max": "7"}


def test_limits_of_a_task() -> None:
    class ResourceList:
        memory = "64Mi"
        cpu = None

    assert limits_of(ResourceList(), 1024) == Limits(memory=67108864, cpu_quota=None, pids=1024)
    assert limits_of(None, None) == Limits()


def test_oom_counters_and_own_cgroups() -> None:
    assert oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n") == 2  # v1 oom_control
    assert oom_kills("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n") == 1  # v2 memory.events
    assert oom_kills("low 0\n") == 0
    paths = own_paths("9:name=systemd:/\n4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/user.slice\n")
    assert paths["memory"] == "/a/b" and paths["cpu"] == "/c" and paths["cpuacct"] == "/c"
    assert paths[""] == "/user.slice"


def test_disk_caps(tmp_path: Path) -> None:
    tmp, artifacts = tmp_path / "tmp", tmp_path / "artifacts"
    (tmp / "deep").mkdir(parents=True)
    artifacts.mkdir()
    caps = DiskCaps(tmp_max=1000, output_max=100)
    assert caps.file_max > 1000
    (tmp / "deep" / "a").write_bytes(b"x" * 600)
    (artifacts / "input").write_bytes(b"y" * 500)
    assert over_cap(tmp, artifacts, caps, inputs_size=500) is None
    with (artifacts / "sparse").open("wb") as f:
        f.truncate(10**12)  # counts in full: it would be uploaded in full
    assert tree_size(artifacts) == 500 + 10**12
    reason, message = over_cap(tmp, artifacts, caps, inputs_size=500) or ("", "")
    assert reason == "OutputLimitExceeded" and "HELIOS_LOCAL_OUTPUT_MAX_BYTES" in message
    (tmp / "b").write_bytes(b"x" * 401)
    assert (over_cap(tmp, artifacts, caps, 500) or ("",))[0] == "TmpLimitExceeded"


async def test_uploader_refuses_a_huge_sparse_output_before_uploading(tmp_path: Path) -> None:
    with (tmp_path / "out.bin").open("wb") as f:
        f.truncate(4 * 2**40)
    with pytest.raises(OutputTooLarge, match="HELIOS_LOCAL_OUTPUT_MAX_BYTES"):
        # No S3 client at all: the refusal must come before any request.
        await upload_outputs("d", "t", ["out.bin"], tmp_path, s3=None, bucket="b",
                             emit=lambda _: None, max_bytes=10 * 2**30)


def test_slirp4netns_attaches_by_namespace_path() -> None:
    argv = slirp_argv("slirp4netns", 42, 5, 6)
    assert "--disable-host-loopback" in argv and "--enable-sandbox" in argv
    assert argv[-2:] == ["/proc/42/ns/net", "tap0"]
    assert "--netns-type=path" in argv and "--ready-fd=5" in argv and "--exit-fd=6" in argv
    rootless = slirp_argv("slirp4netns", 42, 5, 6, userns_fd=9)
    assert "--userns-path=/proc/self/fd/9" in rootless and "--enable-sandbox" not in rootless
    assert child_pid(b'{"child-pid": 42, "net-namespace": 1}') == 42
    with pytest.raises(NetworkSetupError):
        child_pid(b"")


def test_sweep_removes_only_old_empty_cgroups(tmp_path: Path) -> None:
    old, young, busy = tmp_path / "old", tmp_path / "young", tmp_path / "busy"
    for folder in (old, young, busy):
        folder.mkdir()
    (busy / "cgroup.procs").write_text("123\n")  # like a cgroup with a process: rmdir fails
    for folder in (old, busy):
        os.utime(folder, (0, 0))
    assert Cgroups(version=1, parents={"pids": tmp_path}).sweep(min_age_s=60) == 1
    assert not old.exists() and young.exists() and busy.exists()
