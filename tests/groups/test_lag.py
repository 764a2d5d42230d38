"""Consumer lag for people and machines: `sluice groups describe/list/reset-offsets/delete`,
the broker's `/v1/groups` JSON API and the lag gauges on `/metrics`."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid

from confluent_kafka import Consumer, Producer

PER_PARTITION = 10
EXTRA = 5
PARTITIONS = 3


def http_json(broker, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://{broker.http}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    """A small Prometheus text-format parser: (name, labels, value) per sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparseable metrics line: {line!r}"
        name, labels, value = m.groups()
        lbl = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(labels or "")}
        out.append((name, lbl, float(value)))
    return out


def group_metrics(broker, group: str) -> tuple[dict, float | None]:
    with urllib.request.urlopen(f"http://{broker.http}/metrics", timeout=10) as r:
        samples = parse_metrics(r.read().decode())
    lag = {(l["topic"], int(l["partition"])): v for n, l, v in samples
           if n == "sluice_group_lag" and l.get("group") == group}
    status = [v for n, l, v in samples if n == "sluice_group_status" and l.get("group") == group]
    return lag, (status[0] if status else None)


def describe(broker, group: str) -> dict:
    p = broker.cli("groups", "describe", group, "--output", "json", "--http-server", broker.http)
    return json.loads(p.stdout)


def produce(broker, topic: str, per_partition: int) -> None:
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for part in range(PARTITIONS):
        for i in range(per_partition):
            p.produce(topic, value=f"v{i}".encode(), partition=part)
    assert p.flush(30) == 0


