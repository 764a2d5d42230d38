"""Consumer-group semantics with real clients against Sluice's classic group coordinator:

1. eager (range) rebalance when one of three members leaves: 2/2/2 -> 3/3, at-least-once with
   commits after processing (every produced offset consumed, committed offsets at the end);
2. cooperative-sticky: a third member joining only moves partitions (incremental revokes), the
   first two keep what they keep, 2/2/2 at the end;
3. committed offsets survive a broker restart (SIGTERM and SIGKILL) on the same data dir;
4. static membership: a static member that closes (no LeaveGroup) and comes back within the
   session timeout gets its partitions back, and the other member sees no rebalance;
5. confluent-kafka, kafka-python and aiokafka consumers in one group (range) split a topic
   without overlap.

Members run one poll loop each in a thread of their own; waits are bounded.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

SESSION = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


# -- helpers ---------------------------------------------------------------------------------

def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(pred, timeout: float, what) -> None:
    """Polls `pred` until true; fails with `what()` (a callable, for a fresh diagnosis)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    if pred():
        return
    raise AssertionError(f"timed out after {timeout}s: {what() if callable(what) else what}")


def group_doc(broker, group: str) -> dict:
    """The coordinator's view of a group (GET /v1/groups/{group}): state, generation, members."""
    with urllib.request.urlopen(f"http://{broker.http}/v1/groups/{group}", timeout=10) as r:
        return json.loads(r.read())


def requests_total(broker, api: str) -> float:
    """sluice_requests_total{api=API} from /metrics: requests of that API the broker handled."""
    with urllib.request.urlopen(f"http://{broker.http}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^sluice_requests_total\{[^}]*api="%s"[^}]*\} (\S+)$' % re.escape(api), text,
                  re.M)
    return float(m.group(1)) if m else 0.0


def create_topic(broker, topic: str, partitions: int) -> None:
    broker.cli("topics", "create", topic, "--partitions", str(partitions))


def produce(broker, topic: str, records, *, partition: int | None = None) -> dict:
    """Produces (key, value) pairs (keyed: murmur2 like Java) and returns
    {(partition, offset): (key, value)} from the delivery reports."""
    out, errors = {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            out[(msg.partition(), msg.offset())] = (msg.key(), msg.value())

    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                  "partitioner": "murmur2_random", "linger.ms": 5})
    for k, v in records:
        if partition is None:
            p.produce(topic, key=k, value=v, on_delivery=on_delivery)
        else:
            p.produce(topic, key=k, value=v, partition=partition, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0, "producer did not flush in 30s"
    assert not errors, f"delivery errors: {errors[:5]}"
    return out


def committed(broker, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets, read by a consumer that does not join the group."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


class Member:
    """A confluent-kafka group member with its own poll loop in a thread.

    Records rebalance callbacks as events ("assign"|"revoke"|"lost", frozenset(partitions)),
    keeps the current assignment from them (assign adds, revoke/lost removes: right for both
    the eager protocol, whose callbacks carry the whole assignment, and the cooperative one,
    whose callbacks carry the increments), and the consumed records (partition, offset, key,
    value). With `commit`, every record is committed synchronously after it is processed.
    """

    def __init__(self, name: str, broker, group: str, topic: str, *, commit: bool = True,
                 **conf):
        self.name = name
        self.topic = topic
        self.commit = commit
        self.conf = {"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": name,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "partition.assignment.strategy": "range", **SESSION, **conf}
        self.lock = threading.Lock()
        self.events: list[tuple[str, frozenset]] = []
        self.assignment: set[int] = set()
        self.records: list[tuple[int, int, bytes, bytes]] = []
        self.errors: list[str] = []
        self.commit_failures = 0
        self.ready = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), f"{name}: consumer did not start"

    def _event(self, kind: str, parts) -> None:
        ps = frozenset(p.partition for p in parts)
        with self.lock:
            self.events.append((kind, ps))
            if kind == "assign":
                self.assignment |= ps
            else:
                self.assignment -= ps

    def _run(self) -> None:
        c = Consumer(self.conf)
        try:
            c.subscribe([self.topic],
                        on_assign=lambda _c, ps: self._event("assign", ps),
                        on_revoke=lambda _c, ps: self._event("revoke", ps),
                        on_lost=lambda _c, ps: self._event("lost", ps))
            self.ready.set()
            while not self._stop.is_set():
                m = c.poll(0.1)
                if m is None:
                    continue
                if m.error():
                    with self.lock:
                        self.errors.append(str(m.error()))
                    continue
                with self.lock:
                    self.records.append((m.partition(), m.offset(), m.key(), m.value()))
                if self.commit:
                    try:
                        c.commit(message=m, asynchronous=False)
                    except KafkaException:
                        # e.g. REBALANCE_IN_PROGRESS: at-least-once, the next owner re-reads.
                        self.commit_failures += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            with self.lock:
                self.errors.append(f"poll loop died: {e!r}")
        finally:
            self.ready.set()
            c.close()

    def close(self, timeout: float = 15) -> None:
        """Stops the poll loop and closes the consumer (a dynamic member sends LeaveGroup; a
        static one, with group.instance.id, does not)."""
        self._stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.name}: close did not return in {timeout}s"

    # snapshots
    def parts(self) -> frozenset:
        with self.lock:
            return frozenset(self.assignment)

    def n_events(self) -> int:
        with self.lock:
            return len(self.events)

    def events_since(self, i: int) -> list:
        with self.lock:
            return list(self.events[i:])

    def consumed(self) -> list:
        with self.lock:
            return list(self.records)

    def __repr__(self) -> str:
        with self.lock:
            return (f"{self.name}(assignment={sorted(self.assignment)}, "
                    f"events={[(k, sorted(p)) for k, p in self.events]}, "
                    f"records={len(self.records)}, errors={self.errors[:3]})")


