"""Log compaction seen through real clients: after the cleaner ran, a consumer reading from
the beginning sees exactly the latest value of each live key at its original offset, no deleted
key, and new records still go to the next offsets. Uncompressed and compressed producers
(compressed batches lose some records, so the broker must rewrite them)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from helpers import aio_consume, confluent_producer, create_topic, kp_consume, run_async
from lifecycle_util import Stored, read_partition, wait_for, watermarks

# Segments roll on the first append after 100 ms; any dirty data makes the log cleanable;
# tombstones go in the first pass after the one that first saw them.
COMPACT = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "0",
}
KEYS = 20
ROUNDS = 3
DELETED = 5  # k0..k4 get tombstones
ROLL_PAUSE_S = 0.25  # > segment.ms: the next append starts a new segment
CLEAN_TIMEOUT_S = 30.0


def key(i: int) -> bytes:
    return b"k%02d" % i


def headers_for(k: bytes, v: bytes | None) -> tuple:
    return (("src", b"lifecycle"), ("kv", k + b"=" + (v or b"<null>")[:12]))


class Produced:
    """Every record produced, with the offset and timestamp its delivery report gave and the
    headers it was sent with (delivery reports carry no headers)."""

    def __init__(self, bootstrap: str, topic: str, compression: str):
        self.topic = topic
        self.p = confluent_producer(bootstrap, linger_ms=20, compression_type=compression,
                                    enable_idempotence=True)
        self.log: list[Stored] = []

    def batch(self, records: list[tuple[bytes, bytes | None]]) -> list[int]:
        """Produce `records`, wait for all delivery reports, then pause so the next append
        rolls the segment. Returns their offsets."""
        got: dict[int, Stored] = {}
        errors = []

        def cb(err, msg, i):
            if err:
                errors.append(err)
            else:
                got[i] = Stored(msg.offset(), msg.key(), msg.value(), msg.timestamp()[1],
                                headers_for(msg.key(), msg.value()))

        for i, (k, v) in enumerate(records):
            self.p.produce(self.topic, key=k, value=v, partition=0, headers=list(headers_for(k, v)),
                           on_delivery=lambda err, msg, i=i: cb(err, msg, i))
        assert self.p.flush(30) == 0, "records not delivered within 30s"
        assert not errors, f"delivery errors: {errors[:5]}"
        recs = [got[i] for i in range(len(records))]
        offsets = [r.offset for r in recs]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), offsets
        self.log.extend(recs)
        time.sleep(ROLL_PAUSE_S)
        return offsets

    def expected(self, keep_tombstones: bool) -> list[Stored]:
        """The fully cleaned log: the latest record per key among all but the last record
        (which sits alone in the active segment, never cleaned), then that last record.
        Offsets, timestamps and headers are those of the original records."""
        *cleanable, last = self.log
        latest: dict[bytes, Stored] = {}
        for r in cleanable:
            latest[r.key] = r
        out = [r for r in latest.values() if keep_tombstones or r.value is not None]
        out.sort(key=lambda r: r.offset)
        return out + [last]


def view(bootstrap: str, topic: str) -> list[Stored]:
    return read_partition(bootstrap, topic)


def cleaner_caught_up(bootstrap: str, name: str) -> None:
    """Positive evidence, instead of a fixed sleep, that the cleaner has had its chance at every
    log it may clean: a canary compacted topic is cleaned twice, the second time with a small
    dirty section (a dirty ratio of about 0.3). The cleaner takes the dirtiest cleanable log
    first (broker/src/lifecycle.rs, clean_dirtiest), so by then any never-cleaned log (ratio 1.0)
    that it considered cleanable has been cleaned: a negative check after this cannot pass
    merely because the broker is slow."""
    canary = f"{name}-canary"
    create_topic(bootstrap, canary, 1, COMPACT)
    prod = Produced(bootstrap, canary, "none")
    for r in range(2):
        prod.batch([(key(i), b"c%d" % r) for i in range(5)])
    prod.batch([(b"roll", b"1")])
    wait_for(lambda: view(bootstrap, canary), lambda g: g == prod.expected(keep_tombstones=False),
             CLEAN_TIMEOUT_S, f"the first cleaning of the canary {canary}")
    prod.batch([(key(0), b"c2")])
    prod.batch([(b"roll", b"2")])
    wait_for(lambda: view(bootstrap, canary), lambda g: g == prod.expected(keep_tombstones=False),
             CLEAN_TIMEOUT_S, f"the second cleaning of the canary {canary} (dirty ratio ~0.3)")


def diff(got: list[Stored], want: list[Stored]) -> str:
    g, w = set(got), set(want)
    return (f"unexpected (not cleaned or wrong offset/value): {sorted(g - w, key=lambda s: s.offset)[:10]}; "
            f"missing: {sorted(w - g, key=lambda s: s.offset)[:10]}; got {len(got)} want {len(want)}")


@pytest.mark.parametrize("compression", ["none", "zstd", "lz4"])
def test_compaction_keeps_latest_value_per_key(broker, topic, compression):
    b = broker.bootstrap
    create_topic(b, topic, 1, COMPACT)
    prod = Produced(b, topic, compression)

    # Several rounds of values for every key, each in its own segment(s), then tombstones.
    for r in range(ROUNDS):
        prod.batch([(key(i), b"v%d-%02d-" % (r, i) + b"x" * 100) for i in range(KEYS)])
    prod.batch([(key(i), None) for i in range(DELETED)])
    prod.batch([(b"roll", b"1")])  # rolls: everything before it is cleanable

    # Pass 1: old values are gone; tombstones may remain (Kafka keeps them until a later pass).
    with_tomb = prod.expected(keep_tombstones=True)
    live = prod.expected(keep_tombstones=False)

    def cleaned_once(got):
        return got == [s for s in with_tomb if s in set(got)] and set(live) <= set(got)

    got = wait_for(lambda: view(b, topic), cleaned_once, CLEAN_TIMEOUT_S,
                   f"the first cleaning of {topic} ({len(prod.log)} records -> {len(with_tomb)})")

    # New dirty data (updates, one deleted key comes back) triggers another pass, which drops
    # the tombstones (delete.retention.ms=0 has passed since the pass that saw them).
    # An empty value is not a tombstone: key 10's latest value is b"" and must survive.
    prod.batch([(key(i), b"v9-%02d" % i) for i in (0, 5, 6, 7, 8, 9)] + [(key(10), b"")])
    prod.batch([(b"roll", b"2")])
    want = prod.expected(keep_tombstones=False)
    try:
        got = wait_for(lambda: view(b, topic), lambda g: g == want, CLEAN_TIMEOUT_S,
                       f"the second cleaning of {topic}")
    except AssertionError:
        got = view(b, topic)
        raise AssertionError(f"{topic} ({compression}) not compacted as expected within "
                             f"{CLEAN_TIMEOUT_S}s: {diff(got, want)}") from None

    live_keys = {s.key for s in got}
    deleted = {key(i) for i in range(1, DELETED)}
    assert not live_keys & deleted, f"deleted keys still readable: {sorted(live_keys & deleted)}"
    assert {key(i) for i in range(KEYS)} - deleted <= live_keys
    assert all(s.value is not None for s in got), "a tombstone survived the second pass"
    assert [s.value for s in got if s.key == key(10)] == [b""], "an empty (non-null) value was treated as a tombstone"

    # A fetch from an offset the cleaner removed starts at the next surviving record.
    removed = [r.offset for r in prod.log if r.key == key(DELETED)][0]  # round 0 value of a live key
    surviving = sorted(s.offset for s in want)
    after = read_partition(b, topic, start=removed)
    assert after and after[0].offset == min(o for o in surviving if o > removed), \
        f"fetch from removed offset {removed} started at {after[0].offset if after else None}"

    # Other clients parse the rewritten batches the same way.
    plain = [(s.offset, s.key, s.value, s.headers) for s in want]
    kp = kp_consume(b, topic, [0], expected=len(want), timeout=20)
    assert [(r.offset, r.key, r.value, tuple((k, v) for k, v in r.headers)) for r in kp] == plain, \
        "kafka-python reads the compacted log differently"
    aio = run_async(aio_consume(b, topic, [0], expected=len(want), timeout=20))
    assert [(r.offset, r.key, r.value, tuple((k, v) for k, v in r.headers)) for r in aio] == plain, \
        "aiokafka reads the compacted log differently"

    # New records append at the next offsets, after the offset gaps the cleaner left.
    low, high = watermarks(b, topic)
    assert high == prod.log[-1].offset + 1, f"high watermark {high} after last produced offset {prod.log[-1].offset}"
    more = prod.batch([(key(i), b"after-%02d" % i) for i in range(3)])
    assert more == [high, high + 1, high + 2], f"records after cleaning got offsets {more}, expected from {high}"
    tail = read_partition(b, topic, start=high)
    assert tail == prod.log[-3:]


def test_keyless_record_to_compacted_topic_is_refused_confluent(broker, topic):
    b = broker.bootstrap
    create_topic(b, topic, 1, {"cleanup.policy": "compact"})
    p = confluent_producer(b, linger_ms=0, retries=0)
    reports = []
    # Separate batches: a batch holding a keyless record is refused as a whole, as in Kafka.
    p.produce(topic, key=None, value=b"no key", partition=0, on_delivery=lambda e, m: reports.append((e, m)))
    assert p.flush(30) == 0
    p.produce(topic, key=b"k", value=b"keyed", partition=0, on_delivery=lambda e, m: reports.append((e, m)))
    assert p.flush(30) == 0
    assert len(reports) == 2
    (err, _), (err2, msg2) = reports
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, \
        f"keyless record to a compacted topic: expected INVALID_RECORD, got {err}"
    assert err2 is None, f"the keyed record after it failed: {err2}"
    assert msg2.offset() == 0, f"the refused record took an offset: keyed record at {msg2.offset()}"
    assert [(s.key, s.value) for s in read_partition(b, topic)] == [(b"k", b"keyed")]


def test_compaction_of_size_rolled_segments(broker, topic):
    """~3 MiB of updates to 100 keys in 1 MiB segments: everything below the active segment
    is compacted to one record per key, and the segments shrink on disk."""
    b = broker.bootstrap
    create_topic(b, topic, 1, {**COMPACT, "segment.bytes": str(1 << 20), "segment.ms": "3600000"})
    prod = Produced(b, topic, "none")
    filler = b"y" * 1000
    prod.p = confluent_producer(b, linger_ms=20, batch_size=64 * 1024, enable_idempotence=True)
    for r in range(3):
        prod.batch([(b"key-%03d" % i, b"%d-%03d-" % (r, i) + filler) for i in range(1000)])
    high = prod.log[-1].offset + 1
    part_dir = Path(broker.data_dir) / f"{topic}-0"
    segments = sorted(part_dir.glob("*.log"))
    assert len(segments) >= 3, f"3 MiB in 1 MiB segments made {[p.name for p in segments]}"
    active_base = int(segments[-1].stem)
    latest: dict[bytes, Stored] = {}
    for r in prod.log:
        if r.offset < active_base:
            latest[r.key] = r
    want = sorted(latest.values(), key=lambda r: r.offset) + [r for r in prod.log if r.offset >= active_base]
    got = wait_for(lambda: view(b, topic), lambda g: g == want, CLEAN_TIMEOUT_S,
                   f"compaction of the size-rolled segments of {topic} (active segment at {active_base})")
    assert watermarks(b, topic)[1] == high
    on_disk = sum(p.stat().st_size for p in part_dir.glob("*.log"))
    assert on_disk < (len(got) + 50) * 1100, f"{on_disk} bytes on disk for {len(got)} records after compaction"


def test_min_compaction_lag_holds_back_cleaning(broker, topic):
    """Records younger than min.compaction.lag.ms are not compacted."""
    b = broker.bootstrap
    create_topic(b, topic, 1, {**COMPACT, "min.compaction.lag.ms": "3600000"})
    prod = Produced(b, topic, "none")
    for r in range(ROUNDS):
        prod.batch([(key(i), b"v%d" % r) for i in range(5)])
    prod.batch([(b"roll", b"1")])
    cleaner_caught_up(b, topic)
    assert view(b, topic) == prod.log, "records younger than min.compaction.lag.ms=1h were compacted"


def test_max_compaction_lag_forces_cleaning(broker, topic):
    """KIP-354: a dirty segment older than max.compaction.lag.ms is cleaned even though the
    log's dirty ratio is below min.cleanable.dirty.ratio."""
    b = broker.bootstrap
    create_topic(b, topic, 1, {**COMPACT, "min.cleanable.dirty.ratio": "0.9"})
    prod = Produced(b, topic, "none")
    prod.batch([(key(i), b"v0-%02d" % i + b"z" * 200) for i in range(KEYS)])
    prod.batch([(b"roll", b"1")])
    wait_for(lambda: view(b, topic), lambda g: g == prod.expected(keep_tombstones=False),
             CLEAN_TIMEOUT_S, f"the first cleaning of {topic} (dirty ratio 1.0)")

    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": b})
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("max.compaction.lag.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], request_timeout=15)[res].result(20)
    prod.batch([(key(0), b"v1-00")])  # a small dirty section: ratio well below 0.9
    prod.batch([(b"roll", b"2")])
    want = prod.expected(keep_tombstones=False)
    try:
        wait_for(lambda: view(b, topic), lambda g: g == want, 6.0,
                 f"max.compaction.lag.ms=1000 to force cleaning of {topic}")
    except AssertionError:
        got = view(b, topic)
        raise AssertionError(
            f"max.compaction.lag.ms=1000 ignored: dirty records 6 s old not compacted because the "
            f"dirty ratio is below min.cleanable.dirty.ratio=0.9 (Kafka, KIP-354, cleans them): "
            f"{diff(got, want)}") from None


def test_compact_delete_topic_applies_retention(broker, topic):
    """cleanup.policy=compact,delete: time retention deletes expired segments too."""
    b = broker.bootstrap
    create_topic(b, topic, 1, {**COMPACT, "cleanup.policy": "compact,delete", "retention.ms": "60000"})
    old = int(time.time() * 1000) - 86_400_000
    p = confluent_producer(b, linger_ms=0)
    for i in range(20):
        p.produce(topic, key=key(i % 5), value=b"old-%d" % i, partition=0, timestamp=old)
    assert p.flush(30) == 0
    wait_for(lambda: watermarks(b, topic), lambda w: w == (20, 20), 20.0,
             f"retention.ms on the compact,delete topic {topic}")


@pytest.mark.parametrize("compression", ["gzip", "snappy", "lz4", "zstd"])
def test_keyless_record_in_compressed_batch_is_refused(broker, topic, compression):
    """One keyless record inside a compressed batch of keyed ones: INVALID_RECORD (the broker
    must look inside the compressed records) for the whole batch, nothing of it stored."""
    b = broker.bootstrap
    create_topic(b, topic, 1, {"cleanup.policy": "compact"})
    p = confluent_producer(b, linger_ms=200, retries=0, compression_type=compression)
    p.list_topics(topic, timeout=10)  # connected first, so the records below form one batch
    reports: dict[int, tuple] = {}
    recs = [(b"k%d" % i, b"compressible value %d " % i * 20) for i in range(10)]
    recs.insert(5, (None, b"compressible value " * 20))
    for i, (k, v) in enumerate(recs):
        p.produce(topic, key=k, value=v, partition=0,
                  on_delivery=lambda e, m, i=i: reports.__setitem__(i, (e, m.offset())))
    assert p.flush(30) == 0
    assert len(reports) == len(recs)
    keyless_err = reports[5][0]
    assert keyless_err is not None and keyless_err.code() == KafkaError.INVALID_RECORD, \
        f"{compression} batch with a keyless record to a compacted topic: {keyless_err}, want INVALID_RECORD"
    # librdkafka normally sends all eleven as one batch, refused as a whole; should it split
    # them, what was accepted must be exactly what is stored.
    ok = [(off, recs[i][1]) for i, (e, off) in sorted(reports.items()) if e is None]
    stored = [(s.offset, s.value) for s in read_partition(b, topic)]
    assert stored == ok, f"{compression}: stored {[o for o, _ in stored]}, accepted {[o for o, _ in ok]}"


def test_keyless_record_to_compacted_topic_is_refused_kafka_python(broker, topic):
    from kafka import KafkaProducer
    from kafka.errors import InvalidRecordError

    b = broker.bootstrap
    create_topic(b, topic, 1, {"cleanup.policy": "compact"})
    p = KafkaProducer(bootstrap_servers=b, retries=0, linger_ms=0)
    try:
        fut = p.send(topic, key=None, value=b"no key", partition=0)
        with pytest.raises(InvalidRecordError):
            fut.get(timeout=30)
        md = p.send(topic, key=b"k", value=b"keyed", partition=0).get(timeout=30)
        assert md.offset == 0, f"the refused record took an offset: keyed record at {md.offset}"
    finally:
        p.close(timeout=10)


def test_compacted_log_survives_kill(fresh_broker, topic):
    """The cleaned log (offset gaps, rewritten segments) recovers after SIGKILL unchanged and
    takes new records at the next offset."""
    b = fresh_broker.bootstrap
    create_topic(b, topic, 1, COMPACT)
    prod = Produced(b, topic, "none")
    for r in range(ROUNDS):
        prod.batch([(key(i), b"v%d-%02d" % (r, i)) for i in range(KEYS)])
    prod.batch([(b"roll", b"1")])
    want = prod.expected(keep_tombstones=False)
    wait_for(lambda: view(b, topic), lambda g: g == want, CLEAN_TIMEOUT_S, f"the cleaning of {topic}")

    fresh_broker.kill()
    fresh_broker.start()
    got = view(b, topic)
    assert got == want, f"compacted log changed across SIGKILL + restart: {diff(got, want)}"
    assert watermarks(b, topic)[1] == prod.log[-1].offset + 1
    more = prod.batch([(key(0), b"after-restart")])
    assert more == [prod.log[-2].offset + 1], f"first record after restart got offset {more}"


def test_switching_to_compact_starts_cleaning(broker, topic):
    """cleanup.policy changed from delete to compact on a live topic: the cleaner takes it."""
    b = broker.bootstrap
    create_topic(b, topic, 1, {**COMPACT, "cleanup.policy": "delete"})
    prod = Produced(b, topic, "none")
    for r in range(ROUNDS):
        prod.batch([(key(i), b"v%d-%02d" % (r, i)) for i in range(10)])
    prod.batch([(b"roll", b"1")])
    cleaner_caught_up(b, topic)  # a delete-policy topic is never compacted
    assert view(b, topic) == prod.log, "a cleanup.policy=delete topic lost records"

    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": b})
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], request_timeout=15)[res].result(20)
    want = prod.expected(keep_tombstones=False)
    wait_for(lambda: view(b, topic), lambda g: g == want, CLEAN_TIMEOUT_S,
             f"compaction of {topic} after switching cleanup.policy to compact")
