"""`HELIOS_LOCAL_NETWORK=outbound`: internet access for one sandbox through slirp4netns.

The sandbox keeps its own network namespace; slirp4netns gives it a `tap0` whose
traffic it replays through ordinary sockets of the host (a user-mode TCP/IP stack), with
`--disable-host-loopback` so 10.0.2.2 does not lead to the host's loopback services.
Sequence: bwrap starts blocked (`--block-fd`) and reports its child's pid (`--info-fd`);
slirp4netns attaches to that pid's namespace and says when the link is up
(`--ready-fd`); only then is the task's command let go, so its first connection
already has a network. Closing `--exit-fd` stops slirp4netns.

Caveat (documented): services bound to a non-loopback address of the host remain
reachable through the host's own sockets, as from any other machine on its network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil

DNS = "10.0.2.3"  # slirp4netns's built-in DNS forwarder
ATTACH_TIMEOUT_S = 15.0


class NetworkSetupError(Exception):
    pass


def slirp_argv(slirp: str, pid: int, ready_fd: int, exit_fd: int, *, as_root: bool) -> list[str]:
    """slirp4netns for the sandbox whose first process is `pid`. As root it opens
    /dev/net/tun itself and then drops its capabilities (`--enable-sandbox`); as an
    ordinary user it joins the sandbox's user namespace to be allowed to."""
    out = [slirp, "--configure", "--mtu=65520", "--disable-host-loopback",
           f"--ready-fd={ready_fd}", f"--exit-fd={exit_fd}"]
    out += ["--enable-sandbox"] if as_root else [f"--userns-path=/proc/{pid}/ns/user"]
    return [*out, str(pid), "tap0"]


def child_pid(info: bytes) -> int:
    """The sandbox's first process, from bwrap's `--info-fd` JSON."""
    try:
        return int(json.loads(info)["child-pid"])
    except (ValueError, KeyError, TypeError) as exc:
        raise NetworkSetupError(f"bwrap reported no sandbox pid: {info[:200]!r}") from exc


class OutboundLink:
    """The pipes between Helios, one bwrap and its slirp4netns."""

    def __init__(self) -> None:
        self.info_r, self.info_w = os.pipe()
        self.block_r, self.block_w = os.pipe()
        self.exit_w: int | None = None
        self.proc: asyncio.subprocess.Process | None = None

    def bwrap_opts(self) -> list[str]:
        return ["--info-fd", str(self.info_w), "--block-fd", str(self.block_r)]

    def child_fds(self) -> tuple[int, int]:
        return self.info_w, self.block_r

    def spawned(self) -> None:
        """bwrap holds its ends now: drop ours, so EOF means bwrap is gone."""
        for fd in (self.info_w, self.block_r):
            with contextlib.suppress(OSError):
                os.close(fd)

    async def attach(self) -> None:
        """Connect the blocked sandbox, then let its command start."""
        slirp = shutil.which("slirp4netns")
        if slirp is None:
            raise NetworkSetupError("HELIOS_LOCAL_NETWORK=outbound needs slirp4netns "
                                    "(apt-get install slirp4netns)")
        async with asyncio.timeout(ATTACH_TIMEOUT_S):
            pid = child_pid(await asyncio.to_thread(_read_all, self.info_r))
            ready_r, ready_w = os.pipe()
            exit_r, self.exit_w = os.pipe()
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *slirp_argv(slirp, pid, ready_w, exit_r, as_root=os.geteuid() == 0),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL, pass_fds=(ready_w, exit_r),
                )
            finally:
                os.close(ready_w)
                os.close(exit_r)
            try:
                if await asyncio.to_thread(os.read, ready_r, 1) != b"1":
                    raise NetworkSetupError("slirp4netns could not set up the task's network")
            finally:
                os.close(ready_r)
        os.write(self.block_w, b"1")

    async def close(self) -> None:
        for fd in (self.info_r, self.block_w, self.exit_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.exit_w = None
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5.0)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data