def test_lag_describe_reset_delete(broker):
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    broker.cli("topics", "create", topic, "--partitions", str(PARTITIONS))
    produce(broker, topic, PER_PARTITION)

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "client.id": "lag-test-consumer", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([topic])
    got, deadline = 0, time.monotonic() + 30
    while got < PARTITIONS * PER_PARTITION and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    assert got == PARTITIONS * PER_PARTITION
    c.commit(asynchronous=False)
    produce(broker, topic, EXTRA)  # the group now lags EXTRA per partition
    try:
        d = describe(broker, group)
        assert d["state"] == "Stable" and d["members"] == 1
        rows = {r["partition"]: r for r in d["partitions"] if r["topic"] == topic}
        assert sorted(rows) == list(range(PARTITIONS))
        for r in rows.values():
            assert r["current_offset"] == PER_PARTITION
            assert r["log_end_offset"] == PER_PARTITION + EXTRA
            assert r["lag"] == EXTRA
            assert r["client_id"] == "lag-test-consumer"
            assert r["consumer_id"] and r["host"]
        assert d["total_lag"] == PARTITIONS * EXTRA
        assert d["status"] == "OK", d  # members present, window not yet full
        assert d["status_error"] is None

        # The table form carries the same numbers and a STATUS line.
        table = broker.cli("groups", "describe", group, "--http-server", broker.http).stdout
        assert "STATUS: OK" in table
        assert re.search(rf"{group}\s+{topic}\s+0\s+{PER_PARTITION}\s+{PER_PARTITION + EXTRA}\s+{EXTRA}\s", table)

        # Machines: the JSON API and the gauges agree with the CLI.
        code, listing = http_json(broker, "/v1/groups")
        assert code == 200
        mine = [g for g in listing["groups"] if g["group"] == group]
        assert mine and mine[0]["members"] == 1 and mine[0]["state"] == "Stable"
        assert mine[0]["total_lag"] == PARTITIONS * EXTRA and mine[0]["status"] == "OK"
        code, detail = http_json(broker, f"/v1/groups/{group}")
        assert code == 200 and detail["status"] == "OK"
        hp = {p["partition"]: p for p in detail["partitions"]}
        for part, r in rows.items():
            assert hp[part]["lag"] == r["lag"] and hp[part]["current_offset"] == r["current_offset"]
            assert hp[part]["log_end_offset"] == r["log_end_offset"]
            assert hp[part]["member_id"] == r["consumer_id"]
            assert hp[part]["client_id"] == "lag-test-consumer"
        lag, status = group_metrics(broker, group)
        assert lag == {(topic, p): EXTRA for p in range(PARTITIONS)}
        assert status == 0

        # Offsets of an active group cannot be reset (Kafka's rule); the dry run still works.
        p = broker.cli("groups", "reset-offsets", group, "--topic", topic, "--to-earliest",
                       "--execute", check=False)
        assert p.returncode != 0 and "inactive" in p.stderr and "Stable" in p.stderr
    finally:
        c.close()

    # No members and lag > 0: STOPPED, everywhere.
    d = describe(broker, group)
    assert d["state"] == "Empty" and d["status"] == "STOPPED"
    assert group_metrics(broker, group)[1] == 3
    assert http_json(broker, f"/v1/groups/{group}")[1]["status"] == "STOPPED"

    # Dry run: a plan, nothing changes.
    plan = json.loads(broker.cli("groups", "reset-offsets", group, "--topic", topic,
                                 "--shift-by", "-3", "--output", "json").stdout)
    assert plan["executed"] is False
    assert [(x["partition"], x["current_offset"], x["new_offset"]) for x in plan["partitions"]] == \
        [(p, PER_PARTITION, PER_PARTITION - 3) for p in range(PARTITIONS)]
    assert all(r["current_offset"] == PER_PARTITION for r in describe(broker, group)["partitions"])
    assert "Dry run" in broker.cli("groups", "reset-offsets", group, "--topic", topic,
                                   "--to-latest").stdout

    # Execute on one partition, then by time and to the end.
    broker.cli("groups", "reset-offsets", group, "--topic", topic, "--partition", "1",
               "--to-offset", "12", "--execute")
    rows = {r["partition"]: r for r in describe(broker, group)["partitions"]}
    assert rows[1]["current_offset"] == 12 and rows[1]["lag"] == PER_PARTITION + EXTRA - 12
    assert rows[0]["current_offset"] == PER_PARTITION and rows[2]["current_offset"] == PER_PARTITION
    plan = json.loads(broker.cli("groups", "reset-offsets", group, "--topic", topic,
                                 "--to-datetime", "2000-01-01T00:00:00Z", "--output", "json").stdout)
    assert all(x["new_offset"] == 0 for x in plan["partitions"])
    broker.cli("groups", "reset-offsets", group, "--topic", topic, "--to-latest", "--execute")
    d = describe(broker, group)
    assert d["total_lag"] == 0 and d["status"] == "OK"
    assert group_metrics(broker, group) == ({(topic, p): 0 for p in range(PARTITIONS)}, 0)

    listed = json.loads(broker.cli("groups", "list", "--output", "json").stdout)
    assert any(g["group"] == group and g["state"] == "Empty" for g in listed)
    broker.cli("groups", "delete", group)
    listed = json.loads(broker.cli("groups", "list", "--output", "json").stdout)
    assert all(g["group"] != group for g in listed)
    assert http_json(broker, f"/v1/groups/{group}")[0] == 404


def test_unknown_group_and_unreachable_http(broker):
    code, body = http_json(broker, "/v1/groups/no-such-group")
    assert code == 404 and "error" in body
    p = broker.cli("groups", "describe", "no-such-group", check=False)
    assert p.returncode == 1 and "does not exist" in p.stderr

    # A group that exists but whose HTTP API is unreachable: no invented status.
    group = f"g-{uuid.uuid4().hex[:8]}"
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    broker.cli("topics", "create", topic, "--partitions", "1")
    broker.cli("groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute")
    p = broker.cli("groups", "describe", group, "--output", "json", "--http-server", "127.0.0.1:1")
    d = json.loads(p.stdout)
    assert d["status"] is None and "unreachable" in d["status_error"]
    p = broker.cli("groups", "describe", group, "--http-server", "127.0.0.1:1")
    assert "STATUS: unknown" in p.stdout
