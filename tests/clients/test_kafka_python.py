"""kafka-python against the broker: admin, produce/consume (acks 0/1/all), offsets, metadata."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import (
    InvalidPartitionsError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from helpers import (
    assert_offsets_contiguous,
    by_partition,
    create_topic,
    kafka_partition,
    kp_consume,
    kp_produce,
    topic_exists,
    unique,
    wait_for_topic,
)


@pytest.fixture
def kadmin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    yield a
    a.close()


def test_admin_create_topic(broker, kadmin, topic):
    resp = kadmin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], timeout_ms=15000)
    (created,) = resp["topics"]
    assert (created["name"], created["error_code"]) == (topic, 0)
    assert created["num_partitions"] == 3 and created["replication_factor"] == 1
    # CreateTopics v5+ returns the effective configs of the new topic.
    assert created["configs"]["cleanup.policy"]["value"] == "delete"
    wait_for_topic(broker.bootstrap, topic, 3)
    described = kadmin.describe_topics([topic])
    assert described[0]["name"] == topic
    assert described[0]["error_code"] == 0
    assert described[0]["topic_id"] == created["topic_id"]
    assert described[0]["topic_id"] != "00000000-0000-0000-0000-000000000000"
    assert sorted(p["partition_index"] for p in described[0]["partitions"]) == [0, 1, 2]
    assert all(p["leader_id"] == 1 for p in described[0]["partitions"])
    assert all(p["replica_nodes"] == [1] and p["isr_nodes"] == [1] for p in described[0]["partitions"])
    assert topic in kadmin.list_topics()
    with pytest.raises(TopicAlreadyExistsError):
        kadmin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])


def test_describe_cluster_controller(broker, kadmin):
    c = kadmin.describe_cluster()
    assert c["controller_id"] == 1
    assert [b["broker_id"] for b in c["brokers"]] == [1]
    host, port = broker.bootstrap.rsplit(":", 1)
    assert c["brokers"][0]["host"] == host and c["brokers"][0]["port"] == int(port)
    assert c["cluster_id"]


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_consume_keyed(broker, topic, acks):
    create_topic(broker.bootstrap, topic, 3)
    records = [(f"key-{i % 7}".encode(), f"value-{i}".encode()) for i in range(60)]
    metas = kp_produce(broker.bootstrap, topic, records, acks=acks)
    assert len(metas) == 60
    for (k, _), md in zip(records, metas):
        assert md.partition == kafka_partition(k, 3)
    if acks != 0:
        per_p = {}
        for md in metas:
            per_p.setdefault(md.partition, []).append(md.offset)
        for p, offs in per_p.items():
            assert offs == list(range(len(offs))), (p, offs)
    got = kp_consume(broker.bootstrap, topic, 3, 60)
    assert len(got) == 60
    assert_offsets_contiguous(got)
    for p, recs in by_partition(got).items():
        produced = [v for k, v in records if kafka_partition(k, 3) == p]
        assert [r.value for r in recs] == produced
        assert all(kafka_partition(r.key, 3) == p for r in recs)


def test_headers_null_key_null_value(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    records = [
        (b"k1", b"v1", [("h1", b"x"), ("h2", b""), ("h1", b"dup")], 0),
        (None, b"no-key", [("only", b"1")], 0),
        (b"tombstone", None, None, 0),
        (b"", b"", None, 0),
    ]
    kp_produce(broker.bootstrap, topic, records, acks="all")
    got = kp_consume(broker.bootstrap, topic, 1, 4)
    assert [(r.offset, r.key, r.value) for r in got] == [
        (0, b"k1", b"v1"), (1, None, b"no-key"), (2, b"tombstone", None), (3, b"", b"")
    ]
    assert list(got[0].headers) == [("h1", b"x"), ("h2", b""), ("h1", b"dup")]
    assert list(got[1].headers) == [("only", b"1")]
    assert got[2].headers == () and got[3].headers == ()


def test_offsets_beginning_end_for_times(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    base = int(time.time() * 1000) - 60_000
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    futs = [p.send(topic, value=f"m{i}".encode(), partition=0, timestamp_ms=base + i * 1000) for i in range(10)]
    futs += [p.send(topic, value=b"x", partition=1, timestamp_ms=base) for _ in range(4)]
    p.flush(30)
    assert [f.get(10).offset for f in futs[:10]] == list(range(10))
    p.close()

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        assert c.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 4}
        res = c.offsets_for_times({tp0: base + 3500, tp1: base + 1})
        assert res[tp0].offset == 4 and res[tp0].timestamp == base + 4000
        assert res[tp1] is None  # no record at or after that time
        res = c.offsets_for_times({tp0: 0})
        assert res[tp0].offset == 0 and res[tp0].timestamp == base
    finally:
        c.close()


def test_idempotent_producer(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    records = [(f"k{i % 5}".encode(), f"v{i}".encode()) for i in range(300)]
    metas = kp_produce(broker.bootstrap, topic, records, enable_idempotence=True, acks="all")
    assert len(metas) == 300
    got = kp_consume(broker.bootstrap, topic, 2, 300)
    assert len(got) == 300
    assert sorted(r.value for r in got) == sorted(v for _, v in records)
    assert_offsets_contiguous(got)


def test_auto_create_topic(broker):
    name = unique("auto-kp")
    assert not topic_exists(broker.bootstrap, name)
    metas = kp_produce(broker.bootstrap, name, [(b"k", b"hello")], acks="all")
    assert metas[0].topic == name and metas[0].offset == 0
    t = wait_for_topic(broker.bootstrap, name)
    got = kp_consume(broker.bootstrap, name, list(t.partitions), 1)
    assert [(r.key, r.value) for r in got] == [(b"k", b"hello")]


def test_describe_configs(broker, kadmin, topic):
    create_topic(broker.bootstrap, topic, 1, {"retention.ms": "86400001"})
    res = kadmin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    by_name = res["topic"][topic]
    assert by_name["retention.ms"]["value"] == "86400001"
    assert by_name["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert by_name["cleanup.policy"]["value"] == "delete"
    assert by_name["cleanup.policy"]["config_source"] in ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG")
    assert int(by_name["max.message.bytes"]["value"]) > 0
    # The default filter returns only the non-default keys.
    modified = kadmin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
    assert "retention.ms" in modified and "cleanup.policy" not in modified


def test_create_topics_validate_only(broker, kadmin, topic):
    resp = kadmin.create_topics([NewTopic(topic, 2, 1)], validate_only=True)
    assert [(t["name"], t["error_code"], t["num_partitions"]) for t in resp["topics"]] == [(topic, 0, 2)]
    # A topic created after it is a barrier (see test_confluent's validate-only test).
    create_topic(broker.bootstrap, topic + "-barrier", 1)
    assert topic not in kadmin.list_topics()


def test_delete_topics(broker, kadmin, topic):
    create_topic(broker.bootstrap, topic, 1)
    resp = kadmin.delete_topics([topic], timeout_ms=15000)
    assert [(t["name"], t["error_code"]) for t in resp["topics"]] == [(topic, 0)]
    deadline = time.monotonic() + 20
    while topic in kadmin.list_topics() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert topic not in kadmin.list_topics()
    with pytest.raises(UnknownTopicOrPartitionError):
        kadmin.delete_topics([unique("never")])


def test_create_partitions(broker, kadmin, topic):
    create_topic(broker.bootstrap, topic, 2)
    resp = kadmin.create_partitions({topic: 5})
    assert [(r.name, r.error_code) for r in resp.results] == [(topic, 0)]
    wait_for_topic(broker.bootstrap, topic, 5)
    with pytest.raises(InvalidPartitionsError):
        kadmin.create_partitions({topic: 3})


def test_invalid_topic_name(broker, kadmin):
    with pytest.raises(InvalidTopicError):
        kadmin.create_topics([NewTopic("bad name!", 1, 1)])
    with pytest.raises(InvalidTopicError):
        kadmin.create_topics([NewTopic("x" * 300, 1, 1)])
