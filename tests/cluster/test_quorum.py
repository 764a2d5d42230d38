"""The metadata quorum under random faults: three nodes agree on the metadata image after
random SIGKILLs, SIGTERMs and restarts of single nodes while topics are created and deleted
through whichever nodes are up, and measured recovery times (printed with -s).

Sluice only: the agreement check reads each node's applied image from `/v1/metadata`, which
Apache Kafka does not have (its equivalent, kafka-metadata-shell, reads the log files). The
fault pattern (one node down at a time, majority always up) keeps the quorum available, so
every admin request must eventually succeed.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from cluster import http_get_json, wait_until
from conftest import cluster_target

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(cluster_target() != "sluice", reason="reads Sluice's /v1/metadata"),
]

ROUNDS = int(os.environ.get("QUORUM_ROUNDS", "4"))


def images(cluster) -> dict[int, dict]:
    out = {}
    for i in cluster.live_ids():
        nd = cluster.node(i)
        out[i] = http_get_json(f"http://127.0.0.1:{nd.http_port}/v1/metadata")
    return out


def comparable(md: dict) -> dict:
    """The replicated state: everything but soft per-node fields (none today)."""
    return md


def create(bootstrap: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka import KafkaException

    def attempt():
        # A new client per attempt: librdkafka keeps asking a controller it learned before.
        a = AdminClient({"bootstrap.servers": bootstrap})
        try:
            a.create_topics([NewTopic(name, partitions, 1)], request_timeout=10)[name].result(15)
            return True
        except KafkaException as e:
            if e.args[0].code() == 36:  # TOPIC_ALREADY_EXISTS: an earlier attempt succeeded
                return True
            print(f"create {name}: {e}")
            return False
    wait_until(attempt, 60, f"create {name}", interval=1.0)


def delete(bootstrap: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka import KafkaException

    def attempt():
        a = AdminClient({"bootstrap.servers": bootstrap})
        try:
            a.delete_topics([name], request_timeout=10)[name].result(15)
            return True
        except KafkaException as e:
            return e.args[0].code() == 3  # already gone
    wait_until(attempt, 60, f"delete {name}", interval=1.0)


def test_nodes_agree_on_metadata_after_random_faults(cluster):
    seed = int(os.environ.get("QUORUM_SEED", str(int(time.time()) % 100000)))
    rng = random.Random(seed)
    print(f"\nseed {seed} (QUORUM_SEED={seed} reproduces the fault sequence)")
    created: list[str] = []
    for rnd in range(ROUNDS):
        victim = rng.choice(cluster.ids())
        how = rng.choice(["kill", "stop"])
        getattr(cluster, how)(victim)
        up = [i for i in cluster.ids() if i != victim]
        via = cluster.node(rng.choice(up)).bootstrap
        name = f"q-{seed}-{rnd}"
        create(via, name, rng.randint(1, 4))
        created.append(name)
        if len(created) > 2 and rng.random() < 0.5:
            gone = created.pop(rng.randrange(len(created) - 1))
            delete(via, gone)
        print(f"round {rnd}: {how} node {victim}, created {name} via {via}")
        cluster.restart(victim)
    # Settled: every node applies the same offset and the same image.
    def agree():
        imgs = images(cluster)
        if len(imgs) != len(cluster.ids()):
            return False
        offsets = {i: m["offset"] for i, m in imgs.items()}
        states = [comparable(m["metadata"]) for m in imgs.values()]
        return len(set(offsets.values())) == 1 and all(s == states[0] for s in states) and imgs
    imgs = wait_until(agree, 60, "all nodes applying the same metadata image")
    md = next(iter(imgs.values()))["metadata"]
    for name in created:
        assert name in md["topics"], f"{name} lost from the metadata image"
    assert all(not b["fenced"] for b in md["brokers"].values()), md["brokers"]


def test_time_to_next_metadata_change_after_quorum_leader_kill(cluster):
    """Prints the time from SIGKILL of the quorum leader to the next committed change
    (a topic created through a surviving node)."""
    leader = cluster.quorum_leader()
    cluster.kill(leader)
    t0 = time.time()
    via = cluster.node(next(i for i in cluster.ids() if i != leader)).bootstrap
    create(via, f"after-kill-{int(t0)}", 1)
    took = time.time() - t0
    print(f"\nquorum leader {leader} killed; next metadata change committed after {took:.2f}s")
    assert took < 15, f"a topic could be created only {took:.1f}s after the leader's kill"
    cluster.restart(leader)


def test_time_to_fence_a_killed_broker(cluster):
    """Prints the time from SIGKILL of a broker to its partitions leaving it (RF=1: they go
    offline, leader -1) — broker.session.timeout.ms (9 s) plus detection."""
    from confluent_kafka.admin import AdminClient

    name = f"fence-{int(time.time())}"
    create(cluster.bootstrap, name, 6)
    leader = cluster.quorum_leader()
    victim = next(i for i in cluster.ids() if i != leader)
    cluster.kill(victim)
    t0 = time.time()
    via = cluster.node(leader).bootstrap

    def gone():
        md = AdminClient({"bootstrap.servers": via}).list_topics(topic=name, timeout=10)
        ps = md.topics[name].partitions.values()
        return ps and all(p.leader != victim for p in ps)
    wait_until(gone, 40, f"partitions of node {victim} leaving it")
    took = time.time() - t0
    print(f"\nbroker {victim} killed; its partitions left it after {took:.2f}s")
    cluster.restart(victim)


def test_no_majority_admin_times_out_but_data_keeps_flowing(cluster):
    """With 2 of 3 voters down there is no quorum: a topic creation fails with
    REQUEST_TIMED_OUT, while produce and fetch on a partition the survivor leads keep working.
    Then the others return and everything is back."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"nomaj-{int(time.time())}"
    create(cluster.bootstrap, name, 3)
    survivor = cluster.ids()[0]
    via = cluster.node(survivor).bootstrap
    md = AdminClient({"bootstrap.servers": via}).list_topics(topic=name, timeout=10)
    mine = next(p.id for p in md.topics[name].partitions.values() if p.leader == survivor)
    others = [i for i in cluster.ids() if i != survivor]
    for i in others:
        cluster.kill(i)
    try:
        a = AdminClient({"bootstrap.servers": via})
        t0 = time.time()
        with pytest.raises(KafkaException) as err:
            a.create_topics([NewTopic(f"{name}-x", 1, 1)], request_timeout=30)[f"{name}-x"].result(40)
        print(f"\nno majority: CreateTopics failed after {time.time() - t0:.1f}s with {err.value}")
        assert err.value.args[0].code() == 7, err.value  # REQUEST_TIMED_OUT

        p = Producer({"bootstrap.servers": via, "acks": "all", "message.timeout.ms": 20000})
        delivered = []
        for i in range(50):
            p.produce(name, value=f"v{i}".encode(), partition=mine,
                      on_delivery=lambda e, m: delivered.append(e is None))
        p.flush(30)
        assert delivered.count(True) == 50, delivered
        c = Consumer({"bootstrap.servers": via, "group.id": f"{name}-g",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(name, mine, 0)])
        got = 0
        deadline = time.time() + 30
        while got < 50 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
        c.close()
        assert got == 50
    finally:
        for i in others:
            cluster.restart(i)
    create(cluster.bootstrap, f"{name}-after", 1)


