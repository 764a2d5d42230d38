"""A 3-node cluster through real clients (confluent-kafka, kafka-python): partitions spread over
the brokers, a broker's SIGKILL takes its partitions offline (RF=1) while the others keep
working, the quorum leader's SIGKILL elects a new one within 15 s, restarted nodes lead their
partitions again with nothing lost, and every broker answers DescribeQuorum the same way.

The tests run in file order on one cluster (module fixture) and share state: (a) writes the
records that (b)-(d) read back. Each test first restarts whatever an earlier test left down.
Killing the quorum leader while another voter is down would leave 1 of 3 voters (no majority),
so the broker killed in (b) is restarted before (c) kills the leader; (d) restarts that one.
"""

from __future__ import annotations

import time
import uuid

import pytest

from cluster import ClusterError, status_quorum_leader, wait_until
from conftest import cluster_target

pytestmark = pytest.mark.cluster

PARTITIONS = 6
RECORDS = 600
OFFLINE_WAIT_S = 30.0      # issue: ~20 s (Kafka fences a broker after a 9 s session timeout)
ELECTION_BOUND_S = 15.0    # issue: new quorum leader + a topic created within 15 s
WAIT_S = 60.0              # generous bound for everything else

STATE: dict = {}           # shared across the tests of this module, in file order


# -- helpers ---------------------------------------------------------------------------------

def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """{partition: leader id (-1 when none)} from Metadata."""
    md = admin(bootstrap).list_topics(topic=topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or (t.error is not None and not t.partitions):
        raise AssertionError(f"topic {topic} not in metadata: {t and t.error}")
    return {p.id: p.leader for p in t.partitions.values()}


def wait_all_led(bootstrap: str, topic: str, partitions: int, timeout: float = WAIT_S) -> dict[int, int]:
    return wait_until(
        lambda: (ls := partition_leaders(bootstrap, topic)) and len(ls) == partitions
        and all(v >= 0 for v in ls.values()) and ls,
        timeout, f"{topic}: {partitions} partitions, each with a leader")


def create_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0) -> None:
    from confluent_kafka.admin import NewTopic

    a = admin(bootstrap)  # keep the handle alive until the future resolves
    fut = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=15, request_timeout=20)[name]
    fut.result(timeout=timeout)


