"""Power loss under a running broker: `flush.messages=1` (broker `log.flush.interval.messages=1`)
must make every acknowledged record survive it.

The broker runs its logs on a test-only file-system layer (`SLUICE_TEST_VOLATILE_WRITES=1`,
`sluice_storage::VolatileBackend`) that keeps written bytes in the process's memory until they
are fsynced, so SIGKILL loses exactly what a power cut would: everything not yet synced. After a
restart (on the real file system) the acknowledged records are read back.

The second test is the proof that the first can fail: without `flush.messages=1` Sluice leaves
flushing to the OS, as Kafka does, and the same power loss loses acknowledged records; a broker
that forgot its fsync under `flush.messages=1` would fail the first test the same way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import crash_harness  # noqa: E402

TOPIC = "power"
RECORDS = 300


@pytest.fixture(autouse=True)
def _need_binary():
    if not crash_harness.sluice_bin().exists():
        pytest.skip(f"no broker binary at {crash_harness.sluice_bin()}")


def power_cut(tmp_path: Path, sets: list[str]) -> tuple[set[bytes], set[bytes]]:
    """Writes RECORDS acknowledged records, cuts the power, restarts; returns (acked, read)."""
    b = crash_harness.Broker(tmp_path / "data", crash_harness.free_port(), sets, tmp_path)
    os.environ["SLUICE_TEST_VOLATILE_WRITES"] = "1"
    try:
        b.start()
    finally:
        os.environ.pop("SLUICE_TEST_VOLATILE_WRITES", None)
    acked: set[bytes] = set()
    try:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        a.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])[TOPIC].result(30)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0,
                      "max.in.flight.requests.per.connection": 1})

        def cb(err, msg):
            if err is None:
                acked.add(msg.value())

        for i in range(RECORDS):
            p.produce(TOPIC, value=f"r{i}".encode(), on_delivery=cb)
            p.poll(0)
        assert p.flush(60) == 0
        assert len(acked) == RECORDS
        b.kill()  # the power cut: unsynced bytes die with the process
        b.start()  # the real file system from here on
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "power",
                      "enable.auto.commit": False})
        tp = TopicPartition(TOPIC, 0, 0)
        low, high = c.get_watermark_offsets(tp, timeout=30)
        c.assign([TopicPartition(TOPIC, 0, low)])
        read: set[bytes] = set()
        seen = low
        while seen < high:
            m = c.poll(5)
            if m is None:
                break
            if m.error() is None:
                read.add(m.value())
                seen = m.offset() + 1
        c.close()
        return acked, read
    finally:
        b.kill()


def test_flush_messages_1_keeps_every_acknowledged_record(tmp_path):
    acked, read = power_cut(tmp_path, ["log.flush.interval.messages=1"])
    lost = acked - read
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged records lost with flush.messages=1"


def test_without_fsync_the_power_cut_loses_acknowledged_records(tmp_path):
    acked, read = power_cut(tmp_path, [])
    assert len(acked - read) > 0, "the volatile layer lost nothing: it would not catch a missing fsync"
