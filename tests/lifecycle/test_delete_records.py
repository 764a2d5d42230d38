"""DeleteRecords (KIP-107) through confluent-kafka's and kafka-python's admin clients: the
returned low watermark, ListOffsets earliest, consumers below the new start are reset, errors
for offsets past the end, and the start offset survives a restart."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from helpers import confluent_produce, create_topic
from lifecycle_util import read_partition, watermarks

N = 100


def fill(bootstrap: str, topic: str, n: int = N, start: int = 0) -> None:
    delivered = confluent_produce(bootstrap, topic, [(b"k%d" % i, b"v%d" % i, None, 0) for i in range(start, start + n)])
    assert [m.offset() for m in delivered] == list(range(start, start + n))


def confluent_delete(bootstrap: str, topic: str, before: int):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, 0, before)
    return admin.delete_records([tp], request_timeout=15)[tp].result(20)


def test_delete_records_confluent(broker, topic):
    b = broker.bootstrap
    create_topic(b, topic, 1)
    fill(b, topic)

    res = confluent_delete(b, topic, 30)
    assert res.low_watermark == 30, f"DeleteRecords(before 30) returned low watermark {res.low_watermark}"
    assert watermarks(b, topic) == (30, N)
    admin = AdminClient({"bootstrap.servers": b})
    tp = TopicPartition(topic, 0)
    assert admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(15).offset == 30

    # From the beginning, and from an offset below the start: reset to 30, content intact.
    for start in (None, 10):
        got = read_partition(b, topic, start=start)
        assert [(s.offset, s.value) for s in got] == [(i, b"v%d" % i) for i in range(30, N)], \
            f"reading from {start} after DeleteRecords(30): first offsets {[s.offset for s in got[:5]]}"

    # A lower offset than the current start changes nothing.
    assert confluent_delete(b, topic, 5).low_watermark == 30

    # Past the high watermark: OFFSET_OUT_OF_RANGE, nothing deleted.
    with pytest.raises(KafkaException) as ei:
        confluent_delete(b, topic, N + 50)
    assert ei.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE, \
        f"DeleteRecords past the end: expected OFFSET_OUT_OF_RANGE, got {ei.value.args[0]}"
    assert watermarks(b, topic) == (30, N)

    # -1 (OFFSET_END) means "up to the high watermark": everything goes; appends continue.
    assert confluent_delete(b, topic, OFFSET_END).low_watermark == N
    assert watermarks(b, topic) == (N, N)
    fill(b, topic, 3, start=N)
    assert [s.offset for s in read_partition(b, topic, start=0)] == [N, N + 1, N + 2]


def test_delete_records_kafka_python(broker, topic):
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.admin import OffsetSpec as KOffsetSpec
    from kafka.errors import OffsetOutOfRangeError

    b = broker.bootstrap
    create_topic(b, topic, 1)
    fill(b, topic)
    admin = KafkaAdminClient(bootstrap_servers=b)
    try:
        tp = KTP(topic, 0)
        res = admin.delete_records({tp: 60})
        assert res[tp]["low_watermark"] == 60 and res[tp]["error_code"] == 0, f"delete_records: {res}"
        offs = admin.list_partition_offsets({tp: KOffsetSpec.EARLIEST})
        assert offs[tp].offset == 60, f"list_partition_offsets(EARLIEST) after delete_records(60): {offs}"

        with pytest.raises(OffsetOutOfRangeError):
            admin.delete_records({tp: N + 1})
    finally:
        admin.close()

    c = KafkaConsumer(bootstrap_servers=b, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        c.assign([tp])
        assert c.beginning_offsets([tp]) == {tp: 60}
        c.seek(tp, 20)  # below the start: reset to earliest
        got = []
        for _ in range(40):
            for msgs in c.poll(timeout_ms=500).values():
                got.extend((m.offset, m.value) for m in msgs)
            if len(got) >= N - 60:
                break
        assert got == [(i, b"v%d" % i) for i in range(60, N)], f"kafka-python read {got[:5]}... after reset"
    finally:
        c.close()


def test_delete_records_survives_restart(fresh_broker, topic):
    b = fresh_broker.bootstrap
    create_topic(b, topic, 1)
    fill(b, topic)
    assert confluent_delete(b, topic, 42).low_watermark == 42
    for how in ("restart", "kill"):
        if how == "restart":
            fresh_broker.restart()
        else:
            fresh_broker.kill()
            fresh_broker.start()
        assert watermarks(b, topic) == (42, N), f"log start offset after {how}"
        got = read_partition(b, topic)
        assert [s.offset for s in got] == list(range(42, N)), f"records after {how}: {[s.offset for s in got[:5]]}"


def test_delete_records_refused_on_compacted_topic(broker, topic):
    """As in Kafka: a log whose cleanup.policy lacks `delete` refuses DeleteRecords with
    POLICY_VIOLATION; with `compact,delete` it is allowed."""
    b = broker.bootstrap
    create_topic(b, topic, 1, {"cleanup.policy": "compact"})
    fill(b, topic, 10)
    try:
        res = confluent_delete(b, topic, 5)
        outcome = f"success with low watermark {res.low_watermark} (watermarks now {watermarks(b, topic)})"
    except KafkaException as e:
        outcome = e.args[0]
    assert isinstance(outcome, KafkaError) and outcome.code() == KafkaError.POLICY_VIOLATION, \
        f"DeleteRecords(before 5) on a cleanup.policy=compact topic: expected POLICY_VIOLATION " \
        f"(Kafka: 'Records of partition ... can not be deleted due to the configured policy'), got {outcome}"
    assert watermarks(b, topic) == (0, 10), "refused DeleteRecords moved the log start"

    both = topic + "-cd"
    create_topic(b, both, 1, {"cleanup.policy": "compact,delete"})
    fill_topic = [(b"k%d" % i, b"v%d" % i, None, 0) for i in range(10)]
    confluent_produce(b, both, fill_topic)
    assert confluent_delete(b, both, 5).low_watermark == 5
    assert watermarks(b, both) == (5, 10)


def test_delete_records_several_partitions_and_errors(broker, topic):
    """One request for several partitions: each gets its own low watermark or error."""
    b = broker.bootstrap
    create_topic(b, topic, 3)
    confluent_produce(b, topic, [(b"k", b"v%d" % i, None, p) for p in range(3) for i in range(10)])
    admin = AdminClient({"bootstrap.servers": b})
    tps = [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 10), TopicPartition(topic, 2, 11),
           TopicPartition(topic + "-missing", 0, 1)]
    futs = admin.delete_records(tps, request_timeout=15)
    results = {}
    for tp in tps:
        try:
            results[(tp.topic, tp.partition)] = futs[tp].result(20).low_watermark
        except KafkaException as e:
            results[(tp.topic, tp.partition)] = e.args[0].code()
    assert results == {(topic, 0): 3, (topic, 1): 10, (topic, 2): KafkaError.OFFSET_OUT_OF_RANGE,
                       (topic + "-missing", 0): KafkaError.UNKNOWN_TOPIC_OR_PART}, \
        f"per-partition DeleteRecords results: {results}"
    assert [watermarks(b, topic, p) for p in range(3)] == [(3, 10), (10, 10), (0, 10)]


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_delete_records_inside_a_batch(broker, topic, compression):
    """The new log start falls inside a batch: consumers see nothing below it, and a fetch
    below it is out of range although the batch holding that offset is still on disk."""
    from confluent_kafka import KafkaError as KE

    from helpers import confluent_producer
    from lifecycle_util import consumer

    b = broker.bootstrap
    create_topic(b, topic, 1)
    p = confluent_producer(b, linger_ms=200, compression_type=compression)
    for i in range(10):
        p.produce(topic, key=b"k", value=b"v%d" % i, partition=0)
    assert p.flush(30) == 0
    assert confluent_delete(b, topic, 5).low_watermark == 5
    assert watermarks(b, topic) == (5, 10)
    got = read_partition(b, topic)
    assert [(s.offset, s.value) for s in got] == [(i, b"v%d" % i) for i in range(5, 10)], \
        f"confluent-kafka read {[(s.offset, s.value) for s in got]} after DeleteRecords(5) inside a batch"

    from helpers import kp_consume
    kp = kp_consume(b, topic, [0], expected=5, timeout=15)
    assert [(r.offset, r.value) for r in kp] == [(i, b"v%d" % i) for i in range(5, 10)], \
        f"kafka-python read {[(r.offset, r.value) for r in kp]}"

    c = consumer(b, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 3)])
        import time
        deadline, err = time.monotonic() + 15, None
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is not None, f"fetch at 3 below log start 5 returned offset {m.offset()}"
            if m.error().code() != KE._PARTITION_EOF:
                err = m.error()
        assert err is not None and err.code() == KE._AUTO_OFFSET_RESET, f"fetch at 3 below log start 5: {err}"
    finally:
        c.close()
