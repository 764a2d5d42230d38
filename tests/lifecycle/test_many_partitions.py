"""A broker with 2,000 partitions restarts with every partition serving its data, lazily.

20 topics x 100 partitions, one record in each, then:

- clean restart (SIGTERM): every partition still answers with its record; right after the
  restart the broker holds few file descriptors (partition logs open their files on first
  use, not all at start: before, 3 per partition, 6,000+ here, and 10,000 partitions ran
  into the usual 20,000 descriptor limit) and its RSS stays under a generous bound;
- a second record in each partition, then SIGKILL and restart (recovery by scanning): both
  records of every partition are there.

No timing is asserted (bench/partitions measures creation and restart times).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPICS = 20
PER_TOPIC = 100
# Generous: the broker needs well under 100 MiB for this; the bound catches per-partition
# buffers or handles that grow with the partition count.
RSS_BOUND = 256 * 1024 * 1024
# A few dozen are the broker's own (listeners, metadata log, lock, epoll, ...).
FD_BOUND = 400


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def produce_everywhere(bootstrap: str, topics: list[str], value: bytes) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    failed = []
    for t in topics:
        for i in range(PER_TOPIC):
            p.produce(t, key=f"{t}/{i}".encode(), value=value, partition=i,
                      on_delivery=lambda err, _m: err and failed.append(err))
        p.poll(0)
    assert p.flush(60) == 0, "records not delivered"
    assert not failed, failed[:5]


def read_everything(bootstrap: str, topics: list[str], per_partition: int) -> dict:
    """{(topic, partition): [values]} read from offset 0 of every partition."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"many-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 50,
    })
    try:
        c.assign([TopicPartition(t, i, 0) for t in topics for i in range(PER_TOPIC)])
        want = len(topics) * PER_TOPIC * per_partition
        got: dict = {}
        seen = 0
        empty_polls = 0
        while seen < want and empty_polls < 60:
            batch = c.consume(num_messages=1000, timeout=0.5)
            if not batch:
                empty_polls += 1
                continue
            for m in batch:
                assert m.error() is None, m.error()
                got.setdefault((m.topic(), m.partition()), []).append(m.value())
                seen += 1
        return got
    finally:
        c.close()


def check(got: dict, topics: list[str], values: list[bytes]) -> None:
    missing = [(t, i) for t in topics for i in range(PER_TOPIC) if got.get((t, i)) != values]
    assert not missing, f"{len(missing)} partitions without {values}: {missing[:5]} ..."


def test_many_partitions_restart_lazily_and_keep_their_data(fresh_broker):
    b = fresh_broker
    run = uuid.uuid4().hex[:8]
    topics = [f"many-{run}-{i:02d}" for i in range(TOPICS)]
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for i in range(0, TOPICS, 5):
        fs = admin.create_topics([NewTopic(t, PER_TOPIC, 1) for t in topics[i:i + 5]],
                                 request_timeout=120, operation_timeout=120)
        for f in fs.values():
            f.result()
    produce_everywhere(b.bootstrap, topics, b"one")

    b.restart()
    pid = b.proc.pid
    assert fds(pid) < FD_BOUND, f"{fds(pid)} descriptors open right after the restart"
    assert rss(pid) < RSS_BOUND, f"RSS {rss(pid) >> 20} MiB after the restart"
    check(read_everything(b.bootstrap, topics, 1), topics, [b"one"])

    produce_everywhere(b.bootstrap, topics, b"two")
    b.kill()
    b.start()
    pid = b.proc.pid
    assert rss(pid) < RSS_BOUND, f"RSS {rss(pid) >> 20} MiB after the unclean restart"
    check(read_everything(b.bootstrap, topics, 2), topics, [b"one", b"two"])
