"""/metrics and /health on a live broker, parsed with the official Prometheus text parser."""

from __future__ import annotations

import urllib.request
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def families(http: str) -> dict:
    status, text = get(f"http://{http}/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict, family: str, suffix: str = "", **labels) -> float:
    fam = fams[family]
    for s in fam.samples:
        if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {family}{suffix} {labels} in {[x for x in fam.samples][:5]}")


def test_health_and_metrics_parse(broker):
    assert get(f"http://{broker.http}/health/live")[0] == 200
    assert get(f"http://{broker.http}/health/ready")[0] == 200

    topic = f"metrics-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        f.result(15)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(50):
        p.produce(topic, key=f"k{i}".encode(), value=b"x" * 100, partition=i % 2)
    assert p.flush(15) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    got = 0
    for _ in range(100):
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
        if got == 50:
            break
    c.close()
    assert got == 50

    fams = families(broker.http)
    # Per-API request counters and latency histograms.
    assert sample(fams, "sluice_requests", "_total", api="Produce") >= 1
    assert fams["sluice_request_duration_seconds"].type == "histogram"
    buckets = [s for s in fams["sluice_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["api"] == "Fetch"]
    assert buckets and buckets[-1].labels["le"] == "+Inf"
    values = [s.value for s in buckets]
    assert values == sorted(values), "histogram buckets are cumulative"
    # Bytes in/out per topic, log end offsets, sizes and segment counts per partition.
    assert sample(fams, "sluice_topic_bytes_in", "_total", topic=topic) > 50 * 100
    assert sample(fams, "sluice_topic_bytes_out", "_total", topic=topic) > 50 * 100
    assert sample(fams, "sluice_log_end_offset", topic=topic, partition="0") == 25
    assert sample(fams, "sluice_log_end_offset", topic=topic, partition="1") == 25
    assert sample(fams, "sluice_log_size_bytes", topic=topic, partition="0") > 0
    assert sample(fams, "sluice_log_segments", topic=topic, partition="0") >= 1
    assert sample(fams, "sluice_partitions") >= 2
    assert sample(fams, "sluice_connections_accepted", "_total") >= 1
    assert sample(fams, "sluice_under_replicated_partitions") == 0
