"""Topic helpers shared by the cluster tests (confluent-kafka's AdminClient): create a
replicated topic, read each partition's leader / replicas / ISR from Metadata, and wait until
every partition has a leader and a full ISR; and Kafka's own command-line tools as java
command lines."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cluster import wait_until


def kafka_tool(main_class: str) -> list[str] | None:
    """A Kafka command-line tool (e.g. `org.apache.kafka.tools.LeaderElectionCommand`) as a
    java command line: KAFKA_TOOLS_CP (a classpath with kafka-tools and its dependencies),
    else kafka-tools of the reference Kafka's version (`scripts/kafka-reference fetch-tools`,
    cached after the first use); None when neither is available (no java or mvn)."""
    if not shutil.which("java"):
        return None
    cp = os.environ.get("KAFKA_TOOLS_CP")
    if not cp:
        script = Path(__file__).resolve().parents[2] / "scripts" / "kafka-reference"
        try:
            out = subprocess.run([str(script), "fetch-tools"], capture_output=True, text=True,
                                 timeout=600)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode != 0 or not out.stdout.strip():
            return None
        cp = f"{out.stdout.strip().splitlines()[-1]}/*"
    return ["java", "-Xmx256m", "-cp", cp, main_class]


def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def create(bootstrap: str, name: str, partitions: int, rf: int, min_isr: int) -> None:
    """Creates `name` with `rf` replicas and `min.insync.replicas=min_isr`; waits for it."""
    from confluent_kafka.admin import NewTopic

    a = admin(bootstrap)  # keep the handle alive until the future resolves
    fut = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf,
                                    config={"min.insync.replicas": str(min_isr)})],
                          operation_timeout=15, request_timeout=20)[name]
    fut.result(timeout=30)


def describe(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """{partition: (leader, replicas, isr)} from Metadata."""
    md = admin(bootstrap).list_topics(topic=topic, timeout=10)
    t = md.topics[topic]
    if t.error is not None:
        raise AssertionError(f"metadata of {topic}: {t.error}")
    return {p.id: (p.leader, list(p.replicas), sorted(p.isrs)) for p in t.partitions.values()}


def wait_isr(bootstrap: str, topic: str, size: int, timeout: float = 60.0,
             partitions: int | None = None) -> dict:
    """Waits until every partition of `topic` (all `partitions` of them, when given) has a
    leader and `size` in-sync replicas; returns `describe`'s answer."""
    def ok():
        d = describe(bootstrap, topic)
        complete = d and (partitions is None or len(d) == partitions)
        return d if complete and all(len(isr) == size and leader >= 0
                                     for leader, _, isr in d.values()) else None

    return wait_until(ok, timeout, f"every partition of {topic} with {size} in-sync replicas",
                      interval=0.5)
