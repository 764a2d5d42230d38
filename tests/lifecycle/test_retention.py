"""Retention through real clients: `retention.ms` (by the newest record timestamp of a
segment, an expired active segment included) and `retention.bytes` (whole non-active
segments, oldest first). The log start offset that ListOffsets reports moves up, and a
consumer below it is reset to it."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from helpers import confluent_producer, create_topic
from lifecycle_util import read_partition, wait_for, watermarks

DAY_MS = 86_400_000
MIB = 1 << 20
RETENTION_TIMEOUT_S = 20.0


def produce(bootstrap: str, topic: str, values: list[bytes], timestamp: int | None = None, **conf) -> list[int]:
    """Produce to partition 0 (timestamp: CreateTime in ms, None = now); returns offsets."""
    p = confluent_producer(bootstrap, **{"linger_ms": 5, **conf})
    got: dict[int, int] = {}
    errors = []

    def cb(err, msg, i):
        if err:
            errors.append(err)
        else:
            got[i] = msg.offset()

    for i, v in enumerate(values):
        kw = {} if timestamp is None else {"timestamp": timestamp}
        p.produce(topic, key=b"k%d" % i, value=v, partition=0,
                  on_delivery=lambda err, msg, i=i: cb(err, msg, i), **kw)
        if i % 1000 == 999:
            p.poll(0)
    assert p.flush(60) == 0, "records not delivered within 60s"
    assert not errors, f"delivery errors: {errors[:5]}"
    return [got[i] for i in range(len(values))]


def retention_caught_up(bootstrap: str, name: str) -> None:
    """Positive evidence, instead of a fixed sleep, that a complete retention pass ran after
    this call: two canary topics, the second written only once the first was trimmed, each
    holding a day-old record that retention.ms=60000 deletes. The pass that trimmed the first
    canary started after it was written and, since the second canary was trimmed too, has
    finished (passes run one after another), so it visited every other log: a negative check
    after this cannot pass merely because the broker is slow."""
    old = int(time.time() * 1000) - DAY_MS
    for i in range(2):
        canary = f"{name}-canary{i}"
        create_topic(bootstrap, canary, 1, {"retention.ms": "60000"})
        produce(bootstrap, canary, [b"day-old"], timestamp=old)
        wait_for(lambda: watermarks(bootstrap, canary), lambda w: w == (1, 1), RETENTION_TIMEOUT_S,
                 f"retention to delete the canary {canary}")


def earliest_via_admin(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, 0)
    return admin.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=10)[tp].result(15).offset


def test_time_retention_deletes_expired_records(broker, topic):
    b = broker.bootstrap
    create_topic(b, topic, 1, {"retention.ms": "60000"})
    old = int(time.time() * 1000) - DAY_MS
    offsets = produce(b, topic, [b"old-%d" % i for i in range(50)], timestamp=old)
    assert offsets == list(range(50))

    # The only (active) segment is expired by its newest timestamp: rolled, then deleted.
    low, high = wait_for(lambda: watermarks(b, topic), lambda w: w == (50, 50), RETENTION_TIMEOUT_S,
                         f"retention.ms to delete the day-old records of {topic} (want (earliest, latest) = (50, 50))")
    assert earliest_via_admin(b, topic) == 50, "AdminClient.list_offsets(earliest) disagrees with the watermarks"
    admin = AdminClient({"bootstrap.servers": b})
    tp = TopicPartition(topic, 0)
    by_time = admin.list_offsets({tp: OffsetSpec.for_timestamp(old - 1000)})[tp].result(15).offset
    assert by_time == -1, f"ListOffsets by a timestamp only deleted records had: {by_time} (want -1: none at or after it)"

    new = produce(b, topic, [b"new-%d" % i for i in range(5)])
    assert new == [50, 51, 52, 53, 54], f"records after retention got offsets {new}"
    by_time = admin.list_offsets({tp: OffsetSpec.for_timestamp(old - 1000)})[tp].result(15).offset
    assert by_time == 50, f"ListOffsets by an old timestamp after retention: {by_time}, want the first kept offset 50"

    # A consumer at offset 0 (below the log start) is reset to the earliest offset.
    got = read_partition(b, topic, start=0)
    assert [(s.offset, s.value) for s in got] == [(50 + i, b"new-%d" % i) for i in range(5)], \
        f"consumer from offset 0 after retention read {[(s.offset, s.value) for s in got][:10]}"

    # With auto.offset.reset=error the same position is reported as out of range.
    from lifecycle_util import consumer

    c = consumer(b, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 15
        err = None
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is not None, f"read offset {m.offset()} from below the log start"
            if m.error().code() != KafkaError._PARTITION_EOF:
                err = m.error()
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, \
            f"fetch at offset 0 below log start 50: expected an offset-out-of-range reset error, got {err}"
    finally:
        c.close()


def test_time_retention_keeps_segment_with_recent_records(broker, topic):
    """A segment is kept while its newest record is within retention.ms, whatever older
    timestamps it holds."""
    b = broker.bootstrap
    create_topic(b, topic, 1, {"retention.ms": "60000"})
    old = int(time.time() * 1000) - DAY_MS
    # Recent records first: had the day-old ones come first, the segment would have been
    # (rightly) expired for a moment before the recent ones arrived.
    produce(b, topic, [b"new-%d" % i for i in range(10)])
    produce(b, topic, [b"old-%d" % i for i in range(10)], timestamp=old)
    retention_caught_up(b, topic)
    assert watermarks(b, topic) == (0, 20), "a segment whose newest record is recent was deleted"
    got = read_partition(b, topic)
    assert [s.timestamp for s in got[10:]] == [old] * 10, "the producer's old CreateTime was not kept"
    assert [s.value for s in got] == [b"new-%d" % i for i in range(10)] + [b"old-%d" % i for i in range(10)]


def test_size_retention_deletes_oldest_segments(broker, topic):
    b = broker.bootstrap
    create_topic(b, topic, 1, {"retention.bytes": str(MIB), "segment.bytes": str(MIB)})
    n, size = 4096, 1000
    values = [b"%06d-" % i + b"x" * (size - 7) for i in range(n)]  # ~4 MiB
    offsets = produce(b, topic, values, batch_size=64 * 1024, linger_ms=20)
    assert offsets == list(range(n))

    low, high = wait_for(lambda: watermarks(b, topic), lambda w: w[0] > 0, RETENTION_TIMEOUT_S,
                         f"retention.bytes to delete the oldest segments of {topic}")
    retention_caught_up(b, topic)  # further passes ran: the state must be stable
    low, high = watermarks(b, topic)
    assert high == n
    kept = high - low
    # Oldest segments go while what remains is still >= retention.bytes: between 1 MiB and
    # 1 MiB + one segment stay (in record payload: ~1000 bytes per record, overhead < 10%).
    assert MIB // (size + 100) <= kept <= 2 * MIB // size, \
        f"retention.bytes=1MiB, segment.bytes=1MiB: kept offsets {low}..{high} ({kept} records of ~{size} B)"

    part_dir = Path(broker.data_dir) / f"{topic}-0"
    on_disk = sum(f.stat().st_size for f in part_dir.glob("*.log"))
    assert MIB <= on_disk < 2 * MIB + 64 * 1024, f"{on_disk} bytes of segments left in {part_dir}"

    # Every record from the new log start on is intact, at its original offset.
    got = read_partition(b, topic, start=0, timeout=30)
    assert [s.offset for s in got] == list(range(low, high)), \
        f"read {len(got)} records, offsets {got[0].offset if got else None}..; want {low}..{high - 1}"
    bad = [s.offset for s in got if s.value != values[s.offset]]
    assert not bad, f"records with wrong content at offsets {bad[:10]}"


def test_lowering_retention_ms_on_a_live_topic(broker, topic):
    """Day-old records are kept under the default 7-day retention, and go once retention.ms
    is lowered with IncrementalAlterConfigs."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    b = broker.bootstrap
    create_topic(b, topic, 1, {"segment.ms": "100"})
    old = int(time.time() * 1000) - DAY_MS
    produce(b, topic, [b"old-%d" % i for i in range(20)], timestamp=old)
    retention_caught_up(b, topic)
    assert watermarks(b, topic) == (0, 20), "day-old records deleted under the 7-day default retention"

    admin = AdminClient({"bootstrap.servers": b})
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], request_timeout=15)[res].result(20)
    wait_for(lambda: watermarks(b, topic), lambda w: w == (20, 20), RETENTION_TIMEOUT_S,
             f"retention.ms=1h (set on the live topic) to delete the day-old records of {topic}")


