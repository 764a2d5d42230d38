"""Requests parked at the broker are dropped when their client disconnects (ARCHITECTURE.md: a
long-poll Fetch or a JoinGroup waiting for a rebalance is raced against the peer closing its
socket). Judged from the broker's own `sluice_connections` gauge: the connection task, and what
it holds, must be gone within seconds, long before the parked request's own deadline (60 s).
Each request is sent over a raw connection (tests/clients/rawkafka.py), and the socket is closed
only once the broker has read it (so it is parked, not still unread in a socket buffer)."""

from __future__ import annotations

import re
import struct
import time
import urllib.request
import uuid

from rawkafka import RawConn

RELEASE_WITHIN_S = 10.0  # the parked requests below would hold their connection for 60 s


def connections(broker) -> int:
    with urllib.request.urlopen(f"http://{broker.http}/metrics", timeout=10) as r:
        m = re.search(r"^sluice_connections (\d+)", r.read().decode(), re.M)
    return int(m.group(1))


def wait_connections(broker, want: int, timeout: float, what: str) -> float:
    """Waits until the gauge reads `want`; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        n = connections(broker)
        if n == want:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: sluice_connections is {n} after {timeout}s, want {want}")
        time.sleep(0.05)


def test_parked_fetch_released_when_client_disconnects(broker):
    topic = f"disc-{uuid.uuid4().hex[:10]}"
    broker.cli("topics", "create", topic, "--partitions", "1")
    base = connections(broker)
    c = RawConn(broker.port)
    assert c.api_versions()
    cid = c.fetch(topic, 0, 0, max_wait_ms=60_000)
    c.read_by_peer()
    wait_connections(broker, base + 1, 10, "the fetching connection is open")
    assert c.read(0.5) is None and not c.eof, "the fetch at the log end was not parked"
    c.close()
    took = wait_connections(broker, base, RELEASE_WITHIN_S,
                            f"parked Fetch (cid {cid}, max_wait 60 s) after its client closed")
    print(f"released {took:.2f}s after the close")


def test_parked_join_group_released_when_client_disconnects(broker):
    group = f"disc-g-{uuid.uuid4().hex[:10]}"
    base = connections(broker)
    # Member A joins alone and then stays silent: it never rejoins, so the rebalance that B's
    # JoinGroup starts waits for A until the rebalance timeout (60 s).
    a = RawConn(broker.port, client_id="member-a")
    b = None
    try:
        a.join_group(group)
        ra = a.read(20)
        assert ra is not None, "first member's JoinGroup not answered"
        assert struct.unpack(">h", ra[1][4:6])[0] == 0, f"JoinGroup v2 error: {ra[1][:16].hex()}"
        b = RawConn(broker.port, client_id="member-b")
        cid = b.join_group(group)
        b.read_by_peer()
        wait_connections(broker, base + 2, 10, "both members' connections are open")
        assert b.read(0.5) is None and not b.eof, "B's JoinGroup was not parked"
        b.close()
        took = wait_connections(broker, base + 1, RELEASE_WITHIN_S,
                                f"parked JoinGroup (cid {cid}) after its client closed")
        print(f"released {took:.2f}s after the close")
        # The broker keeps serving the group's other member on its connection.
        assert a.api_versions()
    finally:
        a.close()
        if b is not None:
            b.close()


def test_parked_fetch_released_when_client_closes_after_pipelining(broker):
    """The same, with one more request pipelined behind the parked Fetch before the client goes
    away (a client that pipelines, or one that crashes mid-write). Fails today: the peer-close
    race (server.rs peer_closed) peeks, sees the pipelined bytes and never resolves, so the
    connection is held until the Fetch's own max_wait_ms. Found by the soak (SOAK_STRICT_HUNG)."""
    topic = f"disc-p-{uuid.uuid4().hex[:10]}"
    broker.cli("topics", "create", topic, "--partitions", "1")
    base = connections(broker)
    c = RawConn(broker.port)
    assert c.api_versions()
    c.fetch(topic, 0, 0, max_wait_ms=60_000)
    c.send(18, 0, b"")  # ApiVersions, pipelined behind the parked fetch
    c.read_by_peer()
    wait_connections(broker, base + 1, 10, "the fetching connection is open")
    c.close()
    took = wait_connections(broker, base, RELEASE_WITHIN_S,
                            "parked Fetch with a pipelined request after its client closed")
    print(f"released {took:.2f}s after the close")
