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
import fcntl
import json
import os
import shutil

DNS = "10.0.2.3"  # slirp4netns's built-in DNS forwarder
ATTACH_TIMEOUT_S = 15.0


class NetworkSetupError(Exception):
    pass


NS_GET_USERNS = 0xB701  # ioctl: the user namespace that owns a namespace


def slirp_argv(slirp: str, pid: int, ready_fd: int, exit_fd: int,
               userns_fd: int | None = None) -> list[str]:
    """slirp4netns for the sandbox whose first process is `pid`, by namespace path:
    given a pid, slirp4netns would also join that pid's current user namespace, which
    bwrap replaces by a nested one (for uid 1000) while it sets up, and from there the
    network namespace, owned by the outer one, cannot be entered. As root it opens
    /dev/net/tun itself, then drops its capabilities (`--enable-sandbox`); as an
    ordinary user it joins the namespace's owner (`userns_fd`) to be allowed to."""
    out = [slirp, "--configure", "--mtu=65520", "--disable-host-loopback",
           f"--ready-fd={ready_fd}", f"--exit-fd={exit_fd}", "--netns-type=path"]
    if userns_fd is None:
        out.append("--enable-sandbox")
    else:
        out.append(f"--userns-path=/proc/self/fd/{userns_fd}")
    return [*out, f"/proc/{pid}/ns/net", "tap0"]


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
            userns = None if os.geteuid() == 0 else _owner_userns(pid)
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *slirp_argv(slirp, pid, ready_w, exit_r, userns),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    pass_fds=(ready_w, exit_r) if userns is None else (ready_w, exit_r, userns),
                )
            finally:
                for fd in (ready_w, exit_r, userns):
                    if fd is not None:
                        os.close(fd)
            try:
                if await asyncio.to_thread(os.read, ready_r, 1) != b"1":
                    raise NetworkSetupError(
                        f"slirp4netns could not set up the task's network: {await self._why()}")
            finally:
                os.close(ready_r)
        os.write(self.block_w, b"1")

    async def _why(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        with contextlib.suppress(TimeoutError):
            err = await asyncio.wait_for(self.proc.stderr.read(2000), 2.0)
            return err.decode(errors="replace").strip().replace("\n", "; ")
        return "no reason given"

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


def _owner_userns(pid: int) -> int:
    netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(netns, NS_GET_USERNS)
    finally:
        os.close(netns)


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data
