"""Helpers shared by the client suite: topic admin, per-client produce/consume, murmur2.

Consumers never join a group (Sluice has no group coordinator yet): they `assign()` partitions
explicitly and start from the beginning, committing nothing.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Generous, bounded waits.
CONSUME_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Rec:
    """A consumed record, normalised across clients."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple = field(default=())
    timestamp: int | None = None


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A loopback TCP port that is free now, whose +1 is free too (reference controller)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000 and port_free(port + 1):
            return port
    raise RuntimeError("no free port pair found")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} not open after {timeout}s")


# -- murmur2, as Kafka's default partitioner computes it -----------------------------------

def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), returning a signed 32-bit int like Java."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (data[i4] & 0xFF) | ((data[i4 + 1] & 0xFF) << 8) | ((data[i4 + 2] & 0xFF) << 16) | (
            (data[i4 + 3] & 0xFF) << 24
        )
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rem = length % 4
    tail = length & ~3
    if rem == 3:
        h ^= (data[tail + 2] & 0xFF) << 16
    if rem >= 2:
        h ^= (data[tail + 1] & 0xFF) << 8
    if rem >= 1:
        h ^= data[tail] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner picks for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# -- topic admin (confluent-kafka; each client's own admin is tested separately) -----------

def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=15,
        request_timeout=20,
    )[name]
    fut.result(timeout=30)
    wait_for_topic(bootstrap, name, partitions)


def wait_for_topic(bootstrap: str, name: str, partitions: int | None = None, timeout: float = 20.0):
    """Wait until metadata shows the topic (with `partitions` partitions, all led); returns it."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        last = t
        if (
            t is not None
            and t.error is None
            and len(t.partitions) > 0
            and (partitions is None or len(t.partitions) == partitions)
            and all(p.leader >= 0 for p in t.partitions.values())
        ):
            return t
        time.sleep(0.2)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions: {last} {getattr(last, 'error', '')}")


def topic_exists(bootstrap: str, name: str) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    return name in md.topics


# -- confluent-kafka -------------------------------------------------------------------------

def confluent_producer(bootstrap: str, **conf):
    from confluent_kafka import Producer

    base = {"bootstrap.servers": bootstrap, "linger.ms": 5, "partitioner": "murmur2_random"}
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(base)


def confluent_produce(bootstrap: str, topic: str, records, **conf) -> list:
    """Produce (key, value[, headers[, partition]]) tuples; returns delivered messages in order.

    Raises AssertionError if any delivery failed.
    """
    p = confluent_producer(bootstrap, **conf)
    delivered, errors = [], []

    def cb(err, msg):
        (errors if err else delivered).append((err, msg) if err else msg)

    for rec in records:
        key, value = rec[0], rec[1]
        kw = {}
        if len(rec) > 2 and rec[2]:
            kw["headers"] = rec[2]
        if len(rec) > 3 and rec[3] is not None:
            kw["partition"] = rec[3]
        p.produce(topic, key=key, value=value, on_delivery=cb, **kw)
        p.poll(0)
    left = p.flush(30)
    assert left == 0, f"{left} messages not delivered in 30s"
    assert not errors, f"delivery errors: {[str(e) for e, _ in errors[:5]]}"
    return delivered


def confluent_consume(bootstrap: str, topic: str, partitions, expected: int, timeout: float = CONSUME_TIMEOUT_S,
                      **conf) -> list[Rec]:
    """Assign all `partitions` from the beginning and read until `expected` records arrive."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    base = {
        "bootstrap.servers": bootstrap,
        "group.id": unique("nogroup"),
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
    }
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    c = Consumer(base)
    out: list[Rec] = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in _parts(partitions)])
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer error: {msg.error()}")
            _, ts = msg.timestamp()
            out.append(
                Rec(msg.partition(), msg.offset(), msg.key(), msg.value(), tuple(msg.headers() or ()), ts)
            )
        # Catch anything beyond what was expected (duplicates) for a short while.
        extra_deadline = time.monotonic() + 0.5
        while time.monotonic() < extra_deadline:
            msg = c.poll(0.1)
            if msg is not None and not msg.error():
                _, ts = msg.timestamp()
                out.append(
                    Rec(msg.partition(), msg.offset(), msg.key(), msg.value(), tuple(msg.headers() or ()), ts)
                )
    finally:
        c.close()
    return out


def _parts(partitions) -> list[int]:
    return list(range(partitions)) if isinstance(partitions, int) else list(partitions)


# -- kafka-python ----------------------------------------------------------------------------