def test_roles_controller_only_and_broker_only_nodes(tmp_path):
    """Node 1 only votes (--role controller), nodes 2-3 are combined, node 4 only serves
    clients (not in the quorum list): clients see brokers 2-4 only, partitions are led by
    them, and `sluice cluster status` shows each node's roles."""
    import json
    import subprocess

    from confluent_kafka.admin import AdminClient

    from cluster import _free_ports, sluice_bin

    taken: set[int] = set()
    kafka = dict(zip([2, 3, 4], _free_ports(3, taken)))
    ctl = dict(zip([1, 2, 3], _free_ports(3, taken)))
    quorum = ",".join(f"{i}@127.0.0.1:{p}" for i, p in ctl.items())
    procs = []
    try:
        for i in [1, 2, 3, 4]:
            args = [str(sluice_bin()), "broker", "--node-id", str(i), "--controller-quorum", quorum,
                    "--data-dir", str(tmp_path / f"d{i}"), "--http", "off"]
            if i == 1:
                args += ["--role", "controller"]
            if i in ctl:
                args += ["--controller-listen", f"127.0.0.1:{ctl[i]}"]
            if i in kafka:
                args += ["--listen", f"127.0.0.1:{kafka[i]}"]
            log = open(tmp_path / f"node{i}.log", "wb")
            procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        bs = f"127.0.0.1:{kafka[4]}"
        wait_until(lambda: len(AdminClient({"bootstrap.servers": bs}).list_topics(timeout=5).brokers) == 3,
                   60, "brokers 2, 3 and 4 registered")
        md = AdminClient({"bootstrap.servers": bs}).list_topics(timeout=5)
        assert sorted(md.brokers) == [2, 3, 4], "a controller-only node is never given to clients"
        create(bs, "roles", 6)
        leaders = {p.leader for p in AdminClient({"bootstrap.servers": bs})
                   .list_topics(topic="roles", timeout=5).topics["roles"].partitions.values()}
        assert leaders == {2, 3, 4}, leaders
        out = subprocess.run([str(sluice_bin()), "--bootstrap-server", bs, "cluster", "status",
                              "--output", "json"], capture_output=True, text=True, timeout=30)
        doc = json.loads(out.stdout)
        roles = {n["id"]: sorted(n["roles"]) for n in doc["nodes"]}
        assert roles[1] == ["controller"] and roles[2] == ["broker", "controller"], roles
        assert roles[4] == ["broker"], roles
        assert doc["quorum"]["leader_id"] in (1, 2, 3)
    finally:
        for p in procs:
            p.kill()
            p.wait()
