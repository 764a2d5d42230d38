"""Consumer-group tests (marker `groups`), including the seeds' examples.

Written before Sluice had a group coordinator and first deselected by default; they run by
default now that it has one. Deselect with `-m "not groups"` (e.g. against a build without it).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from helpers import REPO_ROOT, confluent_produce, create_topic, unique

pytestmark = pytest.mark.groups

SEED_EXAMPLES = REPO_ROOT.parent / "shared" / "tools" / "seed-examples.py"


def test_seed_examples(broker):
    """The seeds' two Python examples (kafka-python JSON + group, confluent-kafka keyed + poll)."""
    if not SEED_EXAMPLES.exists():
        pytest.skip(f"{SEED_EXAMPLES} not present")
    proc = subprocess.run([sys.executable, str(SEED_EXAMPLES), broker.bootstrap],
                          capture_output=True, text=True, timeout=170)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert proc.stdout.strip().splitlines()[-1].endswith("2 passed, 0 failed"), out[-2000:]


def test_confluent_subscribe_commit_resume(broker, topic):
    from confluent_kafka import Consumer

    create_topic(broker.bootstrap, topic, 2)
    confluent_produce(broker.bootstrap, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)],
                      acks="all")
    group = unique("grp")
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False}

    def read(n, commit):
        c = Consumer(conf)
        c.subscribe([topic])
        seen = []
        deadline = time.monotonic() + 45
        try:
            while len(seen) < n and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is None or m.error():
                    continue
                seen.append(m.value())
            if commit:
                c.commit(asynchronous=False)
        finally:
            c.close()
        return seen

    first = read(20, commit=True)
    assert sorted(first) == sorted(f"v{i}".encode() for i in range(20))
    confluent_produce(broker.bootstrap, topic, [(b"k-late", b"late")], acks="all")
    # A new member of the same group resumes after the committed offsets.
    assert read(1, commit=False) == [b"late"]


def test_kafka_python_group_consume(broker, topic):
    from kafka import KafkaConsumer

    create_topic(broker.bootstrap, topic, 3)
    confluent_produce(broker.bootstrap, topic, [(f"k{i}".encode(), f"v{i}".encode()) for i in range(30)],
                      acks="all")
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=unique("kpg"),
                      auto_offset_reset="earliest", consumer_timeout_ms=30000)
    seen = []
    try:
        for m in c:
            seen.append(m.value)
            if len(seen) == 30:
                break
    finally:
        c.close()
    assert sorted(seen) == sorted(f"v{i}".encode() for i in range(30))


async def test_aiokafka_group_consume(broker, topic):
    from aiokafka import AIOKafkaConsumer

    create_topic(broker.bootstrap, topic, 2)
    confluent_produce(broker.bootstrap, topic, [(None, f"v{i}".encode()) for i in range(10)], acks="all")
    c = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=unique("aiog"),
                         auto_offset_reset="earliest")
    await c.start()
    seen = []
    try:
        deadline = time.monotonic() + 45
        while len(seen) < 10 and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500)
            for msgs in batch.values():
                seen += [m.value for m in msgs]
        await c.commit()
    finally:
        await c.stop()
    assert sorted(seen) == sorted(f"v{i}".encode() for i in range(10))
