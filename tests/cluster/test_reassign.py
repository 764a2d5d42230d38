"""Partition reassignment with Kafka's own `kafka-reassign-partitions` (ReassignPartitionsCommand
from kafka-tools), against Sluice or (CLUSTER_TARGET=kafka) Apache Kafka.

A 3-node cluster gets a 4th broker (a broker only, not a quorum voter), then:

a) Two partitions with three replicas on nodes 1-3 and acknowledged data move to the new
   broker (`--execute`, `--verify` until done): the replica lists become the targets, the new
   replica joins the ISR, the removed replicas' directories are deleted, node 4 leads the
   partition whose old leader left, and every acknowledged record is still there.
b) A reassignment with `--throttle`: the tool sets the throttle rates as dynamic broker configs
   and the throttled replicas as topic configs (checked with DescribeConfigs); `--list` shows it
   in progress; the new replica receives data but stays far from complete while throttled;
   `--cancel` puts the old replicas back, deletes the partial copy and clears the throttles;
   the same move without a throttle then completes; a second `--cancel` finds nothing to cancel.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from cluster import ClusterError, make_cluster, wait_until
from topics import admin, describe, kafka_tool, wait_isr

pytestmark = pytest.mark.cluster

WAIT_S = 90.0
RECORDS = 2000
THROTTLE = 50_000  # bytes/s
BIG_RECORDS = 4000
BIG_VALUE = 1000


@pytest.fixture(scope="module")
def tool():
    cmd = kafka_tool("org.apache.kafka.tools.reassign.ReassignPartitionsCommand")
    if cmd is None:
        pytest.skip("kafka-reassign-partitions not available (needs java and mvn, or "
                    "KAFKA_TOOLS_CP)")
    return cmd


@pytest.fixture(scope="module")
def cluster4():
    try:
        c = make_cluster(3)
    except ClusterError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        new = c.add_broker()
        assert new == 4
        yield c
    except ClusterError as e:
        pytest.fail(f"{e}\n{c.dump_logs()}", pytrace=False)
    finally:
        c.close()


def run_tool(tool, cluster, tmp_path: Path, moves: dict[tuple[str, int], list[int]], *args: str):
    spec = {"version": 1, "partitions": [
        {"topic": t, "partition": p, "replicas": r} for (t, p), r in moves.items()]}
    f = tmp_path / f"reassign-{time.monotonic_ns()}.json"
    f.write_text(json.dumps(spec))
    out = subprocess.run([*tool, "--bootstrap-server", cluster.bootstrap,
                          "--reassignment-json-file", str(f), *args],
                         capture_output=True, text=True, timeout=180)
    return out.returncode, out.stdout + out.stderr


def list_reassignments(tool, cluster) -> str:
    out = subprocess.run([*tool, "--bootstrap-server", cluster.bootstrap, "--list"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def wait_completed(tool, cluster, tmp_path, moves) -> str:
    def done():
        rc, out = run_tool(tool, cluster, tmp_path, moves, "--verify")
        finished = all(f"Reassignment of partition {t}-{p} is completed" in out for t, p in moves)
        return out if rc == 0 and finished else None

    return wait_until(done, WAIT_S, f"reassignment of {sorted(moves)} completed", interval=1.0)


def create(cluster, name: str, assignment: list[list[int]]) -> None:
    from confluent_kafka.admin import NewTopic

    a = admin(cluster.bootstrap)
    fut = a.create_topics([NewTopic(name, num_partitions=len(assignment),
                                    replica_assignment=assignment,
                                    config={"min.insync.replicas": "2"})],
                          operation_timeout=15, request_timeout=20)[name]
    fut.result(timeout=30)
    wait_isr(cluster.bootstrap, name, len(assignment[0]), partitions=len(assignment))


def produce(cluster, topic: str, n: int, size: int | None = None,
            prefix: str = "v") -> set[bytes]:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                  "enable.idempotence": True, "linger.ms": 5})
    acked: set[bytes] = set()
    errors: list[str] = []

    def cb(err, msg):
        if err is None:
            acked.add(msg.value())
        else:
            errors.append(str(err))

    for i in range(n):
        value = os.urandom(size) if size else f"{prefix}{i}".encode()
        p.produce(topic, key=f"k{i}".encode(), value=value, on_delivery=cb)
        p.poll(0)
    assert p.flush(60) == 0
    assert not errors and len(acked) == n, errors[:5]
    return acked


def consume_all(cluster, topic: str, expect: int) -> set[bytes]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"g-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: set[bytes] = set()
    deadline = time.monotonic() + WAIT_S
    try:
        while len(got) < expect and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.add(m.value())
    finally:
        c.close()
    return got


def replica_dir(cluster, node: int, topic: str, partition: int) -> Path:
    return cluster.node(node).data_dir / f"{topic}-{partition}"


def log_bytes(cluster, node: int, topic: str, partition: int) -> int:
    d = replica_dir(cluster, node, topic, partition)
    try:
        return sum(f.stat().st_size for f in d.glob("*.log"))
    except FileNotFoundError:
        return 0


def broker_config(cluster, node: int, key: str) -> str | None:
    from confluent_kafka.admin import ConfigResource, ResourceType

    res = ConfigResource(ResourceType.BROKER, str(node))
    a = admin(cluster.bootstrap)  # keep the handle alive until the future resolves
    configs = a.describe_configs([res])[res].result(timeout=30)
    entry = configs.get(key)
    return None if entry is None or entry.is_default else entry.value


def topic_config(cluster, topic: str, key: str) -> str:
    from confluent_kafka.admin import ConfigResource, ResourceType

    res = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(cluster.bootstrap)
    configs = a.describe_configs([res])[res].result(timeout=30)
    return configs[key].value or ""


def test_a_move_replicas_to_a_new_broker(cluster4, tool, tmp_path):
    c = cluster4
    topic = "mv"
    create(c, topic, [[1, 2, 3], [2, 3, 1]])
    acked = produce(c, topic, RECORDS)
    moves = {(topic, 0): [4, 2, 3], (topic, 1): [2, 3, 4]}
    rc, out = run_tool(tool, c, tmp_path, moves, "--execute")
    assert rc == 0 and "Successfully started partition reassignment" in out, out
    out = wait_completed(tool, c, tmp_path, moves)
    d = wait_isr(c.bootstrap, topic, 3, timeout=WAIT_S, partitions=2)
    assert d[0][1] == [4, 2, 3] and d[1][1] == [2, 3, 4], d
    assert sorted(d[0][2]) == [2, 3, 4] and sorted(d[1][2]) == [2, 3, 4], d
    assert d[0][0] == 4, f"the first target replica leads once the old leader left: {d}"
    # The removed replicas are deleted, the new ones hold the data.
    wait_until(lambda: not replica_dir(c, 1, topic, 0).exists()
               and not replica_dir(c, 1, topic, 1).exists(), WAIT_S,
               "node 1's removed replicas deleted")
    assert log_bytes(c, 4, topic, 0) > 0 and log_bytes(c, 4, topic, 1) > 0
    got = consume_all(c, topic, RECORDS)
    assert got == acked, f"{len(acked - got)} acknowledged records missing after the move"
    # The moved partitions keep taking acks=all writes.
    more = produce(c, topic, 50, prefix="after-")
    assert consume_all(c, topic, RECORDS + 50) == acked | more


def test_b_throttle_list_cancel_then_move(cluster4, tool, tmp_path):
    c = cluster4
    topic = "th"
    create(c, topic, [[1, 2, 3]])
    acked = produce(c, topic, BIG_RECORDS, BIG_VALUE)
    total = log_bytes(c, 1, topic, 0)
    assert total >= BIG_RECORDS * BIG_VALUE
    moves = {(topic, 0): [1, 2, 4]}
    rc, out = run_tool(tool, c, tmp_path, moves, "--execute", "--throttle", str(THROTTLE))
    assert rc == 0 and "Successfully started partition reassignment" in out, out
    # The tool's throttle: dynamic broker configs on every broker involved, and the topic's
    # throttled replicas (the current ones as leaders, the new one as follower).
    for node in (1, 2, 3, 4):
        assert broker_config(c, node, "leader.replication.throttled.rate") == str(THROTTLE)
        assert broker_config(c, node, "follower.replication.throttled.rate") == str(THROTTLE)
    assert "0:1" in topic_config(c, topic, "leader.replication.throttled.replicas"), out
    assert "0:4" in topic_config(c, topic, "follower.replication.throttled.replicas"), out
    assert f"{topic}-0" in list_reassignments(tool, c)
    # The new replica receives data, but at the throttled rate: after it started, a few
    # seconds move well under half of the log (unthrottled, 4 MB take far less than a second).
    wait_until(lambda: log_bytes(c, 4, topic, 0) > 0, WAIT_S, "node 4 receiving data")
    time.sleep(5)
    moved = log_bytes(c, 4, topic, 0)
    assert moved < total // 2, f"{moved} of {total} bytes moved in 5 s at {THROTTLE} B/s"
    rc, out = run_tool(tool, c, tmp_path, moves, "--verify")
    assert f"Reassignment of partition {topic}-0 is still in progress" in out, out
    # Cancel: back to the old replicas, the partial copy deleted, throttles cleared.
    rc, out = run_tool(tool, c, tmp_path, moves, "--cancel")
    assert rc == 0, out
    d = wait_isr(c.bootstrap, topic, 3, timeout=WAIT_S, partitions=1)
    assert d[0][1] == [1, 2, 3], d
    wait_until(lambda: not replica_dir(c, 4, topic, 0).exists(), WAIT_S,
               "node 4's partial replica deleted")
    assert f"{topic}-0" not in list_reassignments(tool, c)
    assert broker_config(c, 1, "leader.replication.throttled.rate") is None
    assert topic_config(c, topic, "leader.replication.throttled.replicas") == ""
    # The same move without a throttle completes; nothing is left to cancel afterwards.
    rc, out = run_tool(tool, c, tmp_path, moves, "--execute")
    assert rc == 0, out
    wait_completed(tool, c, tmp_path, moves)
    d = wait_isr(c.bootstrap, topic, 3, timeout=WAIT_S, partitions=1)
    assert d[0][1] == [1, 2, 4], d
    assert consume_all(c, topic, BIG_RECORDS) == acked
    rc, out = run_tool(tool, c, tmp_path, moves, "--cancel")
    assert rc == 0 and "None of the specified partition reassignments are active" in out, out
