"""Durability across broker restarts: graceful (SIGTERM) and crash (SIGKILL).

Records acknowledged with acks=all before the stop must all be readable after the start, at
the same offsets, and new records continue the offsets. Topics and their configs survive.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from helpers import (
    assert_offsets_contiguous,
    confluent_consume,
    confluent_produce,
    create_topic,
    kafka_partition,
    kp_consume,
    kp_produce,
    wait_for_topic,
)

pytestmark = pytest.mark.restart


def _produce_batch(bootstrap, topic, start, n):
    recs = [(f"key-{i % 11}".encode(), f"value-{i}".encode()) for i in range(start, start + n)]
    half = n // 2
    confluent_produce(bootstrap, topic, recs[:half], acks="all")
    kp_produce(bootstrap, topic, recs[half:], acks="all")
    return recs


def _expected_by_partition(records, partitions):
    out = {p: [] for p in range(partitions)}
    for k, v in records:
        out[kafka_partition(k, partitions)].append(v)
    return out


def _check(bootstrap, topic, records, partitions):
    want = _expected_by_partition(records, partitions)
    for consume in (confluent_consume, kp_consume):
        got = consume(bootstrap, topic, partitions, len(records), timeout=45)
        assert len(got) == len(records), f"{consume.__name__}: {len(got)} of {len(records)}"
        assert_offsets_contiguous(got)
        for p in range(partitions):
            assert [r.value for r in got if r.partition == p] == want[p], (consume.__name__, p)


def _wait_ready(bootstrap, topic, partitions):
    # After a restart the broker may take a moment to lead its partitions again.
    wait_for_topic(bootstrap, topic, partitions, timeout=60)


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_restart_loses_nothing(fresh_broker, topic, how):
    b = fresh_broker
    partitions = 3
    create_topic(b.bootstrap, topic, partitions, {"retention.ms": "987654321"})
    before = _produce_batch(b.bootstrap, topic, 0, 300)

    if how == "sigterm":
        code = b.stop()
        if not b.external:
            assert code == 0, f"SIGTERM should exit 0, got {code}\n{b.log()[-3000:]}"
    else:
        b.kill()
    time.sleep(0.2)
    b.start()

    _wait_ready(b.bootstrap, topic, partitions)
    _check(b.bootstrap, topic, before, partitions)

    # The topic config survived.
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    res = a.describe_configs([ConfigResource("topic", topic)], request_timeout=20)
    entries = next(iter(res.values())).result(timeout=30)
    assert entries["retention.ms"].value == "987654321"

    # New records continue the offsets.
    after = _produce_batch(b.bootstrap, topic, 300, 60)
    _check(b.bootstrap, topic, before + after, partitions)


def test_restart_twice_with_unflushed_tail(fresh_broker, topic):
    """Kill right after acks=all, twice in a row; every acknowledged record is still there."""
    b = fresh_broker
    create_topic(b.bootstrap, topic, 1)
    all_recs = []
    for round_ in range(2):
        recs = [(b"k", f"r{round_}-{i}".encode()) for i in range(50)]
        delivered = confluent_produce(b.bootstrap, topic, recs, acks="all")
        assert [m.offset() for m in delivered] == list(range(len(all_recs), len(all_recs) + 50))
        all_recs += recs
        b.kill()
        b.start()
        _wait_ready(b.bootstrap, topic, 1)
    got = confluent_consume(b.bootstrap, topic, 1, len(all_recs), timeout=45)
    assert [r.value for r in got] == [v for _, v in all_recs]
    assert [r.offset for r in got] == list(range(len(all_recs)))


def test_second_broker_on_a_locked_data_dir_refuses_to_start(fresh_broker, topic):
    """README: the data dir is "locked while a broker runs". A second `sluice broker` on it
    (other ports) must exit at once with an error naming the lock, change nothing, and leave the
    first broker serving."""
    import subprocess

    from helpers import free_port, port_free

    b = fresh_broker
    if b.external:
        pytest.skip("starts a second Sluice on the first one's data dir")
    create_topic(b.bootstrap, topic, 1)
    first = [(b"k", f"v{i}".encode()) for i in range(3)]
    confluent_produce(b.bootstrap, topic, first, acks="all")
    files = {p: p.stat().st_size for p in b.data_dir.rglob("*") if p.is_file() and p.suffix == ".log"}

    port2 = free_port()
    cmd = b.command()
    for flag in ("--listen", "--advertised"):
        cmd[cmd.index(flag) + 1] = f"127.0.0.1:{port2}"
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode != 0, f"second broker on a locked data dir exited 0:\n{out[-3000:]}"
    assert "lock" in out.lower() and str(b.data_dir) in out, \
        f"the refusal does not name the lock and the data dir:\n{out[-3000:]}"
    assert port_free(port2), "the second broker left a listener behind"
    assert {p: p.stat().st_size for p in files} == files, "the second broker changed the logs"

    # The first broker is unaffected: it still serves, and the data is whole.
    more = [(b"k", b"v3")]
    confluent_produce(b.bootstrap, topic, more, acks="all")
    got = confluent_consume(b.bootstrap, topic, 1, 4)
    assert [r.value for r in got] == [v for _, v in first + more]
    assert b.proc is not None and b.proc.poll() is None
