"""Kafka-faithful error reporting (issue 14): per-record Produce errors (KIP-467) and offset
commits to topics or partitions that do not exist.

Every expectation here is what Apache Kafka answers; run the module against the reference
(`KAFKA_BOOTSTRAP=127.0.0.1:PORT` with `scripts/kafka-reference start PORT DIR`) to check it.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from helpers import create_topic, topic_exists, unique


def _produce_batch(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, int | None]]):
    """Produces `records` (key, value, timestamp) to partition 0 in one batch; returns the
    delivery error code (or None) of each, in order."""
    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 500,  # everything below goes out as one batch
        "enable.idempotence": False,
        "message.send.max.retries": 0,
    })
    codes: list[int | None] = [0] * len(records)

    def report(i):
        def cb(err, _msg):
            codes[i] = err.code() if err else None
        return cb

    for i, (k, v, ts) in enumerate(records):
        kw = {"timestamp": ts} if ts is not None else {}
        p.produce(topic, key=k, value=v, partition=0, on_delivery=report(i), **kw)
    assert p.flush(30) == 0
    return codes


def test_keyless_records_on_compacted_topic_fail_one_by_one(broker, topic):
    create_topic(broker.bootstrap, topic, 1, config={"cleanup.policy": "compact"})
    codes = _produce_batch(broker.bootstrap, topic, [
        (b"k0", b"v0", None),
        (None, b"v1", None),
        (b"k2", b"v2", None),
        (None, b"v3", None),
    ])
    bad, other = KafkaError.INVALID_RECORD, KafkaError._INVALID_DIFFERENT_RECORD
    assert codes == [other, bad, other, bad]
    # The batch was refused as a whole; keyed records still go through on their own.
    assert _produce_batch(broker.bootstrap, topic, [(b"k", b"v", None)]) == [None]


def test_out_of_range_timestamp_fails_only_that_record(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    now = int(time.time() * 1000)
    codes = _produce_batch(broker.bootstrap, topic, [
        (b"a", b"ok", now),
        (b"b", b"two hours ahead", now + 2 * 3600 * 1000),  # after.max.ms is one hour
        (b"c", b"ok", now),
    ])
    # The broker lists only record 1 in record_errors (checked on the wire in
    # crates/broker/tests/wire.rs), but librdkafka splits per record only for INVALID_RECORD:
    # for INVALID_TIMESTAMP it fails the whole batch, against Kafka as against Sluice.
    assert codes == [KafkaError.INVALID_TIMESTAMP] * 3


def test_old_timestamp_refused_per_record_with_before_max_ms(broker, topic):
    create_topic(broker.bootstrap, topic, 1, config={"message.timestamp.before.max.ms": "60000"})
    now = int(time.time() * 1000)
    codes = _produce_batch(broker.bootstrap, topic, [
        (b"a", b"an hour old", now - 3600 * 1000),
        (b"b", b"ok", now),
    ])
    assert codes == [KafkaError.INVALID_TIMESTAMP] * 2
    # The newer record alone is fine.
    assert _produce_batch(broker.bootstrap, topic, [(b"b", b"ok", now)]) == [None]


def _commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> dict:
    """Commits `offsets` for `group` (no group membership); returns {(topic, partition): code}
    as librdkafka's commit callback reports them."""
    seen: list = []
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "on_commit": lambda err, parts: seen.append(parts),
    })
    try:
        c.commit(offsets=offsets, asynchronous=True)
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            c.poll(0.2)
        assert seen, "no commit callback"
        return {(tp.topic, tp.partition): tp.error.code() if tp.error else 0 for tp in seen[0]}
    finally:
        c.close()


def _committed(bootstrap: str, group: str, tps: list[TopicPartition]) -> dict:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=30)}
    finally:
        c.close()


def test_commit_to_unknown_topic_or_partition_is_refused_per_partition(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    missing = unique("t-missing")
    group = unique("g")
    result = _commit(broker.bootstrap, group, [
        TopicPartition(topic, 0, 5),
        TopicPartition(missing, 0, 3),
        TopicPartition(topic, 7, 1),  # the topic exists, the partition does not
    ])
    unknown = KafkaError.UNKNOWN_TOPIC_OR_PART
    assert result[(missing, 0)] == unknown and result[(topic, 7)] == unknown, result
    # (librdkafka reports the request's first error on the other partitions too, with Kafka
    # as with Sluice: whether topic-0 was committed is read back below.)
    # The existing partition was committed; nothing was stored for the others.
    got = _committed(broker.bootstrap, group, [TopicPartition(topic, 0), TopicPartition(missing, 0),
                                               TopicPartition(topic, 7)])
    assert got[(topic, 0)] == 5
    assert got[(missing, 0)] < 0 and got[(topic, 7)] < 0, got
    assert not topic_exists(broker.bootstrap, missing), "a commit must not create the topic"


def test_offsets_of_a_deleted_topic_are_dropped(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    group = unique("g")
    assert _commit(broker.bootstrap, group, [TopicPartition(topic, 0, 42)]) == {(topic, 0): 0}
    assert _committed(broker.bootstrap, group, [TopicPartition(topic, 0)])[(topic, 0)] == 42
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.delete_topics([topic], operation_timeout=15)[topic].result(timeout=30)
    deadline = time.monotonic() + 30
    while topic_exists(broker.bootstrap, topic) and time.monotonic() < deadline:
        time.sleep(0.2)
    # The same name again: the group's old offset must not come back with it.
    deadline = time.monotonic() + 30
    while True:
        try:
            create_topic(broker.bootstrap, topic, 1)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    deadline = time.monotonic() + 15
    while True:
        got = _committed(broker.bootstrap, group, [TopicPartition(topic, 0)])[(topic, 0)]
        if got < 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got < 0, f"offset {got} of the deleted topic survived"


@pytest.mark.parametrize("what", ["topic", "partition"])
def test_commit_of_only_unknown_partitions(broker, topic, what):
    """A request whose every partition is unknown still gets a per-partition answer."""
    create_topic(broker.bootstrap, topic, 1)
    t, p = (unique("t-missing"), 0) if what == "topic" else (topic, 3)
    group = unique("g")
    result = _commit(broker.bootstrap, group, [TopicPartition(t, p, 1)])
    assert result == {(t, p): KafkaError.UNKNOWN_TOPIC_OR_PART}
    assert _committed(broker.bootstrap, group, [TopicPartition(t, p)])[(t, p)] < 0
