"""Leader elections (ElectLeaders, API 43) on a 3-node cluster through confluent-kafka's
AdminClient.elect_leaders, against Sluice or (CLUSTER_TARGET=kafka) Apache Kafka.

Error paths that hold with one replica per partition run everywhere: a partition led by its
only replica needs no election (ELECTION_NOT_NEEDED, for PREFERRED and UNCLEAN), unknown
partitions are UNKNOWN_TOPIC_OR_PARTITION, and once that replica's broker is gone its
partition has no preferred leader to elect (PREFERRED_LEADER_NOT_AVAILABLE) nor any live
replica (ELIGIBLE_LEADERS_NOT_AVAILABLE). An all-partitions election leaves out partitions
that need none.

With three replicas (skipped, with the broker's own refusal as the reason, while Sluice
refuses a replication factor above 1): the preferred replica is killed, leadership moves, the
broker returns and rejoins the ISR, and a PREFERRED election makes it the leader again; on a
second cluster with `leader.imbalance.check.interval.seconds=2` the controller does that by
itself (auto.leader.rebalance.enable). The first cluster runs with
auto.leader.rebalance.enable=false so that only the explicit election moves leaders.
"""

from __future__ import annotations

import os

import pytest

from cluster import ClusterError, make_cluster, wait_until
from topics import admin, kafka_tool

pytestmark = pytest.mark.cluster

WAIT_S = 60.0
REBALANCE_INTERVAL_S = 2
STATE: dict = {}

ELECTION_NOT_NEEDED = "ELECTION_NOT_NEEDED"
PREFERRED_LEADER_NOT_AVAILABLE = "PREFERRED_LEADER_NOT_AVAILABLE"
ELIGIBLE_LEADERS_NOT_AVAILABLE = "ELIGIBLE_LEADERS_NOT_AVAILABLE"
UNKNOWN_TOPIC_OR_PART = "UNKNOWN_TOPIC_OR_PART"


def start_cluster(settings: dict[str, str]):
    """A 3-node cluster of CLUSTER_TARGET with extra broker settings."""
    kv = [f"{k}={v}" for k, v in settings.items()]
    target = (os.environ.get("CLUSTER_TARGET") or "sluice").lower()
    if target == "kafka":
        old = os.environ.get("KAFKA_REF_SET")
        os.environ["KAFKA_REF_SET"] = " ".join(filter(None, [old, *kv]))
        try:
            return make_cluster(3)
        finally:
            if old is None:
                os.environ.pop("KAFKA_REF_SET", None)
            else:
                os.environ["KAFKA_REF_SET"] = old
    args = []
    for s in kv:
        args += ["--set", s]
    return make_cluster(3, extra_args=args)


@pytest.fixture(scope="module")
def cluster():
    try:
        c = start_cluster({"auto.leader.rebalance.enable": "false"})
    except ClusterError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield c
    finally:
        c.close()


def elect(bootstrap: str, kind: str, partitions) -> dict[tuple[str, int], str | None]:
    """{(topic, partition): error name or None} from AdminClient.elect_leaders."""
    from confluent_kafka import ElectionType, KafkaException, TopicPartition

    a = admin(bootstrap)
    tps = None if partitions is None else [TopicPartition(t, p) for t, p in partitions]
    # (confluent-kafka 2.16 rejects request_timeout/operation_timeout here: defaults it is.)
    fut = a.elect_leaders(ElectionType[kind], tps)
    out = {}
    for tp, err in fut.result(timeout=40).items():
        if isinstance(err, KafkaException):
            err = err.args[0]
        out[(tp.topic, tp.partition)] = None if err is None else err.name()
    return out