def assignments(members) -> list[frozenset]:
    return [m.parts() for m in members]


def balanced(members, sizes: list[int], total: int) -> bool:
    """Each member holds sizes[i] partitions (in order), disjoint, covering 0..total."""
    a = assignments(members)
    union = frozenset().union(*a)
    return (sorted(len(x) for x in a) == sorted(sizes) and sum(len(x) for x in a) == total
            and union == frozenset(range(total)))


def wait_stable(members, sizes, total, timeout=30.0, settle=1.5) -> list[frozenset]:
    """Waits for a balanced assignment that holds (no callback at all) for `settle` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait_until(lambda: balanced(members, sizes, total), max(0.1, deadline - time.monotonic()),
                   lambda: f"no {sizes} assignment of {total} partitions: {members}")
        marks = [m.n_events() for m in members]
        time.sleep(settle)
        if [m.n_events() for m in members] == marks and balanced(members, sizes, total):
            return assignments(members)
    raise AssertionError(f"assignment did not settle at {sizes}: {members}")


def close_all(members) -> None:
    for m in members:
        if m.thread.is_alive():
            m._stop.set()
    for m in members:
        m.thread.join(15)


# -- 1. eager rebalance on leave, at-least-once ------------------------------------------------

def test_eager_leave_takeover_no_record_skipped(broker):
    topic, group = unique("sem-leave"), unique("g-leave")
    create_topic(broker, topic, 6)
    members = [Member(f"leave-{i}", broker, group, topic) for i in range(3)]
    try:
        first = wait_stable(members, [2, 2, 2], 6)
        assert all(len(a) == 2 for a in first), f"not 2 partitions each: {members}"
        # on_assign reported exactly those two partitions last (eager: whole assignment).
        for m, a in zip(members, first):
            last_assign = [p for k, p in m.events_since(0) if k == "assign"][-1]
            assert last_assign == a, f"{m.name}: last on_assign {sorted(last_assign)} != {sorted(a)}"

        produced = produce(broker, topic, [(f"key-{i}".encode(), f"value-{i}".encode())
                                           for i in range(300)])
        total = lambda: sum(len(m.consumed()) for m in members)  # noqa: E731
        wait_until(lambda: total() >= 150, 30, lambda: f"consumed {total()} of 300: {members}")

        leaver = members[2]
        leaver_parts = leaver.parts()
        marks = [m.n_events() for m in members[:2]]
        leaver.close()  # LeaveGroup
        produced.update(produce(broker, topic, [(f"key-{i}".encode(), f"value-{i}".encode())
                                                for i in range(300, 600)]))
        assert len(produced) == 600

        stayers = members[:2]
        final = wait_stable(stayers, [3, 3], 6)
        for m, mark in zip(stayers, marks):
            kinds = [k for k, _ in m.events_since(mark)]
            assert "assign" in kinds, f"{m.name} saw no rebalance after {leaver.name} left: {m}"
        assert leaver_parts <= final[0] | final[1], (leaver_parts, final)

        ends: dict[int, int] = {}
        for (p, o) in produced:
            ends[p] = max(ends.get(p, 0), o + 1)

        def seen():
            return {(p, o): (k, v) for m in members for p, o, k, v in m.consumed()}

        def missing():
            s = seen()
            return sorted(po for po in produced if po not in s)

        wait_until(lambda: not missing(), 30,
                   lambda: f"{len(missing())} produced records never consumed, e.g. "
                           f"{missing()[:10]}; {members}")
        s = seen()
        for po, kv in produced.items():
            assert s[po] == kv, f"record at {po}: consumed {s[po]}, produced {kv}"
        # Coverage per partition: the union of consumed offsets is exactly 0..end.
        for p, end in ends.items():
            offs = {o for (pp, o) in s if pp == p}
            assert offs == set(range(end)), f"partition {p}: consumed offsets != 0..{end}"
        # Each stayer only consumed from partitions it held at some time.
        for m in stayers:
            held = frozenset().union(*[ps for k, ps in m.events_since(0) if k == "assign"])
            bad = {p for p, _, _, _ in m.consumed()} - held
            assert not bad, f"{m.name} consumed from partitions it never held: {bad}"
        # Commits after processing: the group ends committed at the log ends.
        wait_until(lambda: committed(broker, group, topic, 6) == ends, 15,
                   lambda: f"committed {committed(broker, group, topic, 6)} != ends {ends}")
        for m in members:
            assert not m.errors, f"{m.name}: {m.errors}"
    finally:
        close_all(members)


# -- 2. cooperative-sticky: incremental revokes only ---------------------------------------

def test_cooperative_sticky_third_member_incremental(broker):
    topic, group = unique("sem-coop"), unique("g-coop")
    create_topic(broker, topic, 6)
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    members = [Member(f"coop-{i}", broker, group, topic, commit=False, **coop) for i in range(2)]
    try:
        before = wait_stable(members, [3, 3], 6)
        marks = [m.n_events() for m in members]
        members.append(Member("coop-2", broker, group, topic, commit=False, **coop))
        after = wait_stable(members, [2, 2, 2], 6)

        for m, b, a, mark in zip(members[:2], before, after, marks):
            evs = m.events_since(mark)
            assert a <= b, (f"{m.name} got partitions it did not have ({sorted(a - b)}); "
                            f"sticky should only take away: before {sorted(b)}, after {sorted(a)}")
            revoked = frozenset().union(*[p for k, p in evs if k == "revoke"])
            lost = [p for k, p in evs if k == "lost"]
            assert not lost, f"{m.name}: partitions lost (not revoked): {lost}; {m}"
            assert revoked == b - a, (f"{m.name}: on_revoke gave {sorted(revoked)}, expected only "
                                      f"the moved partitions {sorted(b - a)} (eager-style revoke "
                                      f"of all would include kept ones {sorted(a)}); events {evs}")
            assert not (revoked & a), f"{m.name}: kept partitions {sorted(revoked & a)} were revoked"
            gained = frozenset().union(*[p for k, p in evs if k == "assign"])
            assert not gained, (f"{m.name}: incremental on_assign after the join gave "
                                f"{sorted(gained)}, expected nothing new; events {evs}")
        moved = (before[0] - after[0]) | (before[1] - after[1])
        assert after[2] == moved, f"new member got {sorted(after[2])}, moved were {sorted(moved)}"
        new_assigns = [p for k, p in members[2].events_since(0) if k == "assign"]
        assert frozenset().union(*new_assigns) == after[2], members[2]
        for m in members:
            assert not m.errors, f"{m.name}: {m.errors}"
    finally:
        close_all(members)


# -- 3. committed offsets survive a restart -------------------------------------------------

PARTS_RESTART = 4
PER_PART = 40


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_committed_offsets_survive_restart(broker, how):
    b = type(broker)(broker.sets)  # a broker of its own, same settings: this test restarts it
    b.start()
    try:
        topic, group = unique(f"sem-restart-{how}"), unique("g-restart")
        create_topic(b, topic, PARTS_RESTART)
        produced = {}
        for p in range(PARTS_RESTART):
            produced.update(produce(b, topic, [(f"k{p}-{i}".encode(), f"v{p}-{i}".encode())
                                               for i in range(PER_PART)], partition=p))
        # A different "half" per partition so a mix-up between partitions shows.
        commit_at = {p: PER_PART // 2 - 3 + 2 * p for p in range(PARTS_RESTART)}

        conf = {"bootstrap.servers": b.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": False, "partition.assignment.strategy": "range", **SESSION}
        c = Consumer(conf)
        c.subscribe([topic])
        seen: dict[int, set] = {p: set() for p in range(PARTS_RESTART)}
        deadline = time.monotonic() + 30
        try:
            while (any(not set(range(commit_at[p])) <= seen[p] for p in seen)
                   and time.monotonic() < deadline):
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                seen[m.partition()].add(m.offset())
            assert all(set(range(commit_at[p])) <= seen[p] for p in seen), \
                f"first consumer did not read the first halves in 30s: {seen}"
            c.commit(offsets=[TopicPartition(topic, p, o) for p, o in commit_at.items()],
                     asynchronous=False)
        finally:
            c.close()
        assert committed(b, group, topic, PARTS_RESTART) == commit_at

        if how == "sigterm":
            b.stop()
        else:
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait(10)
            b.proc = None
            b._log.close()
        b.start()

        after = committed(b, group, topic, PARTS_RESTART)
        assert after == commit_at, (f"committed offsets after {how} restart {after} != committed "
                                    f"before {commit_at}")
        c = Consumer(conf)
        c.subscribe([topic])
        first: dict[int, tuple] = {}
        deadline = time.monotonic() + 30
        try:
            while len(first) < PARTS_RESTART and time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                first.setdefault(m.partition(), (m.offset(), m.key(), m.value()))
        finally:
            c.close()
        assert len(first) == PARTS_RESTART, f"resumed consumer saw only partitions {sorted(first)}"
        for p, (o, k, v) in first.items():
            assert o == commit_at[p], (f"after {how} restart partition {p} resumed at offset {o}, "
                                       f"expected the committed {commit_at[p]}")
            assert (k, v) == produced[(p, o)], f"partition {p} offset {o}: wrong record {k!r}={v!r}"
    finally:
        if b.proc is not None:
            b.stop()


# -- 4. static membership ----------------------------------------------------------------------

def test_static_member_rejoins_without_rebalance(broker):
    topic, group = unique("sem-static"), unique("g-static")
    create_topic(broker, topic, 4)
    static = lambda i: {"group.instance.id": f"{group}-inst-{i}"}  # noqa: E731
    a = Member("static-a", broker, group, topic, commit=False, **static("a"))
    # Let a become the leader before b joins (the rejoining member is a follower then).
    wait_stable([a], [4], 4, settle=0.5)
    b = Member("static-b", broker, group, topic, commit=False, **static("b"))
    b2 = None
    try:
        pa, pb = wait_stable([a, b], [2, 2], 4)
        before = group_doc(broker, group)
        assert before["state"] == "Stable", before
        mark = a.n_events()
        b.close()  # static: no LeaveGroup
        t_closed = time.monotonic()
        b2 = Member("static-b-again", broker, group, topic, commit=False, **static("b"))
        wait_until(lambda: b2.parts() == pb, 5.5,
                   lambda: f"returning static member did not get {sorted(pb)} back: {b2}")
        took = time.monotonic() - t_closed
        assert took < 6.0, f"rejoin took {took:.1f}s, not within the session timeout"
        # Whether b2's JoinGroup started a rebalance was decided before b2 got its partitions:
        # the coordinator's own record must show the same generation, still Stable, with b's
        # instance id now under a new member id. (No fixed sleep: a slow broker cannot hide a
        # rebalance from this.) Then a couple of heartbeat rounds answered since the rejoin, in
        # which a rebalance would have been signalled to a.
        hb = requests_total(broker, "Heartbeat")
        wait_until(lambda: requests_total(broker, "Heartbeat") >= hb + 4, 20,
                   "four heartbeats answered after the static member came back")
        after = group_doc(broker, group)
        ids = lambda d: {m["group_instance_id"]: m["member_id"] for m in d["members"]}  # noqa: E731
        assert (after["generation"], after["state"]) == (before["generation"], "Stable"), (
            f"static member's return started a rebalance: generation {before['generation']} -> "
            f"{after['generation']}, state {after['state']}, members {ids(after)}")
        assert set(ids(after)) == set(ids(before)) == {f"{group}-inst-a", f"{group}-inst-b"}, after
        assert ids(after)[f"{group}-inst-b"] != ids(before)[f"{group}-inst-b"], (
            f"the returning static member kept the old member id: {after}")
        assert b2.parts() == pb, b2
        assert a.events_since(mark) == [], (
            f"{a.name} saw rebalance callbacks after static member b left and came back: "
            f"{a.events_since(mark)}")
        assert a.parts() == pa, a
        assert [k for k, _ in b2.events_since(0)] == ["assign"], \
            f"returning static member should get one assignment, no revokes: {b2}"
        # Still working: records reach their owners.
        produce(broker, topic, [(None, f"s{i}".encode()) for i in range(4)], partition=None)
        wait_until(lambda: len(a.consumed()) + len(b2.consumed()) >= 4, 15, lambda: (a, b2))
        assert {p for p, *_ in a.consumed()} <= pa and {p for p, *_ in b2.consumed()} <= pb
    finally:
        close_all([m for m in (a, b, b2) if m is not None])


# -- 5. three client libraries, one group ----------------------------------------------------

class _Other:
    """A kafka-python or aiokafka member with its own poll loop thread."""

    def __init__(self, kind: str, broker, group: str, topic: str):
        self.kind, self.name = kind, kind
        self.broker, self.group, self.topic = broker, group, topic
        self.lock = threading.Lock()
        self.assignment: frozenset = frozenset()
        self.records: list = []
        self.errors: list = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=getattr(self, f"_run_{kind}"), daemon=True)
        self.thread.start()

    def _note(self, assignment, recs) -> None:
        with self.lock:
            self.assignment = frozenset(tp.partition for tp in assignment)
            self.records.extend(recs)

    def _run_kafka_python(self) -> None:
        from kafka import KafkaConsumer
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        try:
            c = KafkaConsumer(self.topic, bootstrap_servers=self.broker.bootstrap,
                              group_id=self.group, client_id="kafka-python",
                              auto_offset_reset="earliest", enable_auto_commit=False,
                              session_timeout_ms=6000, heartbeat_interval_ms=1000,
                              partition_assignment_strategy=[RangePartitionAssignor])
            try:
                while not self._stop.is_set():
                    batch = c.poll(timeout_ms=100)
                    recs = [(m.partition, m.offset, m.key, m.value)
                            for ms in batch.values() for m in ms]
                    self._note(c.assignment(), recs)
                    if recs:
                        c.commit()
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.errors.append(repr(e))

    def _run_aiokafka(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.coordinator.assignors.range import RangePartitionAssignor

        async def main():
            c = AIOKafkaConsumer(self.topic, bootstrap_servers=self.broker.bootstrap,
                                 group_id=self.group, client_id="aiokafka",
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                 partition_assignment_strategy=(RangePartitionAssignor,))
            await c.start()
            try:
                while not self._stop.is_set():
                    data = await c.getmany(timeout_ms=100)
                    recs = [(m.partition, m.offset, m.key, m.value)
                            for ms in data.values() for m in ms]
                    self._note(c.assignment(), recs)
                    if recs:
                        await c.commit()
            finally:
                await c.stop()

        try:
            asyncio.run(main())
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.errors.append(repr(e))

    def parts(self) -> frozenset:
        with self.lock:
            return self.assignment

    def n_events(self) -> int:  # for wait_stable: assignment changes count as events
        with self.lock:
            return hash(self.assignment)

    def consumed(self) -> list:
        with self.lock:
            return list(self.records)

    def __repr__(self) -> str:
        with self.lock:
            return (f"{self.name}(assignment={sorted(self.assignment)}, records={len(self.records)},"
                    f" errors={self.errors[:3]})")


def test_three_client_libraries_share_group(broker):
    topic, group = unique("sem-mixed"), unique("g-mixed")
    create_topic(broker, topic, 3)
    members = [Member("confluent", broker, group, topic)]
    members.append(_Other("kafka_python", broker, group, topic))
    members.append(_Other("aiokafka", broker, group, topic))
    try:
        final = wait_stable(members, [1, 1, 1], 3, timeout=40)
        produced = produce(broker, topic, [(f"m{i}".encode(), f"mixed-{i}".encode())
                                           for i in range(90)])

        def owners():
            out: dict = {}
            for m in members:
                for p, o, k, v in m.consumed():
                    out.setdefault((p, o), []).append((m.name, k, v))
            return out

        wait_until(lambda: set(owners()) >= set(produced), 30,
                   lambda: f"consumed {len(owners())} of {len(produced)}: {members}")
        # No sleep for late duplicates: a record can be consumed twice only by members holding
        # the same partition, and the assignments are disjoint and each member consumed only
        # from its own (checked below), whatever arrives later.
        assert sorted(p for a in final for p in a) == [0, 1, 2], final
        own = owners()
        dup = {po: who for po, who in own.items() if len(who) > 1}
        assert not dup, f"records consumed by more than one member: {list(dup.items())[:5]}"
        for po, [(name, k, v)] in own.items():
            assert (k, v) == produced[po], f"{po}: {name} got {k!r}={v!r}, produced {produced[po]}"
        for m, a in zip(members, final):
            got = {p for p, *_ in m.consumed()}
            assert got == a, f"{m.name} held {sorted(a)} but consumed from {sorted(got)}"
            assert not m.errors, f"{m.name}: {m.errors}"
    finally:
        close_all(members)
