"""Message size limits: a 1 MiB record round-trips; an oversized one is MESSAGE_TOO_LARGE."""

from __future__ import annotations

import hashlib
import os

import pytest
from confluent_kafka import KafkaError, Producer

from helpers import (
    aio_consume,
    aio_produce,
    confluent_consume,
    confluent_produce,
    create_topic,
    kp_consume,
    kp_produce,
    run_async,
)

MIB = 1024 * 1024
BIG_TOPIC_CONFIG = {"max.message.bytes": str(2 * MIB + 1024)}


def _big(tag: bytes) -> bytes:
    # Incompressible, so codecs cannot hide the size.
    return tag + os.urandom(MIB - len(tag))


def test_one_mib_message_confluent_to_all(broker, topic):
    create_topic(broker.bootstrap, topic, 1, BIG_TOPIC_CONFIG)
    v1, v2 = _big(b"first"), _big(b"second")
    confluent_produce(broker.bootstrap, topic, [(b"big1", v1, None, 0), (b"big2", v2, None, 0)],
                      acks="all", message_max_bytes=3 * MIB)
    got = confluent_consume(broker.bootstrap, topic, 1, 2, fetch_max_bytes=4 * MIB,
                            max_partition_fetch_bytes=4 * MIB, receive_message_max_bytes=8 * MIB)
    assert [(r.offset, r.key, len(r.value)) for r in got] == [(0, b"big1", MIB), (1, b"big2", MIB)]
    assert hashlib.sha256(got[0].value).digest() == hashlib.sha256(v1).digest()
    assert got[1].value == v2
    kp = kp_consume(broker.bootstrap, topic, 1, 2, max_partition_fetch_bytes=4 * MIB, fetch_max_bytes=8 * MIB)
    assert [r.value for r in kp] == [v1, v2]
    aio = run_async(aio_consume(broker.bootstrap, topic, 1, 2, max_partition_fetch_bytes=4 * MIB,
                                fetch_max_bytes=8 * MIB))
    assert [r.value for r in aio] == [v1, v2]


def test_one_mib_message_python_clients(broker, topic):
    create_topic(broker.bootstrap, topic, 1, BIG_TOPIC_CONFIG)
    v1, v2 = _big(b"kafka-python"), _big(b"aiokafka")
    md = kp_produce(broker.bootstrap, topic, [(b"kp", v1, None, 0)], acks="all", max_request_size=3 * MIB)
    assert md[0].offset == 0
    md = run_async(aio_produce(broker.bootstrap, topic, [(b"aio", v2, None, 0)], acks="all",
                               max_request_size=3 * MIB))
    assert md[0].offset == 1
    got = confluent_consume(broker.bootstrap, topic, 1, 2, fetch_max_bytes=4 * MIB,
                            max_partition_fetch_bytes=4 * MIB, receive_message_max_bytes=8 * MIB)
    assert [(r.key, r.value) for r in got] == [(b"kp", v1), (b"aio", v2)]


def _confluent_produce_error(bootstrap: str, topic: str, value: bytes):
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8 * MIB, "acks": "all",
                  "retries": 0})
    result = []
    p.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: result.append(err))
    assert p.flush(30) == 0
    assert len(result) == 1
    return result[0]


def test_too_large_for_topic_limit(broker, topic):
    create_topic(broker.bootstrap, topic, 1, {"max.message.bytes": "10000"})
    err = _confluent_produce_error(broker.bootstrap, topic, os.urandom(20_000))
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    # Just under the limit is fine.
    ok = _confluent_produce_error(broker.bootstrap, topic, os.urandom(9_000))
    assert ok is None

    from kafka.errors import MessageSizeTooLargeError

    with pytest.raises(MessageSizeTooLargeError):
        kp_produce(broker.bootstrap, topic, [(None, os.urandom(20_000), None, 0)], acks="all", retries=0)

    # Nothing of the rejected records was stored.
    got = confluent_consume(broker.bootstrap, topic, 1, 1)
    assert [len(r.value) for r in got] == [9_000]


def test_too_large_for_broker_default(broker, topic):
    """Without a topic override the broker's message.max.bytes (1 MiB + 12 by default) applies."""
    create_topic(broker.bootstrap, topic, 1)
    err = _confluent_produce_error(broker.bootstrap, topic, os.urandom(MIB + 200_000))
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err


def test_small_fetch_limits_still_make_progress(broker, topic):
    """Tiny fetch limits: the broker still returns at least one batch per fetch (KIP-74), so
    a consumer reads everything, including a record bigger than its limits."""
    create_topic(broker.bootstrap, topic, 1, BIG_TOPIC_CONFIG)
    small = [(None, f"{i:04d}".encode() * 25, None, 0) for i in range(200)]
    confluent_produce(broker.bootstrap, topic, small, acks="all", linger_ms=0, batch_num_messages=10)
    big = _big(b"over-the-limit")
    confluent_produce(broker.bootstrap, topic, [(None, big, None, 0)], acks="all", message_max_bytes=3 * MIB)
    got = confluent_consume(broker.bootstrap, topic, 1, 201, fetch_max_bytes=1024, message_max_bytes=1000,
                            max_partition_fetch_bytes=1024, receive_message_max_bytes=4 * MIB)
    assert [r.offset for r in got] == list(range(201))
    assert [r.value for r in got[:200]] == [v for _, v, _, _ in small]
    assert got[200].value == big
    kp = kp_consume(broker.bootstrap, topic, 1, 201, fetch_max_bytes=1024, max_partition_fetch_bytes=1024)
    assert [r.offset for r in kp] == list(range(201))
    assert kp[200].value == big
