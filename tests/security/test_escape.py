"""Escape attempts from inside a real sandboxed task, each refused with its documented
reason, the host unchanged afterwards.

Every test runs one real attempt (bubblewrap, the dropped task user, cgroups, disk
caps) with the default network mode; no part of the sandbox is mocked.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from helios import objects
from helios.executors.local.cgroups import Cgroups
from helios.settings import Settings
from tests.security.support import run_task
from tests.stack import running_stack

LISTEN = "0A"


def needs_cgroup(controller: str) -> None:
    # Where the host cannot enforce a limit Helios says so at start-up; nothing to test.
    if controller not in Cgroups.probe().parents:
        pytest.skip(f"the cgroup {controller} controller is not usable here")


def host_listeners() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket listening on this host, from /proc/net/tcp*."""
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            raw, port = fields[1].split(":")
            packed = bytes.fromhex(raw)
            # The kernel prints each 32-bit word in host (little-endian) order.
            packed = b"".join(packed[i:i + 4][::-1] for i in range(0, len(packed), 4))
            found.add((str(ipaddress.ip_address(packed)), int(port, 16)))
    return found


def listening_ports_of(program: str) -> set[int]:
    """TCP ports listened on by processes named `program` (socket inodes of their fds)."""
    inodes: set[str] = set()
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "comm").read_text().strip() != program:
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].split(":")[1], 16))
    return ports


def host_addresses() -> set[str]:
    """The host's own IPv4 addresses (what a wildcard listener answers on)."""
    lines = Path("/proc/net/fib_trie").read_text().splitlines()
    return {lines[i - 1].split()[-1] for i, line in enumerate(lines)
            if "/32 host LOCAL" in line and i > 0}


