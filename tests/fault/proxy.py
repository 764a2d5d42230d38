"""A fault-injecting TCP proxy (asyncio, loopback only) between cluster nodes.

Each `Route` listens on a loopback port and forwards to one node's real port. A route knows its
destination node; its source node is either fixed (a per-(source, destination) route, e.g. the
controller quorum where each node is given its own proxy addresses for its peers) or found per
connection (a per-destination route, e.g. an inter-broker listener advertised at a proxy port
that every node dials): the proxy looks the connecting socket up in /proc/net/tcp{,6} and finds
the node process that owns its inode among the node pids it is given. A connection whose source
cannot be identified has source None.

`isolate(x)`: every connection into x or (identifiably) out of x is closed now, and new ones are
accepted and closed at once, until `heal()`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Route:
    listen_port: int
    target_port: int
    dst: int
    src: int | None = None  # fixed source node; None: identify per connection
    kind: str = ""
    conns: set = field(default_factory=set)
    server: object = None
    accepted: int = 0
    refused: int = 0
    cut: int = 0
    unidentified: int = 0


def _hexaddr_port(s: str) -> int:
    return int(s.rsplit(":", 1)[1], 16)


def socket_inode(local_port: int, remote_port: int) -> int | None:
    """Inode of the loopback TCP socket local_port -> remote_port (from /proc/net/tcp*)."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10:
                        continue
                    if (_hexaddr_port(parts[1]) == local_port
                            and _hexaddr_port(parts[2]) == remote_port):
                        return int(parts[9]) or None
        except FileNotFoundError:
            continue
    return None


def pid_owning_inode(inode: int, pids: dict[int, int]) -> int | None:
    """The node (key of `pids`, {node: pid}) whose process holds socket inode `inode`."""
    want = f"socket:[{inode}]"
    for node, pid in pids.items():
        if pid is None:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == want:
                    return node
            except OSError:
                continue
    return None


class FaultProxy:
    """Runs its routes on an asyncio loop in a daemon thread."""

    def __init__(self, node_pids=None, host: str = "127.0.0.1"):
        self.host = host
        self.routes: list[Route] = []
        self.isolated: set[int] = set()
        self.node_pids = node_pids or (lambda: {})  # callable -> {node: pid}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fault-proxy", daemon=True)
        self.thread.start()

    def add_route(self, listen_port: int, target_port: int, dst: int, src: int | None = None,
                  kind: str = "") -> Route:
        r = Route(listen_port, target_port, dst, src, kind)
        fut = asyncio.run_coroutine_threadsafe(self._serve(r), self.loop)
        fut.result(10)
        self.routes.append(r)
        return r

    async def _serve(self, r: Route) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, r.listen_port))
        r.server = await asyncio.start_server(lambda rd, wr: self._handle(r, rd, wr), sock=sock)

    def _blocked(self, src: int | None, dst: int) -> bool:
        return dst in self.isolated or (src is not None and src in self.isolated)

    async def _handle(self, r: Route, reader, writer) -> None:
        src = r.src
        if src is None:
            peer = writer.get_extra_info("peername")
            inode = await self.loop.run_in_executor(None, socket_inode, peer[1], r.listen_port)
            if inode is not None:
                src = await self.loop.run_in_executor(None, pid_owning_inode, inode, self.node_pids())
            if src is None:
                r.unidentified += 1
        if self._blocked(src, r.dst):
            r.refused += 1
            writer.transport.abort()
            return
        try:
            ureader, uwriter = await asyncio.open_connection(self.host, r.target_port)
        except OSError:
            writer.transport.abort()
            return
        r.accepted += 1
        conn = (src, writer, uwriter)
        r.conns.add(conn)
        try:
            await asyncio.gather(self._pipe(reader, uwriter), self._pipe(ureader, writer))
        finally:
            r.conns.discard(conn)
            for w in (writer, uwriter):
                w.transport.abort()

    async def _pipe(self, reader, writer) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

    # -- faults ---------------------------------------------------------------------------
    def isolate(self, node: int) -> None:
        def do():
            self.isolated.add(node)
            for r in self.routes:
                for conn in list(r.conns):
                    src, w, uw = conn
                    if self._blocked(src, r.dst):
                        r.cut += 1
                        w.transport.abort()
                        uw.transport.abort()
        self.loop.call_soon_threadsafe(do)

    def heal(self) -> None:
        self.loop.call_soon_threadsafe(self.isolated.clear)

    def stats(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.routes:
            s = out.setdefault(r.kind or "route", {"accepted": 0, "refused": 0, "cut": 0, "unidentified": 0})
            s["accepted"] += r.accepted
            s["refused"] += r.refused
            s["cut"] += r.cut
            s["unidentified"] += r.unidentified
        return out

    def close(self) -> None:
        async def stop():
            for r in self.routes:
                if r.server is not None:
                    r.server.close()
                for _, w, uw in list(r.conns):
                    w.transport.abort()
                    uw.transport.abort()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
