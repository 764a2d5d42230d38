"""Sluice compatibility scenario for quixstreams: a tiny stateful pipeline.

    python compat_quix.py BOOTSTRAP [SCENARIO...]

A keyed count per key kept in quixstreams state (RocksDB), backed by a compacted changelog
topic that quixstreams creates; output goes to a second topic. After a first run the local
state directory is deleted and the application is restarted: the counts must continue from the
changelog (recovery) and the consumer group must resume from its committed offsets.

Output protocol (shared by every program of tests/compat): "VERSION name ver",
"PASS scenario detail", "FAIL scenario reason", "OBS scenario key=value". Exit 1 on failure.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
import uuid

import quixstreams
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from quixstreams import Application

RUN = uuid.uuid4().hex[:8]
KEYS = ["k0", "k1", "k2"]


def produce(app: Application, topic: str, n: int, start: int) -> None:
    with app.get_producer() as p:
        for i in range(n):
            key = KEYS[i % len(KEYS)]
            p.produce(topic=topic, key=key, value=json.dumps({"seq": start + i}).encode())


def make_app(bootstrap: str, group: str, state_dir: str) -> Application:
    return Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        use_changelog_topics=True,
        loglevel="WARNING",
    )


def pipeline(app: Application, in_name: str, out_name: str) -> None:
    src = app.topic(in_name, key_deserializer="str", value_deserializer="json")
    out = app.topic(out_name, key_serializer="str", value_serializer="json")

    def count(value: dict, state) -> dict:
        c = state.get("count", 0) + 1
        state.set("count", c)
        return {"seq": value["seq"], "count": c}

    app.dataframe(src).apply(count, stateful=True).to_topic(out)


def read_all(bootstrap: str, topic: str, expect: int) -> list[tuple[str, dict]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    got: list[tuple[str, dict]] = []
    deadline = time.time() + 20
    while len(got) < expect and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append((m.key().decode(), json.loads(m.value())))
    c.close()
    return got


def stateful_pipeline(bootstrap: str) -> str:
    in_name, out_name = f"quix-in-{RUN}", f"quix-out-{RUN}"
    group = f"quix-group-{RUN}"
    state_dir = tempfile.mkdtemp(prefix="quix-state-")
    try:
        app = make_app(bootstrap, group, state_dir)
        pipeline(app, in_name, out_name)
        produce(app, in_name, 30, 0)
        out = app.run(count=30, timeout=30)
        if len(out) != 30:
            raise AssertionError(f"first run produced {len(out)} outputs of 30")
        # Restart with the local state wiped: state must be recovered from the changelog topic
        # and consumption must resume at the committed offsets.
        shutil.rmtree(state_dir, ignore_errors=True)
        app2 = make_app(bootstrap, group, state_dir)
        pipeline(app2, in_name, out_name)
        produce(app2, in_name, 6, 30)
        out2 = app2.run(count=6, timeout=30)
        if len(out2) != 6:
            raise AssertionError(f"restarted run produced {len(out2)} outputs of 6")
        got = read_all(bootstrap, out_name, 36)
        finals: dict[str, int] = {}
        for key, v in got:
            finals[key] = max(finals.get(key, 0), v["count"])
        if sorted(v["seq"] for _, v in got) != list(range(36)):
            raise AssertionError(f"output topic holds seqs {sorted(v['seq'] for _, v in got)}")
        if finals != {k: 12 for k in KEYS}:
            raise AssertionError(f"final counts {finals} (state not recovered from changelog?)")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        changelogs = [t for t in admin.list_topics(timeout=10).topics if t.startswith("changelog__") and group in t]
        if not changelogs:
            raise AssertionError("no changelog topic created")
        res = ConfigResource(ConfigResource.Type.TOPIC, changelogs[0])
        cfg = admin.describe_configs([res])[res].result(timeout=10)
        policy = cfg["cleanup.policy"].value
        print(f"OBS stateful_pipeline changelog_cleanup_policy={policy}")
        if policy != "compact":
            raise AssertionError(f"changelog cleanup.policy={policy}")
        return f"36 records counted, state recovered from compacted changelog {changelogs[0]}"
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


SCENARIOS = {"stateful_pipeline": stateful_pipeline}


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: compat_quix.py BOOTSTRAP [SCENARIO...]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    bootstrap = sys.argv[1]
    print(f"VERSION quixstreams {quixstreams.__version__}")
    failed = False
    for name in sys.argv[2:] or list(SCENARIOS):
        fn = SCENARIOS.get(name)
        t0 = time.time()
        if fn is None:
            print(f"FAIL {name} unknown scenario")
            failed = True
            continue
        try:
            detail = fn(bootstrap)
            print(f"PASS {name} {detail} ({int((time.time() - t0) * 1000)} ms)", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure as a FAIL line
            failed = True
            print(f"FAIL {name} {type(e).__name__}: {str(e).replace(chr(10), ' ')}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
