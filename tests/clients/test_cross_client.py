"""What one client writes, every other reads: codec matrix and key->partition agreement."""

from __future__ import annotations

import pytest

from helpers import (
    aio_consume,
    aio_produce,
    confluent_consume,
    confluent_produce,
    create_topic,
    kafka_partition,
    kcat_consume,
    kp_consume,
    kp_produce,
    run_async,
    run_kcat,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PRODUCERS = ["confluent", "kafka-python", "aiokafka", "kcat"]
N = 40


def _records(codec: str, producer: str):
    # Compressible values, some headers, keys spread over partitions.
    return [
        (f"key-{i % 9}".encode(), f"{producer}/{codec}/{i}/".encode() + b"abc" * (20 + i), [("n", str(i).encode())])
        for i in range(N)
    ]


def produce_with(producer: str, bootstrap: str, topic: str, codec: str, records) -> None:
    if producer == "confluent":
        confluent_produce(bootstrap, topic, records, acks="all", compression_type=codec, linger_ms=50)
    elif producer == "kafka-python":
        kp_produce(bootstrap, topic, records, acks="all",
                   compression_type=None if codec == "none" else codec, linger_ms=50)
    elif producer == "aiokafka":
        run_async(aio_produce(bootstrap, topic, records, acks="all",
                              compression_type=None if codec == "none" else codec, linger_ms=50))
    elif producer == "kcat":
        # kcat takes no per-record headers from stdin; headers are checked elsewhere.
        lines = b"".join(k + b"\t" + v + b"\n" for k, v, _ in records)
        run_kcat(["-b", bootstrap, "-P", "-t", topic, "-K", "\t", "-X", f"compression.codec={codec}",
                  "-X", "partitioner=murmur2_random", "-X", "linger.ms=50", "-X", "acks=all"], input=lines)
    else:
        raise ValueError(producer)


def consume_with(consumer: str, bootstrap: str, topic: str, partitions: int, n: int):
    if consumer == "confluent":
        return confluent_consume(bootstrap, topic, partitions, n)
    if consumer == "kafka-python":
        return kp_consume(bootstrap, topic, partitions, n)
    if consumer == "aiokafka":
        return run_async(aio_consume(bootstrap, topic, partitions, n))
    if consumer == "kcat":
        return kcat_consume(bootstrap, topic, n)
    raise ValueError(consumer)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("producer", PRODUCERS)
def test_codec_matrix(broker, topic, producer, codec):
    """`producer` writes with `codec`; confluent, kafka-python, aiokafka and kcat all read it back."""
    create_topic(broker.bootstrap, topic, 2)
    records = _records(codec, producer)
    produce_with(producer, broker.bootstrap, topic, codec, records)
    expected = {}
    for k, v, h in records:
        expected.setdefault(kafka_partition(k, 2), []).append((k, v, h))
    for consumer in PRODUCERS:
        got = consume_with(consumer, broker.bootstrap, topic, 2, N)
        assert len(got) == N, f"{consumer} read {len(got)} of {N}"
        for p in (0, 1):
            mine = [r for r in got if r.partition == p]
            assert [r.offset for r in mine] == list(range(len(mine))), (consumer, p)
            assert [(r.key, r.value) for r in mine] == [(k, v) for k, v, _ in expected.get(p, [])], (consumer, p)
            if producer != "kcat" and consumer != "kcat":
                assert [list(r.headers) for r in mine] == [h for _, _, h in expected.get(p, [])], (consumer, p)


def test_partitioner_agreement(broker, topic):
    """confluent (murmur2_random), kafka-python, aiokafka and kcat put a key where Java would."""
    partitions = 6
    create_topic(broker.bootstrap, topic, partitions)
    keys = [f"customer-{i}".encode() for i in range(30)] + [b"", b"a", "ünïcödé".encode()]
    per_client = {}
    for client in PRODUCERS:
        recs = [(k, client.encode() + b":" + k) for k in keys]
        produce_with(client, broker.bootstrap, topic, "none", [(k, v, None) for k, v in recs])
    got = confluent_consume(broker.bootstrap, topic, partitions, len(keys) * len(PRODUCERS))
    assert len(got) == len(keys) * len(PRODUCERS)
    for r in got:
        client, key = r.value.split(b":", 1)
        per_client.setdefault(client.decode(), {})[key] = r.partition
    java = {k: kafka_partition(k, partitions) for k in keys}
    assert len(set(java.values())) > 3
    for client, placement in per_client.items():
        # kcat reads keys from stdin lines, so it cannot send an empty key distinct from none.
        wanted = {k: p for k, p in java.items() if not (client == "kcat" and k == b"")}
        assert {k: p for k, p in placement.items() if k in wanted} == wanted, client