def targets(listeners: set[tuple[str, int]]) -> list[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for address, port in listeners:
        ip = ipaddress.ip_address(address)
        if ip.is_unspecified:
            out.update((a, port) for a in {*host_addresses(), "127.0.0.1"})
            if ip.version == 6:
                out.add(("::1", port))
        elif ip.version == 6 and ip.ipv4_mapped:
            out.add((str(ip.ipv4_mapped), port))
        else:
            out.add((address, port))
    return sorted(out)


async def test_no_listener_of_the_host_is_reachable(settings: Settings, s3: Any,
                                                    tmp_path: Path) -> None:
    async with running_stack(settings) as stack:  # the API and metrics listen too
        listeners = host_listeners()
        api_port = int(stack.api_url.rsplit(":", 1)[1])
        assert any(port == api_port for _, port in listeners)
        s3_port = int(settings.s3.endpoint_url.rsplit(":", 1)[1])  # type: ignore[union-attr]
        assert any(port == s3_port for _, port in listeners)
        # SeaweedFS's internal ports (master, volume, filer, gRPC), NATS and Valkey too.
        weed = listening_ports_of("weed")
        assert len(weed) > 1, weed
        servers = weed | listening_ports_of("nats-server") | listening_ports_of("valkey-server")
        probes = targets(listeners)
        assert servers <= {port for _, port in probes}
        lines = "\n".join(f"{a} {p}" for a, p in probes)
        script = (
            "n=0; while read -r a p; do n=$((n+1)); "
            "if timeout 3 bash -c \"exec 3<>/dev/tcp/$a/$p\" 2>/dev/null; "
            "then echo \"REACHED $a:$p\"; fi; done <<'EOF'\n" + lines + "\nEOF\n"
            "echo \"tried $n\"; echo \"listeners seen: $(awk 'NR>1 && $4==\"0A\"' "
            "/proc/net/tcp /proc/net/tcp6 | wc -l)\""
        )
        ran = await run_task(settings, s3, tmp_path, script)
    assert ran.outcome.ok, ran.text
    assert f"tried {len(probes)}" in ran.lines
    assert not [line for line in ran.lines if line.startswith("REACHED")], ran.text
    assert "listeners seen: 0" in ran.lines  # the host's sockets are not even listed


async def test_unprivileged_user_and_an_image_like_root(settings: Settings, s3: Any,
                                                       tmp_path: Path) -> None:
    script = r"""
echo "uid=$(id -u) gid=$(id -g) user=$(id -un)"
cat /etc/shadow >/dev/null 2>&1 && echo "shadow readable" || echo "shadow refused"
cat /etc/gshadow >/dev/null 2>&1 && echo "gshadow readable" || echo "gshadow refused"
[ -e /opt ] && echo "opt visible" || echo "opt absent"
echo "usr-local: [$(ls -A /usr/local)]"
grep -c . /proc/self/status >/dev/null && grep '^CapEff' /proc/self/status
env | grep '^HELIOS_'
echo x > /artifacts/mine.txt
"""
    ran = await run_task(settings, s3, tmp_path, script, keep=True)
    assert ran.outcome.ok, ran.text
    assert "uid=1000 gid=1000 user=task" in ran.lines
    assert {"shadow refused", "gshadow refused", "opt absent", "usr-local: []"} <= set(ran.lines)
    assert "CapEff:\t0000000000000000" in ran.lines
    helios = dict(line.split("=", 1) for line in ran.lines if line.startswith("HELIOS_"))
    assert helios["HELIOS_ARTIFACTS_DIR"] == "/artifacts"
    assert "HELIOS_CACHE_DIR" not in helios  # the host's cache folder means nothing inside
    assert not [v for v in helios.values() if str(tmp_path) in v]
    # On the host, the task's file belongs to the unprivileged task user, not root.
    if os.geteuid() == 0:
        assert (ran.workspace / "artifacts" / "mine.txt").stat().st_uid == 65534


async def test_writes_outside_artifacts_leave_the_host_unchanged(settings: Settings, s3: Any,
                                                                 tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("untouched\n")
    watched = [Path("/"), Path("/etc"), Path("/usr/bin"), Path("/tmp"), tmp_path]
    before = {p: sorted(os.listdir(p)) for p in watched}
    paths = ["/escaped", "/etc/escaped", "/usr/bin/escaped", "/usr/local/escaped",
             "/run/escaped", "/dev/escaped", "/run/../escaped",
             "/proc/sys/kernel/hostname", str(sentinel), str(tmp_path / "escaped")]
    script = "\n".join(
        f"if (echo pwned > '{p}') 2>/dev/null; then echo 'WROTE {p}'; else echo 'refused {p}'; fi"
        for p in paths
    ) + "\necho scratch > /tmp/escaped && echo 'tmp is private'"
    ran = await run_task(settings, s3, tmp_path, script)
    assert ran.outcome.ok, ran.text
    assert not [line for line in ran.lines if line.startswith("WROTE")], ran.text
    assert "tmp is private" in ran.lines
    assert sentinel.read_text() == "untouched\n"
    after = {p: sorted(os.listdir(p)) for p in watched}
    for path in watched:
        assert "escaped" not in after[path]
    assert after[Path("/")] == before[Path("/")] and after[Path("/etc")] == before[Path("/etc")]


async def test_process_count_is_capped(settings: Settings, s3: Any, tmp_path: Path) -> None:
    needs_cgroup("pids")
    script = r"""python3 - <<'EOF'
import os, signal
kids = []
try:
    for _ in range(2000):
        pid = os.fork()
        if pid == 0:
            signal.pause()
            os._exit(0)
        kids.append(pid)
except OSError as exc:
    print("fork refused:", exc.strerror)
print("started", len(kids))
for pid in kids:
    os.kill(pid, signal.SIGKILL)
EOF"""
    ran = await run_task(settings, s3, tmp_path, script)
    assert ran.outcome.ok, ran.text
    started = int(next(line for line in ran.lines if line.startswith("started ")).split()[1])
    assert started < 1024  # HELIOS_LOCAL_PIDS_MAX's default, the shell and python included
    assert "fork refused: Resource temporarily unavailable" in ran.lines


async def test_memory_limit_is_an_oom_kill(settings: Settings, s3: Any, tmp_path: Path) -> None:
    needs_cgroup("memory")
    ran = await run_task(settings, s3, tmp_path,
                         "python3 -c 'b = bytearray(1 << 30); print(\"allocated\", len(b))'",
                         resources={"limits": {"memory": "64Mi"}})
    assert not ran.outcome.ok
    assert ran.outcome.reason == "OOMKilled", ran.text
    assert "resources.limits.memory=64Mi" in (ran.outcome.message or "")
    assert "allocated" not in ran.text


async def test_tmp_is_disk_backed_and_capped(settings: Settings, s3: Any, tmp_path: Path) -> None:
    cap = 32 * 1024**2
    local = {"tmp_max_bytes": cap, "output_max_bytes": 8 * 1024**2}
    # One big file: stopped at once by the per-file limit (2 GiB asked).
    ran = await run_task(settings, s3, tmp_path, "df --output=fstype /tmp | tail -1; "
                         "dd if=/dev/zero of=/tmp/big bs=1M count=2048 status=none",
                         local=local)
    assert ran.outcome.reason == "TmpLimitExceeded", ran.text
    assert "HELIOS_LOCAL_TMP_MAX_BYTES" in (ran.outcome.message or "")
    assert "tmpfs" not in ran.lines
    assert not ran.workspace.exists()  # and the space is given back
    # Many small files, then idling: the watchdog kills the task long before its timeout.
    ran = await run_task(settings, s3, tmp_path / "small",
                         "for i in $(seq 40); do head -c 1048576 /dev/zero > /tmp/f$i; done; "
                         "sleep 120", local=local, timeoutSeconds=100)
    assert ran.outcome.reason == "TmpLimitExceeded", ran.text


async def test_huge_sparse_output_is_refused(settings: Settings, s3: Any, tmp_path: Path) -> None:
    ran = await run_task(settings, s3, tmp_path, "truncate -s 512M /artifacts/out.bin",
                         local={"output_max_bytes": 1024**2}, outputs=["out.bin"])
    assert ran.outcome.reason == "OutputLimitExceeded", ran.text
    assert "HELIOS_LOCAL_OUTPUT_MAX_BYTES" in (ran.outcome.message or "")
    listed = await s3.list_objects_v2(Bucket=settings.s3.bucket,
                                      Prefix=objects.output("x", "y", "z").split("/")[0])
    assert not [o for o in listed.get("Contents", []) if o["Key"].endswith("/out.bin")]
    # Past the per-file limit a sparse file cannot even be made.
    ran = await run_task(settings, s3, tmp_path / "huge", "truncate -s 4T /artifacts/out.bin",
                         outputs=["out.bin"])
    assert ran.outcome.reason == "FileSizeLimitExceeded", ran.outcome
    assert "HELIOS_LOCAL_OUTPUT_MAX_BYTES" in (ran.outcome.message or "")


async def test_outbound_network_still_keeps_host_loopback_out(settings: Settings, s3: Any,
                                                             tmp_path: Path) -> None:
    if shutil.which("slirp4netns") is None:
        pytest.skip("slirp4netns is not installed (run.sh installs it)")
    loopback = sorted({port for address, port in host_listeners()
                       if ipaddress.ip_address(address).is_loopback})
    # 10.0.2.2 is slirp4netns's gateway: the host's loopback unless disabled.
    lines = "\n".join(f"{a} {p}" for p in loopback for a in ("127.0.0.1", "10.0.2.2"))
    script = (
        "grep -q tap0 /proc/net/dev && echo 'has tap0'; cat /etc/resolv.conf; "
        "n=0; while read -r a p; do n=$((n+1)); "
        "if timeout 3 bash -c \"exec 3<>/dev/tcp/$a/$p\" 2>/dev/null; "
        "then echo \"REACHED $a:$p\"; fi; done <<'EOF'\n" + lines + "\nEOF\necho \"tried $n\""
    )
    ran = await run_task(settings, s3, tmp_path, script, local={"network": "outbound"})
    assert ran.outcome.ok, ran.text
    assert "has tap0" in ran.lines and "nameserver 10.0.2.3" in ran.lines
    assert f"tried {2 * len(loopback)}" in ran.lines
    assert not [line for line in ran.lines if line.startswith("REACHED")], ran.text


async def test_cpu_limit_is_a_quota(settings: Settings, s3: Any, tmp_path: Path) -> None:
    needs_cgroup("cpu")
    # A busy loop for one second of wall time gets at most its quota of CPU time. (Only an
    # upper bound is asserted: a loaded machine lowers the share, never raises it.)
    script = r"""python3 - <<'EOF'
import time
wall, cpu = time.monotonic(), time.process_time()
while time.monotonic() - wall < 1.0:
    pass
print("share %.2f" % ((time.process_time() - cpu) / (time.monotonic() - wall)))
EOF"""
    ran = await run_task(settings, s3, tmp_path, script, resources={"limits": {"cpu": "200m"}})
    assert ran.outcome.ok, ran.text
    share = float(next(line for line in ran.lines if line.startswith("share ")).split()[1])
    assert share < 0.45, share


def processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


async def test_no_process_outlives_its_task(settings: Settings, s3: Any, tmp_path: Path) -> None:
    marker = f"helios-escape-{os.getpid()}-{id(tmp_path)}"
    # A daemon in a session of its own, and a task that times out with children running.
    script = f"setsid bash -c 'exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 & echo started"
    ran = await run_task(settings, s3, tmp_path, script)
    assert ran.outcome.ok and "started" in ran.lines, ran.text
    assert processes_with(marker) == []
    ran = await run_task(settings, s3, tmp_path / "t",
                         f"(exec -a {marker} sleep 300) & (exec -a {marker} sleep 300) & wait",
                         timeoutSeconds=1)
    assert ran.outcome.reason == "DeadlineExceeded", ran.text
    assert processes_with(marker) == []
