"""A raw Kafka-protocol connection for tests that must control exactly what is on the wire and
when: a long-poll Fetch parked at the broker, a JoinGroup left waiting for a rebalance.

Requests are hand-encoded at versions both Sluice and Apache Kafka 4.x accept (non-flexible
versions, so no tagged fields): Produce v3, Fetch v4, JoinGroup v2, ApiVersions v0. `read_by_peer()` tells
from /proc/net/tcp when the broker has read everything sent on this connection (its end's
receive queue is empty), which is the positive evidence a test needs before it acts on "the
request is parked there now".
"""

from __future__ import annotations

import socket
import struct
import time


def _str(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _bytes(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


class RawConn:
    def __init__(self, port: int, host: str = "127.0.0.1", client_id: str = "raw-test"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.port = port
        self.client_id = client_id
        self.next_cid = 1
        self.buf = b""
        self.eof = False  # the broker closed the connection (seen by read)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- framing ---------------------------------------------------------------------------
    def send(self, api_key: int, version: int, body: bytes) -> int:
        cid = self.next_cid
        self.next_cid += 1
        frame = struct.pack(">hhi", api_key, version, cid) + _str(self.client_id) + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        return cid

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        """(correlation id, response body) of the next response; None on EOF (then `eof` is
        set) or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">i", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    frame, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return struct.unpack(">i", frame[:4])[0], frame[4:]
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                self.eof = True
                return None
            if not d:
                self.eof = True
                return None
            self.buf += d

    # -- requests --------------------------------------------------------------------------
    def api_versions(self, timeout: float = 10) -> bool:
        """ApiVersions v0; True when answered."""
        cid = self.send(18, 0, b"")
        r = self.read(timeout)
        return r is not None and r[0] == cid

    def produce(self, topic: str, partition: int, batch: bytes, acks: int = -1,
                timeout_ms: int = 30000) -> int:
        """Sends a Produce v3 of one record batch (does not wait); returns its correlation id."""
        body = _str(None) + struct.pack(">hi", acks, timeout_ms)
        body += struct.pack(">i", 1) + _str(topic)
        body += struct.pack(">i", 1) + struct.pack(">i", partition) + _bytes(batch)
        return self.send(0, 3, body)

    def fetch(self, topic: str, partition: int, offset: int, max_wait_ms: int,
              min_bytes: int = 1) -> int:
        """Sends a Fetch v4 (does not wait for the answer); returns its correlation id."""
        body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, 1 << 20, 0)
        body += struct.pack(">i", 1) + _str(topic)
        body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, 1 << 20)
        return self.send(1, 4, body)

    def join_group(self, group: str, member_id: str = "", session_timeout_ms: int = 30000,
                   rebalance_timeout_ms: int = 60000) -> int:
        """Sends a JoinGroup v2 for a consumer (range, empty subscription metadata)."""
        body = _str(group) + struct.pack(">ii", session_timeout_ms, rebalance_timeout_ms)
        body += _str(member_id) + _str("consumer")
        meta = struct.pack(">h", 0) + struct.pack(">i", 0) + _bytes(b"")  # v0 subscription
        body += struct.pack(">i", 1) + _str("range") + _bytes(meta)
        return self.send(11, 2, body)

    # -- what the broker has read ----------------------------------------------------------
    def read_by_peer(self, timeout: float = 15.0) -> None:
        """Waits until the broker's end of this connection has no unread bytes: it has read
        every request sent so far. Raises TimeoutError otherwise."""
        local = self.sock.getsockname()[1]
        deadline = time.monotonic() + timeout
        while True:
            q = peer_rx_queue(local, self.port)
            if q == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker did not read its socket (rx_queue {q})")
            time.sleep(0.01)


def peer_rx_queue(client_port: int, broker_port: int) -> int | None:
    """Bytes waiting unread in the receive queue of the broker's socket for the loopback
    connection client_port -> broker_port (from /proc/net/tcp{,6}); None if not found."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) < 5:
                        continue
                    lport = int(parts[1].rsplit(":", 1)[1], 16)
                    rport = int(parts[2].rsplit(":", 1)[1], 16)
                    if lport == broker_port and rport == client_port:
                        return int(parts[4].split(":")[1], 16)
        except FileNotFoundError:
            continue
    return None


def record_batch(values: list[bytes], producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1) -> bytes:
    """A v2 record batch of `values` (no key, no compression), built by kafka-python."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                  producer_id=producer_id, producer_epoch=producer_epoch,
                                  base_sequence=base_sequence, batch_size=1 << 20)
    now = int(time.time() * 1000)
    for i, v in enumerate(values):
        b.append(i, timestamp=now, key=None, value=v, headers=[])
    return bytes(b.build())


def produce_v3_partition(body: bytes) -> tuple[int, int]:
    """(error code, base offset) of the single partition of a Produce v3 answer."""
    i = 0
    (topics,) = struct.unpack_from(">i", body, i)
    i += 4
    assert topics == 1, topics
    (n,) = struct.unpack_from(">h", body, i)
    i += 2 + n
    (parts,) = struct.unpack_from(">i", body, i)
    i += 4
    assert parts == 1, parts
    _, err, base = struct.unpack_from(">ihq", body, i)
    return err, base


def fetch_v4_partition(body: bytes) -> tuple[int, int, bytes]:
    """(error code, high watermark, records) of the single partition of a Fetch v4 answer."""
    i = 4  # throttle_time_ms
    (topics,) = struct.unpack_from(">i", body, i)
    i += 4
    assert topics == 1, topics
    (n,) = struct.unpack_from(">h", body, i)
    i += 2 + n
    (parts,) = struct.unpack_from(">i", body, i)
    i += 4
    assert parts == 1, parts
    _, err, hw, _lso = struct.unpack_from(">ihqq", body, i)
    i += 4 + 2 + 8 + 8
    (aborted,) = struct.unpack_from(">i", body, i)
    i += 4 + max(aborted, 0) * 16
    (size,) = struct.unpack_from(">i", body, i)
    i += 4
    return err, hw, body[i:i + max(size, 0)]