def kp_consume(bootstrap: str, topic: str, partitions, expected: int, timeout: float = CONSUME_TIMEOUT_S,
               **conf) -> list[Rec]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **conf,
    )
    out: list[Rec] = []
    try:
        tps = [TopicPartition(topic, p) for p in _parts(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            batch = c.poll(timeout_ms=500)
            for _tp, msgs in batch.items():
                for m in msgs:
                    out.append(Rec(m.partition, m.offset, m.key, m.value, tuple(m.headers or ()), m.timestamp))
        batch = c.poll(timeout_ms=300)
        for _tp, msgs in batch.items():
            for m in msgs:
                out.append(Rec(m.partition, m.offset, m.key, m.value, tuple(m.headers or ()), m.timestamp))
    finally:
        c.close()
    return out


def kp_produce(bootstrap: str, topic: str, records, **conf) -> list:
    """Produce (key, value[, headers[, partition]]) with kafka-python; returns RecordMetadata list."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, **{"linger_ms": 5, **conf})
    try:
        futs = []
        for rec in records:
            key, value = rec[0], rec[1]
            headers = list(rec[2]) if len(rec) > 2 and rec[2] else None
            partition = rec[3] if len(rec) > 3 else None
            futs.append(p.send(topic, key=key, value=value, headers=headers, partition=partition))
        p.flush(timeout=30)
        return [f.get(timeout=30) for f in futs]
    finally:
        p.close(timeout=10)


# -- aiokafka --------------------------------------------------------------------------------

def run_async(coro, timeout: float = 90.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def aio_produce(bootstrap: str, topic: str, records, **conf) -> list:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, **{"linger_ms": 5, **conf})
    await p.start()
    try:
        futs = []
        for rec in records:
            key, value = rec[0], rec[1]
            headers = list(rec[2]) if len(rec) > 2 and rec[2] else None
            partition = rec[3] if len(rec) > 3 else None
            futs.append(await p.send(topic, value=value, key=key, headers=headers, partition=partition))
        await p.flush()
        return [await f for f in futs]
    finally:
        await p.stop()


async def aio_consume(bootstrap: str, topic: str, partitions, expected: int, timeout: float = CONSUME_TIMEOUT_S,
                      **conf) -> list[Rec]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **conf,
    )
    await c.start()
    out: list[Rec] = []
    try:
        tps = [TopicPartition(topic, p) for p in _parts(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500)
            for _tp, msgs in batch.items():
                for m in msgs:
                    out.append(Rec(m.partition, m.offset, m.key, m.value, tuple(m.headers or ()), m.timestamp))
        batch = await c.getmany(timeout_ms=300)
        for _tp, msgs in batch.items():
            for m in msgs:
                out.append(Rec(m.partition, m.offset, m.key, m.value, tuple(m.headers or ()), m.timestamp))
    finally:
        await c.stop()
    return out


# -- kcat ------------------------------------------------------------------------------------

def kcat_path() -> str:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if not kcat:
        pytest.skip("kcat not installed (apt-get install kcat)")
    return kcat


def run_kcat(args: list[str], *, input: bytes | None = None, timeout: float = 60.0,
             check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([kcat_path(), *args], input=input, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kcat {' '.join(args)} exited {proc.returncode}\nstderr: {proc.stderr.decode(errors='replace')[-3000:]}"
        )
    return proc


def kcat_consume(bootstrap: str, topic: str, expected: int, extra: list[str] | None = None,
                 timeout: float = CONSUME_TIMEOUT_S) -> list[Rec]:
    """Consume with kcat -J (JSON envelope) from the beginning until end of all partitions."""
    import base64  # noqa: F401  (kept for readers: kcat -J prints keys/values as strings)
    import json

    proc = run_kcat(
        ["-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q",
         "-X", "enable.partition.eof=true", *(extra or [])],
        timeout=timeout,
    )
    out = []
    for line in proc.stdout.decode().splitlines():
        if not line.strip():
            continue
        j = json.loads(line)
        hdrs = j.get("headers") or []
        pairs = tuple((hdrs[i], None if hdrs[i + 1] is None else hdrs[i + 1].encode()) for i in range(0, len(hdrs), 2))
        out.append(
            Rec(
                j["partition"],
                j["offset"],
                None if j.get("key") is None else j["key"].encode(),
                None if j.get("payload") is None else j["payload"].encode(),
                pairs,
                j.get("ts"),
            )
        )
    assert len(out) >= expected, f"kcat read {len(out)} of {expected}: {proc.stderr.decode()[-2000:]}"
    return out


def by_partition(recs: list[Rec]) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {}
    for r in recs:
        out.setdefault(r.partition, []).append(r)
    return out


def assert_offsets_contiguous(recs: list[Rec]) -> None:
    """Each partition's offsets are 0, 1, 2, ... with no gap or duplicate."""
    for p, rs in by_partition(recs).items():
        offs = [r.offset for r in rs]
        assert offs == list(range(len(offs))), f"partition {p} offsets {offs[:20]}..."
