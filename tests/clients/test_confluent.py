"""confluent-kafka (librdkafka) against the broker: admin, produce/consume, offsets, metadata."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from helpers import (
    assert_offsets_contiguous,
    by_partition,
    confluent_consume,
    confluent_produce,
    create_topic,
    kafka_partition,
    topic_exists,
    unique,
    wait_for_topic,
)


def admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def test_admin_create_topic_and_metadata(broker, topic):
    a = admin(broker)
    futs = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], operation_timeout=15)
    assert futs[topic].result(timeout=30) is None
    t = wait_for_topic(broker.bootstrap, topic, 3)
    assert sorted(t.partitions) == [0, 1, 2]
    for p in t.partitions.values():
        assert p.leader == 1
        assert p.replicas == [1]
        assert p.isrs == [1]
    # Creating it again is TOPIC_ALREADY_EXISTS.
    again = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic]
    with pytest.raises(KafkaException) as ei:
        again.result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_metadata_lists_broker_and_controller(broker):
    md = admin(broker).list_topics(timeout=15)
    assert list(md.brokers) == [1]
    b = md.brokers[1]
    host, port = broker.bootstrap.rsplit(":", 1)
    assert (b.host, b.port) == (host, int(port))
    assert md.controller_id == 1
    assert md.cluster_id and len(md.cluster_id) >= 16
    # describe_cluster (DescribeCluster API, or Metadata on older brokers)
    a = admin(broker)
    desc = a.describe_cluster(request_timeout=15).result(timeout=30)
    assert desc.cluster_id == md.cluster_id
    assert desc.controller.id == 1
    assert [n.id for n in desc.nodes] == [1]


def test_describe_topics_has_topic_id(broker, topic):
    from confluent_kafka import TopicCollection

    create_topic(broker.bootstrap, topic, 2)
    a = admin(broker)
    res = a.describe_topics(TopicCollection([topic]), request_timeout=15)
    d = res[topic].result(timeout=30)
    assert d.name == topic
    assert d.topic_id is not None
    assert str(d.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA"  # the all-zero uuid
    assert [p.id for p in d.partitions] == [0, 1]
    assert all(p.leader.id == 1 for p in d.partitions)
    # A second topic gets a different id.
    other = unique("t-other")
    create_topic(broker.bootstrap, other, 1)
    d2 = a.describe_topics(TopicCollection([other]))[other].result(timeout=30)
    assert str(d2.topic_id) != str(d.topic_id)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_consume_keyed(broker, topic, acks):
    create_topic(broker.bootstrap, topic, 3)
    records = [(f"key-{i % 7}".encode(), f"value-{i}".encode()) for i in range(60)]
    delivered = confluent_produce(broker.bootstrap, topic, records, acks=acks)
    assert len(delivered) == 60
    if acks != "0":
        # Delivery reports carry real offsets, contiguous per partition.
        per_p = {}
        for m in delivered:
            per_p.setdefault(m.partition(), []).append(m.offset())
        for p, offs in per_p.items():
            assert offs == list(range(len(offs))), (p, offs)
    got = confluent_consume(broker.bootstrap, topic, 3, 60)
    assert len(got) == 60
    assert_offsets_contiguous(got)
    # Per partition, values come back in the order they were produced.
    for p, recs in by_partition(got).items():
        produced = [v for k, v in records if kafka_partition(k, 3) == p]
        assert [r.value for r in recs] == produced, f"partition {p}"
    # Key -> partition is murmur2, as in Java.
    for r in got:
        assert r.partition == kafka_partition(r.key, 3), r


def test_same_key_same_partition(broker, topic):
    create_topic(broker.bootstrap, topic, 4)
    keys = [f"user-{i}".encode() for i in range(20)]
    records = [(k, f"{k.decode()}-{j}".encode()) for j in range(5) for k in keys]
    delivered = confluent_produce(broker.bootstrap, topic, records, acks="all")
    where = {}
    for m in delivered:
        where.setdefault(m.key(), set()).add(m.partition())
    assert all(len(ps) == 1 for ps in where.values()), where
    assert len({next(iter(ps)) for ps in where.values()}) > 1, "20 keys all landed in one partition"
    got = confluent_consume(broker.bootstrap, topic, 4, 100)
    for r in got:
        assert {r.partition} == where[r.key]


def test_headers_null_key_null_value(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    records = [
        (b"k1", b"v1", [("h1", b"x"), ("h2", b""), ("h1", b"dup")]),
        (None, b"no-key", [("only", b"1")]),
        (b"tombstone", None),
        (None, None),
        (b"", b""),
        (b"bin", bytes(range(256))),
    ]
    confluent_produce(broker.bootstrap, topic, records, acks="all")
    got = confluent_consume(broker.bootstrap, topic, 1, len(records))
    assert [r.offset for r in got] == list(range(len(records)))
    assert got[0].key == b"k1" and got[0].value == b"v1"
    assert list(got[0].headers) == [("h1", b"x"), ("h2", b""), ("h1", b"dup")]
    assert got[1].key is None and got[1].value == b"no-key" and list(got[1].headers) == [("only", b"1")]
    assert got[2].key == b"tombstone" and got[2].value is None
    assert got[3].key is None and got[3].value is None
    assert got[4].key == b"" and got[4].value == b""
    assert got[5].value == bytes(range(256))
    assert all(r.headers == () for r in got[2:])


def test_list_offsets_and_offsets_for_times(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    base = int(time.time() * 1000) - 60_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(10):
        p.produce(topic, value=f"m{i}".encode(), partition=0, timestamp=base + i * 1000)
    for i in range(3):
        p.produce(topic, value=f"p1-{i}".encode(), partition=1, timestamp=base + i * 1000)
    assert p.flush(30) == 0

    got = confluent_consume(broker.bootstrap, topic, [0], 10)
    assert [r.timestamp for r in got] == [base + i * 1000 for i in range(10)]

    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "enable.auto.commit": False})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=15) == (0, 10)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=15) == (0, 3)
        def for_time(partition, ts):
            (r,) = c.offsets_for_times([TopicPartition(topic, partition, ts)], timeout=15)
            assert r.error is None, r.error
            return r.offset

        assert for_time(0, base + 4500) == 5  # first record with ts >= the asked one
        assert for_time(0, base) == 0  # exact match
        assert for_time(0, base - 10_000) == 0  # before everything
        assert for_time(0, base + 9000) == 9
        assert for_time(1, base + 99_000) == -1  # after the last: no such offset
    finally:
        c.close()

    a = admin(broker)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    specs = {
        "earliest": OffsetSpec.earliest(),
        "latest": OffsetSpec.latest(),
        "ts": OffsetSpec.for_timestamp(base + 2000),
        "max": OffsetSpec.max_timestamp(),
    }
    out = {}
    for name, spec in specs.items():
        fut = a.list_offsets({tp0: spec, tp1: spec}, request_timeout=15)
        out[name] = {tp.partition: f.result(timeout=30) for tp, f in fut.items()}
    assert out["earliest"][0].offset == 0 and out["earliest"][1].offset == 0
    assert out["latest"][0].offset == 10 and out["latest"][1].offset == 3
    assert out["ts"][0].offset == 2 and out["ts"][0].timestamp == base + 2000
    assert out["ts"][1].offset == 2
    assert out["max"][0].offset == 9 and out["max"][0].timestamp == base + 9000


def test_idempotent_producer_no_duplicates(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    records = [(f"k{i % 5}".encode(), f"v{i}".encode()) for i in range(500)]
    delivered = confluent_produce(
        broker.bootstrap, topic, records, enable_idempotence=True, acks="all", linger_ms=20,
        max_in_flight_requests_per_connection=5,
    )
    assert len(delivered) == 500
    got = confluent_consume(broker.bootstrap, topic, 2, 500)
    assert len(got) == 500
    assert sorted(r.value for r in got) == sorted(v for _, v in records)
    assert_offsets_contiguous(got)


def test_auto_create_topic_on_produce(broker):
    name = unique("auto")
    assert not topic_exists(broker.bootstrap, name)
    delivered = confluent_produce(broker.bootstrap, name, [(b"k", b"auto-created")], acks="all")
    assert delivered[0].topic() == name and delivered[0].offset() == 0
    t = wait_for_topic(broker.bootstrap, name)
    assert len(t.partitions) >= 1
    got = confluent_consume(broker.bootstrap, name, list(t.partitions), 1)
    assert [(r.key, r.value) for r in got] == [(b"k", b"auto-created")]


def test_describe_configs_with_sources(broker, topic):
    create_topic(broker.bootstrap, topic, 1, {"retention.ms": "123456789", "cleanup.policy": "delete"})
    a = admin(broker)
    res = a.describe_configs([ConfigResource("topic", topic)], request_timeout=15)
    entries = next(iter(res.values())).result(timeout=30)
    assert entries["retention.ms"].value == "123456789"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not entries["retention.ms"].is_default
    for name in ("max.message.bytes", "segment.bytes", "retention.bytes", "min.insync.replicas",
                 "compression.type"):
        assert name in entries, f"{name} missing from DescribeConfigs"
        assert entries[name].source in (
            ConfigSource.DEFAULT_CONFIG.value, ConfigSource.STATIC_BROKER_CONFIG.value,
            ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value,
        ), (name, entries[name].source)
    assert entries["retention.bytes"].value == "-1"
    # Broker resource.
    res = a.describe_configs([ConfigResource("broker", "1")], request_timeout=15)
    bentries = next(iter(res.values())).result(timeout=30)
    assert "num.partitions" in bentries
    assert "message.max.bytes" in bentries
    assert int(bentries["message.max.bytes"].value) > 0


def test_create_topics_validate_only(broker, topic):
    a = admin(broker)
    fut = a.create_topics(
        [NewTopic(topic, num_partitions=2, replication_factor=1)], validate_only=True
    )[topic]
    assert fut.result(timeout=30) is None
    # Not a fixed sleep: a topic created after it (create_topic waits until metadata shows it)
    # is a barrier, since metadata is applied in order, a created validate-only topic would
    # be visible by then.
    create_topic(broker.bootstrap, topic + "-barrier", 1)
    assert not topic_exists(broker.bootstrap, topic)
    # Invalid requests are still rejected in validate-only mode.
    bad = a.create_topics([NewTopic(topic, num_partitions=0, replication_factor=1)],
                           validate_only=True)[topic]
    with pytest.raises(KafkaException) as ei:
        bad.result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS


def test_delete_topics(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    confluent_produce(broker.bootstrap, topic, [(b"a", b"b")], acks="all")
    a = admin(broker)
    fut = a.delete_topics([topic], operation_timeout=15)[topic]
    assert fut.result(timeout=30) is None
    deadline = time.monotonic() + 20
    while topic_exists(broker.bootstrap, topic) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not topic_exists(broker.bootstrap, topic)
    # Deleting an unknown topic is UNKNOWN_TOPIC_OR_PART.
    missing = a.delete_topics([unique("never")], operation_timeout=15)
    with pytest.raises(KafkaException) as ei:
        next(iter(missing.values())).result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_partitions(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    a = admin(broker)
    fut = a.create_partitions([NewPartitions(topic, 3)], operation_timeout=15)[topic]
    assert fut.result(timeout=30) is None
    wait_for_topic(broker.bootstrap, topic, 3)
    confluent_produce(broker.bootstrap, topic, [(b"k", b"to-p2", None, 2)], acks="all")
    got = confluent_consume(broker.bootstrap, topic, [2], 1)
    assert [(r.partition, r.offset, r.value) for r in got] == [(2, 0, b"to-p2")]
    # Shrinking is INVALID_PARTITIONS.
    shrink = a.create_partitions([NewPartitions(topic, 2)])[topic]
    with pytest.raises(KafkaException) as ei:
        shrink.result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS


@pytest.mark.parametrize("name", ["bad name!", "a" * 250, "..", "with/slash"])
def test_invalid_topic_name_rejected(broker, name):
    a = admin(broker)
    fut = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name]
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, ei.value


def test_create_topic_broker_defaults_and_bad_replication(broker, topic):
    """num_partitions/replication_factor -1 take the broker defaults (KIP-464); a replication
    factor above the broker count is INVALID_REPLICATION_FACTOR."""
    a = admin(broker)
    fut = a.create_topics([NewTopic(topic)], operation_timeout=15)[topic]  # -1 / -1
    assert fut.result(timeout=30) is None
    t = wait_for_topic(broker.bootstrap, topic)
    res = a.describe_configs([ConfigResource("broker", "1")], request_timeout=15)
    default_partitions = int(next(iter(res.values())).result(timeout=30)["num.partitions"].value)
    assert len(t.partitions) == default_partitions
    other = unique("t-rf3")
    bad = a.create_topics([NewTopic(other, num_partitions=1, replication_factor=3)])[other]
    with pytest.raises(KafkaException) as ei:
        bad.result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert not topic_exists(broker.bootstrap, other)


def test_unknown_topic_errors(broker):
    """DescribeConfigs, CreatePartitions and ListOffsets on a topic that does not exist."""
    a = admin(broker)
    name = unique("t-missing")
    res = a.describe_configs([ConfigResource("topic", name)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        next(iter(res.values())).result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    fut = a.create_partitions([NewPartitions(name, 3)])[name]
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=30)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert not topic_exists(broker.bootstrap, name), "a failed admin call must not create the topic"

