"""aiokafka against the broker: admin, produce (acks 0/1/all), consume by assign, offsets."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from helpers import (
    aio_consume,
    aio_produce,
    assert_offsets_contiguous,
    by_partition,
    create_topic,
    kafka_partition,
    topic_exists,
    unique,
    wait_for_topic,
)


async def test_admin_create_topic_and_metadata(broker, topic):
    a = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    await a.start()
    try:
        resp = await a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)], timeout_ms=15000)
        errs = [(t[0], t[1]) for t in resp.topic_errors]
        assert errs == [(topic, 0)]
        wait_for_topic(broker.bootstrap, topic, 2)
        assert topic in await a.list_topics()
        cluster = await a.describe_cluster()
        assert cluster["controller_id"] == 1
        assert [b["node_id"] for b in cluster["brokers"]] == [1]
        (desc,) = await a.describe_topics([topic])
        assert desc["topic"] == topic and desc["error_code"] == 0
        assert sorted(p["partition"] for p in desc["partitions"]) == [0, 1]
    finally:
        await a.close()


@pytest.mark.parametrize("acks", [0, 1, "all"])
async def test_produce_consume_keyed(broker, topic, acks):
    create_topic(broker.bootstrap, topic, 3)
    records = [(f"key-{i % 7}".encode(), f"value-{i}".encode()) for i in range(60)]
    metas = await aio_produce(broker.bootstrap, topic, records, acks=acks)
    assert len(metas) == 60
    if acks != 0:  # with acks=0 aiokafka resolves each send to None
        for (k, _), md in zip(records, metas):
            assert md.partition == kafka_partition(k, 3)
        per_p = {}
        for md in metas:
            per_p.setdefault(md.partition, []).append(md.offset)
        for p, offs in per_p.items():
            assert offs == list(range(len(offs)))
    got = await aio_consume(broker.bootstrap, topic, 3, 60)
    assert len(got) == 60
    assert_offsets_contiguous(got)
    for p, recs in by_partition(got).items():
        assert [r.value for r in recs] == [v for k, v in records if kafka_partition(k, 3) == p]


async def test_headers_null_key_null_value(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    records = [
        (b"k1", b"v1", [("h1", b"x"), ("h2", b"")], 0),
        (None, b"no-key", None, 0),
        (b"tombstone", None, None, 0),
    ]
    await aio_produce(broker.bootstrap, topic, records, acks="all")
    got = await aio_consume(broker.bootstrap, topic, 1, 3)
    assert [(r.offset, r.key, r.value) for r in got] == [(0, b"k1", b"v1"), (1, None, b"no-key"), (2, b"tombstone", None)]
    assert list(got[0].headers) == [("h1", b"x"), ("h2", b"")]


async def test_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    base = int(time.time() * 1000) - 30_000
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await p.start()
    try:
        for i in range(6):
            md = await p.send_and_wait(topic, f"m{i}".encode(), partition=0, timestamp_ms=base + i * 1000)
            assert md.offset == i
    finally:
        await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        assert await c.beginning_offsets([tp]) == {tp: 0}
        assert await c.end_offsets([tp]) == {tp: 6}
        res = await c.offsets_for_times({tp: base + 2500})
        assert res[tp].offset == 3 and res[tp].timestamp == base + 3000
        res = await c.offsets_for_times({tp: base + 60_000})
        assert res[tp] is None
        # Seek to an offset and read from there.
        c.assign([tp])
        c.seek(tp, 4)
        batch = await c.getmany(tp, timeout_ms=10_000)
        assert [(m.offset, m.value) for m in batch[tp]][:2] == [(4, b"m4"), (5, b"m5")]
    finally:
        await c.stop()


async def test_idempotent_producer(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    records = [(f"k{i % 3}".encode(), f"v{i}".encode()) for i in range(200)]
    metas = await aio_produce(broker.bootstrap, topic, records, enable_idempotence=True, acks="all")
    assert len(metas) == 200
    got = await aio_consume(broker.bootstrap, topic, 2, 200)
    assert len(got) == 200
    assert sorted(r.value for r in got) == sorted(v for _, v in records)
    assert_offsets_contiguous(got)


async def test_auto_create_topic(broker):
    name = unique("auto-aio")
    assert not topic_exists(broker.bootstrap, name)
    metas = await aio_produce(broker.bootstrap, name, [(b"k", b"v")], acks="all")
    assert metas[0].topic == name and metas[0].offset == 0
    t = wait_for_topic(broker.bootstrap, name)
    got = await aio_consume(broker.bootstrap, name, list(t.partitions), 1)
    assert [(r.key, r.value) for r in got] == [(b"k", b"v")]