def describe(bootstrap: str, topic: str) -> dict[int, dict]:
    """{partition: {leader, replicas, isr}} from Metadata."""
    md = admin(bootstrap).list_topics(topic=topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or not t.partitions:
        raise AssertionError(f"topic {topic} not in metadata: {t and t.error}")
    return {p.id: {"leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isrs)}
            for p in t.partitions.values()}


def create(bootstrap: str, name: str, partitions: int, rf: int) -> None:
    from confluent_kafka.admin import NewTopic

    a = admin(bootstrap)
    fut = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                          operation_timeout=15, request_timeout=20)[name]
    fut.result(timeout=30)


def heal(cluster) -> None:
    for i in cluster.ids():
        if not cluster.alive(i):
            cluster.restart(i, wait_brokers=False)
    cluster.wait_brokers(cluster.n, timeout=WAIT_S)


def rf3_topic_or_skip(cluster, name: str, partitions: int = 3) -> None:
    """Creates an RF=3 topic, or skips when the broker refuses RF > 1 (Sluice before
    replication): the skip reason is the broker's own answer."""
    from confluent_kafka import KafkaException

    try:
        create(cluster.bootstrap, name, partitions, 3)
    except KafkaException as e:
        err = e.args[0]
        if err.name() == "INVALID_REPLICATION_FACTOR":
            pytest.skip(f"{cluster.target} refuses replication factor 3 "
                        f"(partition replication not there yet): {err.str()}")
        raise
    wait_until(lambda: (d := describe(cluster.bootstrap, name)) and len(d) == partitions
               and all(p["leader"] >= 0 and len(p["isr"]) == 3 for p in d.values()),
               WAIT_S, f"{name}: every partition led with a full ISR")


# -- one replica per partition: runs on Sluice and Kafka ---------------------------------------

def test_a_rf1_needs_no_election(cluster, topic):
    bs = cluster.bootstrap
    create(bs, topic, 3, 1)
    wait_until(lambda: all(p["leader"] >= 0 for p in describe(bs, topic).values()), WAIT_S,
               f"{topic} led")
    asked = [(topic, p) for p in range(3)]
    assert elect(bs, "PREFERRED", asked) == {tp: ELECTION_NOT_NEEDED for tp in asked}
    assert elect(bs, "UNCLEAN", asked) == {tp: ELECTION_NOT_NEEDED for tp in asked}
    # Unknown partitions of a known topic, and unknown topics.
    got = elect(bs, "PREFERRED", [(topic, 7), (f"{topic}-nope", 0), (topic, 0)])
    assert got == {(topic, 7): UNKNOWN_TOPIC_OR_PART,
                   (f"{topic}-nope", 0): UNKNOWN_TOPIC_OR_PART,
                   (topic, 0): ELECTION_NOT_NEEDED}
    # Every partition of the cluster: the ones not needing an election are left out.
    got = elect(bs, "PREFERRED", None)
    assert not any(tp[0] == topic for tp in got), got
    STATE["rf1"] = topic


def leader_election_tool() -> list[str] | None:
    """`kafka-leader-election.sh` as a java command line (see `topics.kafka_tool`)."""
    return kafka_tool("org.apache.kafka.tools.LeaderElectionCommand")


def test_a2_leader_election_tool(cluster):
    """Kafka's own kafka-leader-election: a partition led by its only replica is reported as
    already elected (exit 0); an unknown partition fails the command."""
    import subprocess

    topic = STATE.get("rf1") or pytest.skip("test_a did not create its topic")
    tool = leader_election_tool()
    if tool is None:
        pytest.skip("kafka-leader-election not found (set KAFKA_TOOLS_CP, or have kafka-tools "
                    "in ~/.m2 and scripts/kafka-reference fetch)")
    run = lambda *args: subprocess.run(  # noqa: E731
        [*tool, "--bootstrap-server", cluster.bootstrap, *args],
        capture_output=True, text=True, timeout=120)
    ok = run("--election-type", "preferred", "--topic", topic, "--partition", "0")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"Valid replica already elected for partitions {topic}-0" in ok.stdout, ok.stdout
    every = run("--election-type", "preferred", "--all-topic-partitions")
    assert every.returncode == 0, every.stdout + every.stderr
    bad = run("--election-type", "unclean", "--topic", topic, "--partition", "9")
    assert bad.returncode != 0, bad.stdout
    assert "UnknownTopicOrPartition" in bad.stdout + bad.stderr, bad.stdout + bad.stderr


def test_b_rf1_replica_gone(cluster):
    """The only replica's broker is killed: nothing to elect, as Kafka answers."""
    topic = STATE.get("rf1") or pytest.skip("test_a did not create its topic")
    bs = cluster.bootstrap
    parts = describe(bs, topic)
    p, info = min(parts.items())
    victim = info["replicas"][0]
    others = [i for i in cluster.ids() if i != victim]
    live = ",".join(cluster.node(i).bootstrap for i in others)
    cluster.kill(victim)
    try:
        wait_until(lambda: describe(live, topic)[p]["leader"] == -1, WAIT_S,
                   f"{topic}-{p} offline after broker {victim} was killed")
        assert elect(live, "PREFERRED", [(topic, p)]) == {(topic, p): PREFERRED_LEADER_NOT_AVAILABLE}
        assert elect(live, "UNCLEAN", [(topic, p)]) == {(topic, p): ELIGIBLE_LEADERS_NOT_AVAILABLE}
        got = elect(live, "PREFERRED", None)
        assert got.get((topic, p)) == PREFERRED_LEADER_NOT_AVAILABLE, got
    finally:
        heal(cluster)
    wait_until(lambda: describe(bs, topic)[p]["leader"] == victim, WAIT_S,
               f"{topic}-{p} led by {victim} again")


# -- three replicas: Kafka now, Sluice once replication lands ----------------------------------

def test_c_preferred_election_after_restart(cluster, topic):
    rf3_topic_or_skip(cluster, topic)
    bs = cluster.bootstrap
    before = describe(bs, topic)
    # A partition whose preferred replica leads it; kill that broker.
    p = next(i for i, d in sorted(before.items()) if d["leader"] == d["replicas"][0])
    preferred = before[p]["replicas"][0]
    others = [i for i in cluster.ids() if i != preferred]
    live = ",".join(cluster.node(i).bootstrap for i in others)
    cluster.kill(preferred)
    try:
        moved = wait_until(lambda: (d := describe(live, topic)[p]) and d["leader"] in others and d,
                           WAIT_S, f"{topic}-{p} led by another replica than {preferred}")
        assert moved["leader"] != preferred
        # Nothing to elect while the preferred replica is away.
        assert elect(live, "PREFERRED", [(topic, p)]) == {(topic, p): PREFERRED_LEADER_NOT_AVAILABLE}
    finally:
        heal(cluster)
    wait_until(lambda: preferred in describe(bs, topic)[p]["isr"], WAIT_S,
               f"broker {preferred} back in the ISR of {topic}-{p}")
    # Auto rebalance is off here: the leader stays where it moved until asked.
    assert describe(bs, topic)[p]["leader"] != preferred
    assert elect(bs, "PREFERRED", [(topic, p)]) == {(topic, p): None}
    wait_until(lambda: describe(bs, topic)[p]["leader"] == preferred, WAIT_S,
               f"{topic}-{p} led by its preferred replica {preferred} again")
    assert elect(bs, "PREFERRED", [(topic, p)]) == {(topic, p): ELECTION_NOT_NEEDED}
    # UNCLEAN on a led partition: nothing to do.
    assert elect(bs, "UNCLEAN", [(topic, p)]) == {(topic, p): ELECTION_NOT_NEEDED}


def test_d_auto_rebalance(cluster, topic):
    # Probe on the first cluster so that a refusal skips without starting another one.
    rf3_topic_or_skip(cluster, topic)
    try:
        c = start_cluster({"leader.imbalance.check.interval.seconds": str(REBALANCE_INTERVAL_S),
                           "leader.imbalance.per.broker.percentage": "10"})
    except ClusterError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        name = f"{topic}-auto"
        rf3_topic_or_skip(c, name)
        bs = c.bootstrap
        before = describe(bs, name)
        victim = before[0]["replicas"][0]
        mine = [i for i, d in before.items() if d["replicas"][0] == victim]
        others = [i for i in c.ids() if i != victim]
        live = ",".join(c.node(i).bootstrap for i in others)
        c.kill(victim)
        wait_until(lambda: all(describe(live, name)[i]["leader"] in others for i in mine),
                   WAIT_S, f"partitions {mine} of {name} led away from {victim}")
        c.restart(victim, wait_brokers=True)
        # Back in the ISR, the preferred replica leads again without anyone asking.
        wait_until(lambda: all(describe(bs, name)[i]["leader"] == victim for i in mine),
                   WAIT_S + 4 * REBALANCE_INTERVAL_S,
                   f"partitions {mine} of {name} led by their preferred replica {victim} again")
    finally:
        c.close()
