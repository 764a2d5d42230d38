"""Replicated partitions on a 3-node cluster through real clients, against Sluice or the
reference Kafka (CLUSTER_TARGET): a topic with replication factor 3 and min.insync.replicas=2
keeps every acknowledged acks=all write through a SIGKILL of a partition leader, the killed
broker catches up and rejoins the ISR after its restart, and with too few in-sync replicas
acks=all is refused with NOT_ENOUGH_REPLICAS while acks=1 still works.

Runs in file order on one cluster (module fixture) with replica.lag.time.max.ms lowered so a
dead follower leaves the ISR in seconds.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from cluster import ClusterError, make_cluster, wait_until
from conftest import cluster_target
from topics import admin, create, describe, wait_isr

pytestmark = pytest.mark.cluster

LAG_MS = 4000
WAIT_S = 60.0


@pytest.fixture(scope="module")
def rc():
    configs = {"replica.lag.time.max.ms": str(LAG_MS)}
    try:
        c = make_cluster(3, broker_configs=configs)
    except ClusterError as e:
        pytest.fail(str(e), pytrace=False)
    print(f"\n{c.target} cluster of {c.n} ready in {c.start_seconds:.1f}s: {c.bootstrap}")
    try:
        yield c
    finally:
        c.close()


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[tuple]:
    """[(partition, offset, value)] read from the beginning until `expected` records."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, deadline = [], time.monotonic() + WAIT_S
    try:
        while len(out) < expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append((m.partition(), m.offset(), m.value()))
    finally:
        c.close()
    return out


def test_a_rf3_topic_replicates_and_every_replica_is_in_sync(rc):
    topic = f"t-rep-{uuid.uuid4().hex[:8]}"
    create(rc.bootstrap, topic, 3, 3, 2)
    d = wait_isr(rc.bootstrap, topic, 3)
    assert all(sorted(reps) == rc.ids() for _, reps, _ in d.values()), d
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": rc.bootstrap, "acks": "all", "enable.idempotence": True})
    errors = []
    values = [f"v{i}".encode() for i in range(600)]
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda e, m: e and errors.append(e))
        p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    got = consume_all(rc.bootstrap, topic, 3, len(values))
    assert sorted(v for _, _, v in got) == sorted(values)
    # Still fully in sync after the writes.
    wait_isr(rc.bootstrap, topic, 3)


def test_b_leader_kill_loses_no_acknowledged_write(rc):
    topic = f"t-fail-{uuid.uuid4().hex[:8]}"
    create(rc.bootstrap, topic, 1, 3, 2)
    leader = wait_isr(rc.bootstrap, topic, 3)[0][0]
    from confluent_kafka import Producer

    acked, errors, stop = [], [], threading.Event()
    sent_at: dict[bytes, float] = {}
    kill_at = [None]

    def run():
        p = Producer({"bootstrap.servers": rc.bootstrap, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 2,
                      "message.timeout.ms": 60000})
        i = 0

        def cb(err, msg):
            if err:
                errors.append(str(err))
            else:
                acked.append((msg.value(), msg.offset(), time.monotonic()))

        while not stop.is_set():
            v = f"w{i}".encode()
            sent_at[v] = time.monotonic()
            p.produce(topic, value=v, on_delivery=cb)
            i += 1
            p.poll(0.002)
        assert p.flush(90) == 0

    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: len(acked) > 300, 30, "300 acknowledged writes before the kill")
    print(f"\nkilling partition leader {leader} after {len(acked)} acknowledged writes")
    kill_at[0] = time.monotonic()
    rc.kill(leader)
    n_at_kill = len(acked)
    wait_until(lambda: len(acked) > n_at_kill + 300, 90, "300 more acknowledged writes after the kill")
    stop.set()
    t.join(120)
    # Failover: from the kill to the first acknowledgement of a write sent after it.
    after = [ts for v, _, ts in acked if sent_at.get(v, 0.0) > kill_at[0]]
    print(f"failover: first write sent after the kill acknowledged "
          f"{min(after) - kill_at[0]:.2f}s after it; "
          f"{len(acked)} acknowledged, {len(errors)} errors")
    assert not errors, errors[:3]
    new = describe(rc.live_bootstrap, topic)[0][0]
    assert new != leader and new >= 0
    got = consume_all(rc.live_bootstrap, topic, 1, len(acked))
    by_value = {v: o for _, o, v in got}
    lost = [v for v, _, _ in acked if v not in by_value]
    moved = [v for v, o, _ in acked if v in by_value and by_value[v] != o]
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    assert not moved, f"{len(moved)} acknowledged writes at another offset, e.g. {moved[:5]}"
    assert len(got) == len(by_value), "duplicates with idempotence on"
    # The killed broker comes back, catches up and rejoins the ISR.
    rc.restart(leader)
    wait_isr(rc.bootstrap, topic, 3)


def test_c_too_few_in_sync_replicas_refuse_acks_all(rc):
    from kafka import KafkaProducer
    from kafka.errors import NotEnoughReplicasError

    topic = f"t-minisr-{uuid.uuid4().hex[:8]}"
    create(rc.bootstrap, topic, 1, 2, 2)
    leader, replicas, _ = wait_isr(rc.bootstrap, topic, 2)[0]
    follower = next(r for r in replicas if r != leader)
    print(f"\nleader {leader}, killing follower {follower}")
    rc.kill(follower)
    wait_until(lambda: describe(rc.live_bootstrap, topic)[0][2] == [leader], WAIT_S,
               f"ISR of {topic} shrunk to the leader")
    strict = KafkaProducer(bootstrap_servers=rc.live_bootstrap, acks="all", retries=0)
    loose = KafkaProducer(bootstrap_servers=rc.live_bootstrap, acks=1, retries=0)
    try:
        with pytest.raises(NotEnoughReplicasError):
            strict.send(topic, b"refused").get(timeout=30)
        md = loose.send(topic, b"acks-1").get(timeout=30)
        assert md.offset >= 0
    finally:
        strict.close()
        loose.close()
    rc.restart(follower)
    wait_isr(rc.bootstrap, topic, 2)
    ok = KafkaProducer(bootstrap_servers=rc.bootstrap, acks="all")
    try:
        assert ok.send(topic, b"accepted").get(timeout=30).offset >= 1
    finally:
        ok.close()


def test_d_delete_records_reaches_every_replica(rc):
    """DeleteRecords answers with the low watermark once every live replica moved its log
    start; after the leader is killed, the new leader starts there too."""
    from confluent_kafka import Producer, TopicPartition

    topic = f"t-del-{uuid.uuid4().hex[:8]}"
    create(rc.bootstrap, topic, 1, 3, 2)
    leader = wait_isr(rc.bootstrap, topic, 3)[0][0]
    p = Producer({"bootstrap.servers": rc.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce(topic, value=f"d{i}".encode())
    assert p.flush(30) == 0
    a = admin(rc.bootstrap)
    res = a.delete_records([TopicPartition(topic, 0, 40)], request_timeout=30)
    deleted = list(res.values())[0].result(timeout=30)
    assert deleted.low_watermark == 40
    rc.kill(leader)
    wait_until(lambda: describe(rc.live_bootstrap, topic)[0][0] not in (-1, leader), WAIT_S,
               "a new leader")
    got = consume_all(rc.live_bootstrap, topic, 1, 60)
    assert [o for _, o, _ in got][:1] == [40], "the new leader's log starts at the low watermark"
    assert len(got) == 60
    rc.restart(leader)
    wait_isr(rc.bootstrap, topic, 3)