def test_live_consumer_across_time_retention(broker, topic):
    """A consumer reading while retention deletes what it is reading (an expired active
    segment included) goes on without error and receives the records produced afterwards."""
    from lifecycle_util import consumer

    b = broker.bootstrap
    create_topic(b, topic, 1, {"retention.ms": "60000"})
    c = consumer(b, **{"enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        c.poll(0.5)
        old = int(time.time() * 1000) - DAY_MS
        produce(b, topic, [b"old-%d" % i for i in range(30)], timestamp=old)
        wait_for(lambda: watermarks(b, topic), lambda w: w == (30, 30), RETENTION_TIMEOUT_S,
                 f"retention of the day-old records of {topic}")
        produce(b, topic, [b"new-%d" % i for i in range(5)])
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(v == b"new-4" for _, v in seen):
            m = c.poll(0.3)
            if m is None:
                continue
            assert m.error() is None, f"live consumer error across retention: {m.error()}"
            seen.append((m.offset(), m.value()))
        new = [(o, v) for o, v in seen if v.startswith(b"new-")]
        assert new == [(30 + i, b"new-%d" % i) for i in range(5)], f"live consumer saw {seen[-10:]}"
        old_seen = [o for o, v in seen if v.startswith(b"old-")]
        assert old_seen == list(range(len(old_seen))), f"old records seen out of order: {old_seen}"
    finally:
        c.close()
