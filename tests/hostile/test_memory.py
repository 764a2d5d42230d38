"""Memory a client can make the broker spend is bounded (`queued.max.request.bytes`).

One broker with a 64 MiB pool (`queued.max.request.bytes=67108864`, so a second pool of the
same size bounds fetch responses in flight) is attacked while a real client works:

- 200 connections each declare a Produce frame of ~100 MiB and trickle 1 MiB of it;
- 16 connections fetch every partition of a 16 MiB topic over and over with `max_bytes` and
  `partition_max_bytes` at 2^31-1 (reading their answers);
- meanwhile confluent-kafka produces 2,000 records (acks=all) and consumes them back.

The bound: the broker's peak RSS stays below its RSS before the attack plus 192 MiB (the two
64 MiB pools, plus 64 MiB for one oversized batch per partition answered beyond its lease, the
connections' own buffers and allocator slack). Without the pools the same attack holds about
200 MiB of trickled frames plus up to 16 fetches x 16 MiB of responses at once. The real
client's work must complete, and the trickling connections are closed after
`connections.max.idle.ms` (set to 20 s here) because their frames never complete.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "soak"))
from broker import Broker  # noqa: E402

pytestmark = pytest.mark.hostile

MIB = 1024 * 1024
POOL = 64 * MIB
TRICKLERS = 200
DECLARED = 100 * MIB - 16
TRICKLED = 1 * MIB
FETCHERS = 16
PARTITIONS = 8
FAT_BYTES = 16 * MIB
BOUND = 192 * MIB
IDLE_MS = 20_000


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fetch_v4(topic: str, partitions: int, correlation_id: int) -> bytes:
    """A Fetch v4 request asking for everything of every partition from offset 0."""
    client = b"hostile"
    t = topic.encode()
    body = struct.pack(">hhih", 1, 4, correlation_id, len(client)) + client
    body += struct.pack(">iiiib", -1, 100, 1, 2**31 - 1, 0)
    body += struct.pack(">ih", 1, len(t)) + t + struct.pack(">i", partitions)
    for p in range(partitions):
        body += struct.pack(">iqi", p, 0, 2**31 - 1)
    return struct.pack(">i", len(body)) + body


CHUNK = b"\0" * (64 * 1024)


def trickle(tricklers: list[list]) -> None:
    """Sends a little more of each trickler's frame, as far as its socket takes it."""
    for t in tricklers:
        s, sent = t
        if sent < TRICKLED:
            try:
                t[1] += s.send(CHUNK)
            except OSError:  # BlockingIOError included: the broker is not reading it
                pass


def read_frame(s: socket.socket) -> int:
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    n = struct.unpack(">i", head)[0]
    left = n
    while left:
        chunk = s.recv(min(left, MIB))
        if not chunk:
            raise ConnectionError("closed")
        left -= len(chunk)
    return n


def test_trickled_frames_and_huge_fetches_stay_bounded():
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    b = Broker(extra_args=["--set", f"queued.max.request.bytes={POOL}",
                           "--set", f"connections.max.idle.ms={IDLE_MS}"])
    stop = threading.Event()
    try:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        fat, real = f"fat-{uuid.uuid4().hex[:6]}", f"real-{uuid.uuid4().hex[:6]}"
        for f in a.create_topics([NewTopic(fat, num_partitions=PARTITIONS, replication_factor=1),
                                  NewTopic(real, num_partitions=1, replication_factor=1)]).values():
            f.result(30)
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20,
                      "compression.type": "none"})
        for i in range(FAT_BYTES // (16 * 1024)):
            p.produce(fat, value=os.urandom(16 * 1024), partition=i % PARTITIONS)
            p.poll(0)
        assert p.flush(60) == 0
        pid = b.proc.pid
        time.sleep(1.0)
        before = rss(pid)
        peak = [before]

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], rss(pid))
                except (FileNotFoundError, AssertionError):
                    return
                time.sleep(0.1)

        fetched = [0]
        fetch_errors: list[str] = []

        def fetcher(k: int):
            try:
                with socket.create_connection(("127.0.0.1", b.port), timeout=30) as s:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        s.sendall(fetch_v4(fat, PARTITIONS, n))
                        fetched[0] += read_frame(s)
            except OSError as e:
                if not stop.is_set():
                    fetch_errors.append(f"fetcher {k}: {e}")

        threads = [threading.Thread(target=sample, daemon=True)]
        threads += [threading.Thread(target=fetcher, args=(k,), daemon=True)
                    for k in range(FETCHERS)]
        for t in threads:
            t.start()
        # The tricklers: a ~100 MiB Produce frame declared, 1 MiB of it sent.
        tricklers = []
        for _ in range(TRICKLERS):
            s = socket.create_connection(("127.0.0.1", b.port), timeout=30)
            s.setblocking(False)
            try:
                s.send(struct.pack(">i", DECLARED))
            except BlockingIOError:
                pass
            tricklers.append([s, 0])
        # The real client works meanwhile.
        t0 = time.monotonic()
        done = {"acked": 0}
        prod = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(2000):
            prod.produce(real, value=f"v{i}".encode(),
                         on_delivery=lambda e, m: done.__setitem__("acked", done["acked"] + (e is None)))
            prod.poll(0)
            if i % 100 == 0:
                trickle(tricklers)
        assert prod.flush(120) == 0
        assert done["acked"] == 2000
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"g-{real}",
                      "auto.offset.reset": "earliest"})
        c.subscribe([real])
        got = 0
        deadline = time.monotonic() + 120
        while got < 2000 and time.monotonic() < deadline:
            trickle(tricklers)
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got += 1
        c.close()
        real_s = time.monotonic() - t0
        assert got == 2000, f"the real consumer read {got} of 2000 under attack"
        assert fetched[0] > FAT_BYTES, "the hostile fetchers got data"
        assert not fetch_errors, fetch_errors[:3]
        stop.set()
        for t in threads:
            t.join(10)
        growth = peak[0] - before
        sent = sum(t[1] for t in tricklers)
        print(f"\nRSS before {before / MIB:.0f} MiB, peak {peak[0] / MIB:.0f} MiB "
              f"(+{growth / MIB:.0f} MiB, bound {BOUND / MIB:.0f}); trickled {sent / MIB:.0f} MiB "
              f"over {TRICKLERS} connections; fetched {fetched[0] / MIB:.0f} MiB; real client "
              f"{real_s:.1f} s")
        assert sent >= 20 * MIB, "the attack did not get its bytes out"
        assert growth < BOUND, f"RSS grew by {growth / MIB:.0f} MiB under attack"
        # Frames that never complete are closed after connections.max.idle.ms.
        def closed(s: socket.socket) -> bool:
            try:
                return s.recv(1) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True

        deadline = time.monotonic() + IDLE_MS / 1000 + 60
        while time.monotonic() < deadline and not all(closed(t[0]) for t in tricklers):
            time.sleep(0.5)
        assert all(closed(t[0]) for t in tricklers), "trickling connections left open"
        for t in tricklers:
            t[0].close()
    finally:
        stop.set()
        b.stop()
