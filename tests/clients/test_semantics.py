"""Broker semantics seen through the clients: config changes, offset reset, long poll,
LogAppendTime, topic re-creation, volume, and `--set` plumbing."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)

from helpers import (
    assert_offsets_contiguous,
    confluent_consume,
    confluent_produce,
    create_topic,
    kp_consume,
    topic_exists,
    unique,
    wait_for_topic,
)


def _describe(a: AdminClient, topic: str) -> dict:
    res = a.describe_configs([ConfigResource("topic", topic)], request_timeout=15)
    return next(iter(res.values())).result(timeout=30)


def test_incremental_alter_configs(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    before = _describe(a, topic)
    default_retention = before["retention.ms"].value
    assert before["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    res = ConfigResource(
        "topic", topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    next(iter(a.incremental_alter_configs([res]).values())).result(timeout=30)
    after = _describe(a, topic)
    assert after["retention.ms"].value == "3600000"
    assert after["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert after["cleanup.policy"].value == "compact"

    # DELETE reverts to the default.
    res = ConfigResource(
        "topic", topic,
        incremental_configs=[ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)],
    )
    next(iter(a.incremental_alter_configs([res]).values())).result(timeout=30)
    reverted = _describe(a, topic)
    assert reverted["retention.ms"].value == default_retention
    assert reverted["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert reverted["cleanup.policy"].value == "compact"

    # An unknown key is rejected (INVALID_CONFIG) and changes nothing.
    bad = ConfigResource(
        "topic", topic,
        incremental_configs=[ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(Exception) as ei:
        next(iter(a.incremental_alter_configs([bad]).values())).result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_create_topic_with_invalid_config_rejected(broker, topic):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    fut = a.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "shred"})])[topic]
    with pytest.raises(Exception) as ei:
        fut.result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert not topic_exists(broker.bootstrap, topic)


@pytest.mark.parametrize("reset, expected_first", [("earliest", 0), ("latest", 10)])
def test_offset_out_of_range_resets(broker, topic, reset, expected_first):
    create_topic(broker.bootstrap, topic, 1)
    confluent_produce(broker.bootstrap, topic, [(None, f"m{i}".encode(), None, 0) for i in range(10)], acks="all")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
                  "auto.offset.reset": reset})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])  # far beyond the end
        if reset == "latest":
            # Give the reset a moment, then produce: only the new record shows up.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                c.poll(0.2)
            confluent_produce(broker.bootstrap, topic, [(None, b"new", None, 0)], acks="all")
        got = None
        deadline = time.monotonic() + 30
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got = m
    finally:
        c.close()
    assert got is not None
    assert got.offset() == expected_first
    assert got.value() == (b"m0" if reset == "earliest" else b"new")


def test_offset_out_of_range_error_kafka_python(broker, topic):
    from kafka import KafkaConsumer, TopicPartition as KTP
    from kafka.errors import OffsetOutOfRangeError

    create_topic(broker.bootstrap, topic, 1)
    confluent_produce(broker.bootstrap, topic, [(None, b"x", None, 0)] * 3, acks="all")
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="none",
                      enable_auto_commit=False)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek(tp, 500)
        with pytest.raises(OffsetOutOfRangeError):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                c.poll(timeout_ms=500)
    finally:
        c.close()


def test_long_poll_delivers_new_records_promptly(broker, topic):
    """A Fetch parked at the end of the log (max_wait 20 s) is answered as soon as a record is
    appended, not when its wait ends. The Fetch goes over a raw connection so that the test
    knows it is parked: the record is produced only once the broker has read the Fetch off its
    socket (rawkafka.read_by_peer), so a broker that is merely slow cannot make a fetch that
    ignores appends look prompt (it would find the record on its first read)."""
    from rawkafka import RawConn, fetch_v4_partition

    create_topic(broker.bootstrap, topic, 1)
    with RawConn(broker.port) as fc:
        assert fc.api_versions()
        sent = time.monotonic()
        cid = fc.fetch(topic, 0, 0, max_wait_ms=20_000)
        fc.read_by_peer()
        confluent_produce(broker.bootstrap, topic, [(None, b"wake-up", None, 0)], acks="all")
        acked = time.monotonic()
        resp = fc.read(30)
        got = time.monotonic()
    assert resp is not None and resp[0] == cid, "the parked fetch was not answered"
    err, hw, records = fetch_v4_partition(resp[1])
    assert (err, hw) == (0, 1) and b"wake-up" in records, (err, hw, records[:100])
    # Woken by the append: well before the fetch's own 20 s deadline, and soon after the ack.
    assert got - sent < 15.0 and got - acked < 5.0, (
        f"parked fetch answered {got - sent:.1f}s after it was sent, {got - acked:.1f}s after "
        f"the record was acknowledged: not woken by the append")


def test_log_append_time(broker, topic):
    create_topic(broker.bootstrap, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    old = int(time.time() * 1000) - 3_600_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    p.produce(topic, value=b"v", partition=0, timestamp=old)
    assert p.flush(30) == 0
    before = int(time.time() * 1000)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        m = None
        deadline = time.monotonic() + 30
        while m is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error():
                m = None
    finally:
        c.close()
    assert m is not None
    ts_type, ts = m.timestamp()
    assert ts_type == TIMESTAMP_LOG_APPEND_TIME
    assert abs(ts - before) < 120_000, (ts, before)


def test_create_time_preserved(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    ts = int(time.time() * 1000) - 86_400_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    p.produce(topic, value=b"v", partition=0, timestamp=ts)
    assert p.flush(30) == 0
    got = confluent_consume(broker.bootstrap, topic, 1, 1)
    assert got[0].timestamp == ts


def test_delete_and_recreate_topic_starts_empty(broker, topic):
    from confluent_kafka import TopicCollection

    create_topic(broker.bootstrap, topic, 1)
    confluent_produce(broker.bootstrap, topic, [(None, b"old", None, 0)] * 5, acks="all")
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    old_id = str(a.describe_topics(TopicCollection([topic]))[topic].result(timeout=30).topic_id)
    a.delete_topics([topic], operation_timeout=15)[topic].result(timeout=30)
    deadline = time.monotonic() + 30
    while topic_exists(broker.bootstrap, topic) and time.monotonic() < deadline:
        time.sleep(0.2)
    # Re-create with the same name (retry while the deletion completes).
    deadline = time.monotonic() + 30
    while True:
        try:
            create_topic(broker.bootstrap, topic, 2)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    new_id = str(a.describe_topics(TopicCollection([topic]))[topic].result(timeout=30).topic_id)
    assert new_id != old_id
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g")})
    try:
        for p in (0, 1):
            assert c.get_watermark_offsets(TopicPartition(topic, p), timeout=15) == (0, 0)
    finally:
        c.close()
    confluent_produce(broker.bootstrap, topic, [(None, b"new", None, 0)], acks="all")
    got = confluent_consume(broker.bootstrap, topic, 2, 1)
    assert [(r.offset, r.value) for r in got] == [(0, b"new")]


def test_many_topics_one_producer(broker):
    topics = [unique("multi") for _ in range(5)]
    for t in topics:
        create_topic(broker.bootstrap, t, 2)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 20})
    for i in range(100):
        for t in topics:
            p.produce(t, key=str(i).encode(), value=f"{t}:{i}".encode())
    assert p.flush(30) == 0
    for t in topics:
        got = kp_consume(broker.bootstrap, t, 2, 100)
        assert sorted(r.value for r in got) == sorted(f"{t}:{i}".encode() for i in range(100))


def test_volume_20k_records(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    n = 20_000
    start = time.monotonic()
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 10,
                  "compression.type": "lz4", "partitioner": "murmur2_random"})
    for i in range(n):
        p.produce(topic, key=f"k{i % 100}".encode(), value=f"value-{i:06d}".encode())
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    got = confluent_consume(broker.bootstrap, topic, 3, n, timeout=60)
    elapsed = time.monotonic() - start
    assert len(got) == n
    assert_offsets_contiguous(got)
    # Per key, values are in production order.
    last: dict[bytes, int] = {}
    for r in got:
        i = int(r.value.split(b"-")[1])
        assert last.get(r.key, -1) < i
        last[r.key] = i
    assert elapsed < 60, f"20k records took {elapsed:.1f}s"


def test_broker_set_options(request):
    """`sluice broker --set num.partitions=3 --set message.max.bytes=2000000` takes effect."""
    import os

    from conftest import Broker

    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("needs a Sluice broker started by the suite")
    b = Broker(extra_sets={"num.partitions": "3", "message.max.bytes": "2000000"})
    try:
        b.start()
        name = unique("auto-set")
        confluent_produce(b.bootstrap, name, [(b"k", b"v")], acks="all")
        t = wait_for_topic(b.bootstrap, name)
        assert len(t.partitions) == 3
        big = os.urandom(1_500_000)
        confluent_produce(b.bootstrap, name, [(b"big", big, None, 1)], acks="all", message_max_bytes=3_000_000)
        got = confluent_consume(b.bootstrap, name, [1], 1, fetch_max_bytes=4_000_000,
                                max_partition_fetch_bytes=4_000_000)
        assert got[-1].value == big
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        res = a.describe_configs([ConfigResource("broker", "1")], request_timeout=15)
        entries = next(iter(res.values())).result(timeout=30)
        assert entries["num.partitions"].value == "3"
        assert entries["message.max.bytes"].value == "2000000"
    finally:
        b.cleanup()


def test_reads_across_segments(broker, topic):
    """With 1 MiB segments, 3 MiB of records span several segment files; reads, offset
    lookups by time and watermarks work across the boundaries."""
    create_topic(broker.bootstrap, topic, 1, {"segment.bytes": str(1024 * 1024)})
    base = int(time.time() * 1000) - 600_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    n = 300
    payload = b"s" * 10_000
    for i in range(n):
        p.produce(topic, key=str(i).encode(), value=payload + str(i).encode(), partition=0,
                  timestamp=base + i * 100)
        p.poll(0)
    assert p.flush(60) == 0
    got = confluent_consume(broker.bootstrap, topic, 1, n, timeout=60)
    assert [r.offset for r in got] == list(range(n))
    assert [r.value for r in got] == [payload + str(i).encode() for i in range(n)]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g")})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=15) == (0, n)
        for want in (0, 99, 150, 299):
            (r,) = c.offsets_for_times([TopicPartition(topic, 0, base + want * 100)], timeout=15)
            assert r.offset == want
    finally:
        c.close()
    # Start in the middle of a later segment.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 250)])
        m = None
        deadline = time.monotonic() + 30
        while m is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error():
                m = None
    finally:
        c.close()
    assert m is not None and m.offset() == 250 and m.key() == b"250"
