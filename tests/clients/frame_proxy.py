"""A Kafka-frame-aware TCP proxy for fault injection between a client and one broker.

Unlike tests/fault/proxy.py (which cuts whole nodes off a cluster), this proxy understands the
Kafka framing of one client connection: it pairs each response with its request by correlation
id, so a test can let the broker handle a request and then drop the connection before the
client reads the answer ("appended, but the client does not know it").

Clients learn broker addresses from Metadata and FindCoordinator answers; so that they keep
talking through the proxy, every answer but a Fetch has the broker's `host` + `port` (the
string followed by the big-endian int32 port, the same bytes in every version of those
responses) replaced by the proxy's port. Same length, no checksum over it: nothing else moves.
Works in front of Sluice or Apache Kafka alike.

    p = FrameProxy(broker_port)
    p.drop_response_once(lambda req: req.api_key == 0 and b"my-topic" in req.body)
    ... client at 127.0.0.1:{p.port} ...
    p.requests  # every request seen: Request(api_key, version, correlation_id, body, conn)
    p.close()
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass

FETCH = 1
PRODUCE = 0


@dataclass
class Request:
    api_key: int
    version: int
    correlation_id: int
    body: bytes        # the whole frame after the length prefix (header included)
    conn: int          # connection number, 1-based, in accept order
    dropped: bool = False  # its answer was withheld and the connection cut


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FrameProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1", target_host: str = "127.0.0.1"):
        self.host, self.target_host, self.target_port = host, target_host, target_port
        self.port = _free_port()
        self.requests: list[Request] = []
        self.conns = 0
        self._drop = None            # predicate(Request) -> bool, used once
        self._lock = threading.Lock()
        self._addr_from = target_host.encode() + struct.pack(">i", target_port)
        self._addr_to = host.encode() + struct.pack(">i", self.port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="frame-proxy", daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def drop_response_once(self, predicate) -> None:
        """The next request matching `predicate` goes to the broker; its answer does not come
        back: when it arrives the proxy closes both sides of that connection."""
        with self._lock:
            self._drop = predicate

    def matching(self, predicate) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if predicate(r)]

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.host, self.port)

    async def _handle(self, creader, cwriter) -> None:
        try:
            ureader, uwriter = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            cwriter.transport.abort()
            return
        with self._lock:
            self.conns += 1
            conn = self.conns
        pending: dict[int, Request] = {}
        drop_cids: set[int] = set()
        done = asyncio.Event()

        def cut():
            cwriter.transport.abort()
            uwriter.transport.abort()
            done.set()

        async def upstream():
            try:
                while True:
                    frame = await _read_frame(creader)
                    if frame is None:
                        break
                    api, ver, cid = struct.unpack(">hhi", frame[:8])
                    req = Request(api, ver, cid, frame, conn)
                    with self._lock:
                        self.requests.append(req)
                        if self._drop is not None and self._drop(req):
                            self._drop = None
                            req.dropped = True
                            drop_cids.add(cid)
                    pending[cid] = req
                    uwriter.write(struct.pack(">i", len(frame)) + frame)
                    await uwriter.drain()
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                pass
            cut()

        async def downstream():
            try:
                while True:
                    frame = await _read_frame(ureader)
                    if frame is None:
                        break
                    cid = struct.unpack(">i", frame[:4])[0]
                    req = pending.pop(cid, None)
                    if cid in drop_cids:
                        break  # the broker has answered; the client never sees it
                    if req is not None and req.api_key != FETCH and self._addr_from in frame:
                        frame = frame.replace(self._addr_from, self._addr_to)
                    cwriter.write(struct.pack(">i", len(frame)) + frame)
                    await cwriter.drain()
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                pass
            cut()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        await done.wait()
        for t in tasks:
            t.cancel()

    def close(self) -> None:
        async def stop():
            self.server.close()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _read_frame(reader) -> bytes | None:
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return None
    (n,) = struct.unpack(">i", head)
    return await reader.readexactly(n)


# -- Produce request parsing (v3..v13), enough to identify the record batches it carries ---------

def _uvarint(b: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        x = b[i]
        i += 1
        value |= (x & 0x7F) << shift
        if not x & 0x80:
            return value, i
        shift += 7


def _skip_tagged(b: bytes, i: int) -> int:
    n, i = _uvarint(b, i)
    for _ in range(n):
        _, i = _uvarint(b, i)
        size, i = _uvarint(b, i)
        i += size
    return i


@dataclass(frozen=True)
class BatchId:
    partition: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: int


def produce_batches(req: Request) -> list[BatchId]:
    """The (partition, producer id, epoch, base sequence, record count) of every v2 record batch
    in a Produce request."""
    b, v = req.body, req.version
    flexible = v >= 9
    i = 8
    (client_len,) = struct.unpack_from(">h", b, i)
    i += 2 + max(client_len, 0)
    if flexible:
        i = _skip_tagged(b, i)
    # transactional_id
    if flexible:
        n, i = _uvarint(b, i)
        i += max(n - 1, 0)
    else:
        (n,) = struct.unpack_from(">h", b, i)
        i += 2 + max(n, 0)
    i += 2 + 4  # acks, timeout_ms
    out = []

    def array_len(i):
        if flexible:
            n, i = _uvarint(b, i)
            return n - 1, i
        return struct.unpack_from(">i", b, i)[0], i + 4

    topics, i = array_len(i)
    for _ in range(topics):
        if v >= 13:
            i += 16  # topic id
        elif flexible:
            n, i = _uvarint(b, i)
            i += n - 1
        else:
            (n,) = struct.unpack_from(">h", b, i)
            i += 2 + n
        parts, i = array_len(i)
        for _ in range(parts):
            (partition,) = struct.unpack_from(">i", b, i)
            i += 4
            if flexible:
                n, i = _uvarint(b, i)
                size = n - 1
            else:
                (size,) = struct.unpack_from(">i", b, i)
                i += 4
            records = b[i:i + max(size, 0)]
            i += max(size, 0)
            j = 0
            while j + 61 <= len(records):
                (length,) = struct.unpack_from(">i", records, j + 8)
                pid, epoch, seq, count = struct.unpack_from(">qhii", records, j + 43)
                out.append(BatchId(partition, pid, epoch, seq, count))
                j += 12 + length
            if flexible:
                i = _skip_tagged(b, i)
        if flexible:
            i = _skip_tagged(b, i)
    return out