def produce(bootstrap: str, topic: str, records, partition_of=None) -> list:
    """acks=all; (key, value) records; returns delivered messages. Fails on any error."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "partitioner": "murmur2_random", "message.timeout.ms": 30000})
    delivered, errors = [], []

    def cb(err, msg):
        (errors.append(err) if err else delivered.append(msg))

    for key, value in records:
        kw = {} if partition_of is None else {"partition": partition_of(key)}
        p.produce(topic, key=key, value=value, on_delivery=cb, **kw)
        p.poll(0)
    left = p.flush(60)
    assert left == 0, f"{left} records not delivered in 60 s"
    assert not errors, f"delivery errors: {[str(e) for e in errors[:5]]}"
    return delivered


def consume_assigned(bootstrap: str, topic: str, partitions: int, expected: int,
                     timeout: float = WAIT_S) -> list[tuple]:
    """confluent-kafka, assign() from the beginning: [(partition, offset, key, value)]."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"nogroup-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out: list[tuple] = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert not m.error(), f"consumer error: {m.error()}"
            out.append((m.partition(), m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


def consume_kafka_python(bootstrap: str, topic: str, partitions: int, expected: int,
                         timeout: float = WAIT_S) -> list[tuple]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest")
    out: list[tuple] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for _tp, msgs in c.poll(timeout_ms=500).items():
                out.extend((m.partition, m.offset, m.key, m.value) for m in msgs)
    finally:
        c.close()
    return out


def consume_group(bootstrap: str, topic: str, group: str, expected: int,
                  timeout: float = WAIT_S) -> tuple[list[tuple], dict[int, int]]:
    """confluent-kafka subscribe() in `group`; reads `expected` records, commits synchronously,
    returns (records, committed offsets read back through the group)."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
    out: list[tuple] = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert not m.error(), f"consumer error: {m.error()}"
            out.append((m.partition(), m.offset(), m.key(), m.value()))
        assert len(out) == expected, f"group consumer read {len(out)} of {expected}"
        c.commit(asynchronous=False)
        committed = {tp.partition: tp.offset for tp in c.committed(c.assignment(), timeout=20)}
    finally:
        c.close()
    return out, committed


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex[:8]}"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}
    finally:
        c.close()


def kv(recs) -> set[tuple]:
    return {(r[2], r[3]) for r in recs}


def heal(cluster) -> None:
    """Restart every node an earlier test left down or paused; wait for all brokers."""
    for i in cluster.ids():
        if cluster.node(i).paused:
            cluster.resume(i)
        if not cluster.alive(i):
            cluster.restart(i, wait_brokers=False)
    cluster.wait_brokers(cluster.n, timeout=WAIT_S)


def quorum_agreement(cluster) -> dict:
    """Every live broker answers DescribeQuorum naming the same leader and voters 1..n."""
    want_voters = cluster.ids()

    def agree():
        answers = {i: cluster.describe_quorum(i) for i in cluster.live_ids()}
        leaders = {a["leader_id"] for a in answers.values()}
        ok = (len(leaders) == 1 and next(iter(leaders)) in want_voters
              and all(a["voters"] == want_voters for a in answers.values()))
        return ok and answers

    answers = wait_until(agree, WAIT_S, "every broker naming the same quorum leader and voters")
    return answers


def need(key: str):
    if key not in STATE:
        pytest.skip(f"an earlier test did not provide {key!r}")
    return STATE[key]


# -- (a) ------------------------------------------------------------------------------------

def test_a_partitions_spread_produce_consume(cluster, topic):
    heal(cluster)
    one = cluster.node(1).bootstrap  # bootstrap from one node only
    brokers = cluster.brokers(one)
    assert sorted(brokers) == cluster.ids(), f"Metadata from node 1 lists brokers {brokers}"

    create_topic(one, topic, PARTITIONS)
    leaders = wait_all_led(one, topic, PARTITIONS)
    led = {b: sorted(p for p, l in leaders.items() if l == b) for b in cluster.ids()}
    print(f"\npartition leaders: {leaders}")
    assert all(led[b] for b in cluster.ids()), f"every broker should lead >=1 partition: {led}"

    records = [(f"key-{i % 50}".encode(), f"value-{i}".encode()) for i in range(RECORDS)]
    delivered = produce(one, topic, records)
    assert len(delivered) == RECORDS
    assert len({m.partition() for m in delivered}) == PARTITIONS, "keys should reach every partition"
    key_partition = {m.key(): m.partition() for m in delivered}

    got = consume_assigned(one, topic, PARTITIONS, RECORDS)
    assert len(got) == RECORDS and kv(got) == set(records), f"assign: read {len(got)} of {RECORDS}"
    assert all(key_partition[k] == p for p, _, k, _ in got), "a key in two partitions"

    got_kp = consume_kafka_python(one, topic, PARTITIONS, RECORDS)
    assert len(got_kp) == RECORDS and kv(got_kp) == set(records), \
        f"kafka-python: read {len(got_kp)} of {RECORDS}"

    group = f"g-a-{uuid.uuid4().hex[:8]}"
    got_g, committed = consume_group(cluster.bootstrap, topic, group, RECORDS)
    assert kv(got_g) == set(records)
    hw = high_watermarks(one, topic, PARTITIONS)
    assert committed == hw, f"committed {committed} != high watermarks {hw}"

    STATE.update(topic=topic, records=list(records), leaders=leaders, key_partition=key_partition)


# -- (e) ------------------------------------------------------------------------------------

def test_e_cluster_status(cluster):
    if cluster_target() != "sluice":
        pytest.skip("/v1/cluster and `sluice cluster status` are Sluice's")
    heal(cluster)

    def check(doc: dict, where: str):
        ids = sorted(n["id"] for n in doc["nodes"])
        assert ids == cluster.ids(), f"{where}: nodes {ids}"
        leader = status_quorum_leader(doc)
        assert leader in cluster.ids(), f"{where}: quorum leader {leader}"
        assert not any(n.get("fenced") for n in doc["nodes"]), f"{where}: fenced nodes {doc['nodes']}"
        return leader

    leaders = wait_until(
        lambda: (ls := {i: check(cluster.cluster_status(i), f"node {i} /v1/cluster") for i in cluster.ids()})
        and len(set(ls.values())) == 1 and ls,
        WAIT_S, "every node's /v1/cluster naming the same quorum leader")
    leader = next(iter(leaders.values()))
    cli = cluster.cli_cluster_status(cluster.node(1).bootstrap)
    assert check(cli, "cluster status --output json") == leader


# -- (f) ------------------------------------------------------------------------------------

def test_f_describe_quorum_every_broker(cluster):
    heal(cluster)
    answers = quorum_agreement(cluster)
    leader = next(iter(answers.values()))["leader_id"]
    print(f"\nquorum leader {leader}, epoch {answers[leader]['leader_epoch']}")
    assert cluster.quorum_leader() == leader

    # kafka-python's own admin call (any broker) agrees.
    from kafka import KafkaAdminClient

    a = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        q = a.describe_metadata_quorum()
    finally:
        a.close()
    p = q["topics"][0]["partitions"][0]
    assert p["leader_id"] == leader
    assert sorted(v["replica_id"] for v in p["current_voters"]) == cluster.ids()


# -- (b) ------------------------------------------------------------------------------------

def test_b_kill_non_leader_broker(cluster):
    topic, records = need("topic"), need("records")
    heal(cluster)
    leaders = wait_all_led(cluster.bootstrap, topic, PARTITIONS)
    quorum_leader = cluster.quorum_leader()
    victim = next(i for i in cluster.ids() if i != quorum_leader and i in leaders.values())
    lost = sorted(p for p, l in leaders.items() if l == victim)
    kept = sorted(p for p, l in leaders.items() if l != victim)
    print(f"\nquorum leader {quorum_leader}; killing broker {victim} (leads {lost})")

    cluster.kill(victim)
    t0 = time.monotonic()
    live = cluster.live_bootstrap

    def offline():
        ls = partition_leaders(live, topic)
        return (all(ls[p] < 0 for p in lost) and all(ls[p] >= 0 and ls[p] != victim for p in kept)
                and ls)

    after = wait_until(offline, OFFLINE_WAIT_S, f"partitions {lost} of killed broker {victim} offline")
    print(f"partitions {lost} offline {time.monotonic() - t0:.1f}s after the kill: {after}")

    # Partitions led by the others keep taking writes (acks=all).
    extra = [(f"b-{i}".encode(), f"after-kill-{i}".encode()) for i in range(60)]
    delivered = produce(cluster.bootstrap, topic, extra, partition_of=lambda k: kept[int(k[2:]) % len(kept)])
    assert {m.partition() for m in delivered} == set(kept)
    STATE["records"] = records + extra
    STATE["killed"] = [victim]


# -- (c) ------------------------------------------------------------------------------------

def test_c_kill_quorum_leader(cluster):
    # Bring back the broker (b) killed first: with it down, killing the leader leaves 1 of 3
    # voters and no majority.
    heal(cluster)
    quorum_agreement(cluster)
    old = cluster.quorum_leader()
    print(f"\nkilling quorum leader {old}")
    cluster.kill(old)
    t0 = time.monotonic()

    new = cluster.quorum_leader(timeout=ELECTION_BOUND_S + 15, exclude=(old,))
    elected_s = time.monotonic() - t0

    name = f"t-after-election-{uuid.uuid4().hex[:8]}"

    def created():
        from confluent_kafka import KafkaException

        try:
            create_topic(cluster.live_bootstrap, name, 3, timeout=8)
        except KafkaException as e:
            if e.args[0].name() != "TOPIC_ALREADY_EXISTS":  # an earlier try that timed out won
                raise
        return True

    wait_until(created, ELECTION_BOUND_S + 30, f"topic {name} created", interval=0.5)
    created_s = time.monotonic() - t0
    print(f"new quorum leader {new} known {elected_s:.1f}s after the kill; "
          f"topic created {created_s:.1f}s after the kill")
    STATE["killed"] = STATE.get("killed", []) + [old]
    STATE["topic_c"] = name
    assert new != old
    assert created_s <= ELECTION_BOUND_S, \
        f"new leader + topic creation took {created_s:.1f}s (bound {ELECTION_BOUND_S:.0f}s)"


# -- (d) ------------------------------------------------------------------------------------

def test_d_restarted_nodes_lead_again_nothing_lost(cluster):
    topic, records = need("topic"), need("records")
    down = [i for i in cluster.ids() if not cluster.alive(i)]
    print(f"\nrestarting {down} (killed earlier: {STATE.get('killed')})")
    heal(cluster)
    bs = cluster.bootstrap

    leaders = wait_all_led(bs, topic, PARTITIONS)
    print(f"partition leaders after restart: {leaders}")
    if "topic_c" in STATE:
        wait_all_led(bs, STATE["topic_c"], 3)

    got = consume_assigned(bs, topic, PARTITIONS, len(records))
    assert len(got) == len(records) and kv(got) == set(records), \
        f"read {len(got)} of {len(records)} after the restarts"
    got_kp = consume_kafka_python(bs, topic, PARTITIONS, len(records))
    assert kv(got_kp) == set(records), f"kafka-python read {len(got_kp)} of {len(records)}"

    # A consumer group commits, and the offsets read back (same group, new member; then
    # kafka-python's view of the group's commits).
    group = f"g-d-{uuid.uuid4().hex[:8]}"
    _, committed = consume_group(bs, topic, group, len(records))
    hw = high_watermarks(bs, topic, PARTITIONS)
    assert committed == hw, f"committed {committed} != high watermarks {hw}"

    from kafka import KafkaConsumer, TopicPartition

    kc = KafkaConsumer(bootstrap_servers=bs, group_id=group, enable_auto_commit=False)
    try:
        back = wait_until(lambda: (c := {p: kc.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)})
                          and None not in c.values() and c, WAIT_S, "kafka-python reading the commits")
    finally:
        kc.close()
    assert back == hw, f"kafka-python sees committed {back}, expected {hw}"


def test_g_describe_quorum_after_failover(cluster):
    heal(cluster)
    answers = quorum_agreement(cluster)
    print(f"\nquorum leader after the failover: {next(iter(answers.values()))['leader_id']}")
