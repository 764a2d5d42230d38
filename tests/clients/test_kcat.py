"""kcat (Debian's package, librdkafka 2.0.2) driven as a subprocess: metadata, produce, consume."""

from __future__ import annotations

import json

import pytest

from helpers import (
    confluent_consume,
    confluent_produce,
    create_topic,
    kafka_partition,
    kcat_consume,
    run_kcat,
    unique,
    wait_for_topic,
)


def test_metadata_list(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    proc = run_kcat(["-b", broker.bootstrap, "-L", "-J", "-t", topic])
    md = json.loads(proc.stdout)
    assert [b["id"] for b in md["brokers"]] == [1]
    assert md["brokers"][0]["name"] == broker.bootstrap
    (t,) = md["topics"]
    assert t["topic"] == topic
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    assert all(p["leader"] == 1 for p in t["partitions"])


def test_produce_keyed_and_consume_formatted(broker, topic):
    create_topic(broker.bootstrap, topic, 3)
    lines = [f"key{i % 4}:value-{i}" for i in range(40)]
    run_kcat(
        ["-b", broker.bootstrap, "-P", "-t", topic, "-K:", "-X", "partitioner=murmur2_random",
         "-X", "acks=all"],
        input=("\n".join(lines) + "\n").encode(),
    )
    proc = run_kcat(
        ["-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
         "-f", "%p|%o|%k:%s\n"],
    )
    out = [ln.split("|", 2) for ln in proc.stdout.decode().splitlines() if ln]
    assert len(out) == 40
    per_p: dict[int, list[tuple[int, str]]] = {}
    for p, o, kv in out:
        per_p.setdefault(int(p), []).append((int(o), kv))
    for p, items in per_p.items():
        assert [o for o, _ in items] == list(range(len(items)))
        expected = [ln for ln in lines if kafka_partition(ln.split(":")[0].encode(), 3) == p]
        assert [kv for _, kv in items] == expected
    # The same records seen by confluent-kafka.
    got = confluent_consume(broker.bootstrap, topic, 3, 40)
    assert sorted(f"{r.key.decode()}:{r.value.decode()}" for r in got) == sorted(lines)


def test_headers_and_null_value(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    run_kcat(
        ["-b", broker.bootstrap, "-P", "-t", topic, "-K:", "-H", "trace=abc", "-H", "empty=", "-p", "0"],
        input=b"k1:v1\n",
    )
    run_kcat(["-b", broker.bootstrap, "-P", "-t", topic, "-K:", "-Z", "-p", "0"], input=b"tomb:\n")
    recs = kcat_consume(broker.bootstrap, topic, 2)
    assert [(r.offset, r.key, r.value) for r in recs] == [(0, b"k1", b"v1"), (1, b"tomb", None)]
    assert list(recs[0].headers) == [("trace", b"abc"), ("empty", b"")]
    # Cross-check the headers and the null with confluent-kafka.
    got = confluent_consume(broker.bootstrap, topic, 1, 2)
    assert list(got[0].headers) == [("trace", b"abc"), ("empty", b"")]
    assert got[1].value is None


def test_consume_from_offset_and_count(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    confluent_produce(broker.bootstrap, topic, [(None, f"m{i}".encode(), None, 0) for i in range(10)], acks="all")
    proc = run_kcat(
        ["-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "7", "-e", "-q", "-f", "%o=%s\n"]
    )
    assert proc.stdout.decode().split() == ["7=m7", "8=m8", "9=m9"]
    proc = run_kcat(
        ["-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "-2", "-e", "-q", "-f", "%s\n"]
    )
    assert proc.stdout.decode().split() == ["m8", "m9"]
    proc = run_kcat(
        ["-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-c", "3", "-q", "-f", "%s\n"]
    )
    assert proc.stdout.decode().split() == ["m0", "m1", "m2"]


def test_produce_to_unknown_topic_auto_creates(broker):
    name = unique("auto-kcat")
    run_kcat(["-b", broker.bootstrap, "-P", "-t", name, "-X", "acks=all"], input=b"hello\n")
    t = wait_for_topic(broker.bootstrap, name)
    got = confluent_consume(broker.bootstrap, name, list(t.partitions), 1)
    assert [r.value for r in got] == [b"hello"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_codec_roundtrip(broker, topic, codec):
    create_topic(broker.bootstrap, topic, 1)
    lines = [f"k{i}:{codec}-payload-{i}-" + "x" * 200 for i in range(50)]
    run_kcat(
        ["-b", broker.bootstrap, "-P", "-t", topic, "-K:", "-p", "0", "-X", f"compression.codec={codec}",
         "-X", "linger.ms=50"],
        input=("\n".join(lines) + "\n").encode(),
    )
    recs = kcat_consume(broker.bootstrap, topic, 50)
    assert [f"{r.key.decode()}:{r.value.decode()}" for r in recs] == lines
    assert [r.offset for r in recs] == list(range(50))
