"""Helpers for the log-lifecycle tests: whole-partition reads, watermarks, bounded waits."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Stored:
    """A record as read back: offset, key, value, timestamp, headers."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None
    headers: tuple = ()


def consumer(bootstrap: str, **conf):
    from confluent_kafka import Consumer

    base = {
        "bootstrap.servers": bootstrap,
        "group.id": f"nogroup-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }
    base.update(conf)
    return Consumer(base)


def read_partition(bootstrap: str, topic: str, partition: int = 0, start: int | None = None,
                   timeout: float = 20.0, **conf) -> list[Stored]:
    """Everything in the partition from `start` (default: the beginning) to its end, read with
    a fresh assign()ed confluent-kafka consumer, stopping at the partition-EOF event."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    c = consumer(bootstrap, **conf)
    out: list[Stored] = []
    try:
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING if start is None else start)])
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}[{partition}]: no end-of-partition within {timeout}s "
                                     f"({len(out)} records read)")
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(f"consumer error on {topic}[{partition}]: {msg.error()}")
            out.append(Stored(msg.offset(), msg.key(), msg.value(), msg.timestamp()[1],
                              tuple(msg.headers() or ())))
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    """(log start offset, high watermark) as ListOffsets (earliest, latest) reports them."""
    from confluent_kafka import TopicPartition

    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def wait_for(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, what: str,
             interval: float = 0.3) -> T:
    """Call `probe` until `ok(result)`; AssertionError naming `what` and the last result if
    `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if ok(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}"[:4000])
        time.sleep(interval)
