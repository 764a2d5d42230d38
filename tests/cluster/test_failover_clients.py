"""Client failover with real clients on a 3-node cluster, against Sluice or the reference Kafka
(CLUSTER_TARGET): for each of confluent-kafka, kafka-python, the Java client (kafka-clients, the
version tests/compat/java uses) and franz-go, a producer (acks=all, idempotent) and a group
consumer (committing) of the same client work on an RF=3, min.insync.replicas=2 topic with 3
partitions while the leader of one partition is SIGKILLed and later restarted. Then:

- every acknowledged record is in the log, at the offset it was acknowledged with, and the log
  holds no duplicate (every producer here is idempotent);
- the consumer saw every acknowledged record (at-least-once: it may see one twice), and only
  records that are in the log (nothing read past the high watermark and truncated later);
- the clients recovered by themselves: the same producer got writes to the killed leader's
  partition acknowledged by its new leader, and the same consumer read them (each client has to
  refresh its metadata after NOT_LEADER_OR_FOLLOWER / the closed connection);
- after the restart the killed broker is back in every ISR and the group's committed offsets
  equal the high watermarks (the consumer's final synchronous commit).

The killed broker is a partition leader that is neither the group's coordinator nor (where
another choice exists) the quorum leader: this test is about partition leadership, and the
reference cluster keeps __consumer_offsets at RF=1.

The Java and Go sides are small programs (tests/cluster/failover/Failover.java, built with
javac against the compat suite's Maven classpath; tests/cluster/failover/go, franz-go, built
with `go build`) that print JSON lines of what they acknowledged / consumed and stop producing
on "stop" on stdin. A client whose toolchain is missing is skipped.

    SLUICE_BIN=target/release/sluice .venv/bin/python -m pytest tests/cluster/test_failover_clients.py -s
    CLUSTER_TARGET=kafka .venv/bin/python -m pytest tests/cluster/test_failover_clients.py -s
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from cluster import ClusterError, KafkaCluster, _free_ports, make_cluster, wait_until
from conftest import cluster_target
from topics import admin, create, describe, wait_isr

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
FAILOVER = Path(__file__).resolve().parent / "failover"
LAG_MS = 4000
PARTITIONS = 3
WAIT_S = 60.0
BEFORE_KILL = 150        # acknowledged writes before the kill
AFTER_KILL = 300         # acknowledged writes after the kill (in all)
AFTER_KILL_VICTIM = 50   # ... of which to the killed leader's partition, and consumed from it
AFTER_RESTART = 100      # acknowledged writes after the killed broker is back in the ISR
DRAIN_S = 90             # how long a consumer may take to see everything after the producer stops


def kafka_ports() -> list[int]:
    """Three Kafka ports P, each with P+1 (its controller port) free too."""
    taken: set[int] = set()
    out: list[int] = []
    while len(out) < 3:
        (p,) = _free_ports(1, taken)
        try:
            _free_ports_exact(p + 1)
        except OSError:
            continue
        taken.add(p + 1)
        out.append(p)
    return out


def _free_ports_exact(port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


@pytest.fixture(scope="module")
def fc():
    configs = {"replica.lag.time.max.ms": str(LAG_MS)}
    try:
        if cluster_target() == "kafka":
            # KafkaCluster directly, for its ports: below the ephemeral range (kafka-reference's
            # own picks collide with client sockets on a busy machine); one retry for a port
            # taken between the check and the bind.
            try:
                c = KafkaCluster(3, broker_configs=configs, ports=kafka_ports())
            except ClusterError:
                c = KafkaCluster(3, broker_configs=configs, ports=kafka_ports())
        else:
            c = make_cluster(3, broker_configs=configs)
    except ClusterError as e:
        pytest.fail(str(e), pytrace=False)
    print(f"\n{c.target} cluster of {c.n} ready in {c.start_seconds:.1f}s: {c.bootstrap}")
    try:
        yield c
    finally:
        c.close()


# -- cluster helpers ---------------------------------------------------------------------------

def group_coordinator(bootstrap: str, group: str) -> int | None:
    try:
        a = admin(bootstrap)
        fut = a.describe_consumer_groups([group], request_timeout=10)[group]
        return fut.result(timeout=15).coordinator.id
    except Exception as e:  # noqa: BLE001 - only steers the choice of the broker to kill
        print(f"  (group coordinator unknown: {e!r})")
        return None


def read_log(bootstrap: str, topic: str) -> tuple[dict[int, int], list[tuple[int, int, str]]]:
    """({partition: high watermark}, [(partition, offset, value)]) of the whole topic."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    try:
        hw = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
              for p in range(PARTITIONS)}
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        out, pos = [], {p: 0 for p in range(PARTITIONS)}
        deadline = time.monotonic() + WAIT_S
        while any(pos[p] < hw[p] for p in pos) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append((m.partition(), m.offset(), m.value().decode()))
            pos[m.partition()] = m.offset() + 1
        return hw, out
    finally:
        c.close()


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset
                for tp in c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)],
                                      timeout=15)}
    finally:
        c.close()


# -- client runs -------------------------------------------------------------------------------

class Run:
    """What one client's producer acknowledged and its consumer received, with timestamps."""

    def __init__(self, name: str):
        self.name = name
        self.lock = threading.Lock()
        self.acked: list[tuple[str, int, int, float]] = []      # (value, partition, offset, t)
        self.consumed: list[tuple[str, int, int, float]] = []
        self.errors: list[tuple[str, str, float]] = []           # (side, message, t)
        self.stop_event = threading.Event()
        self.producer_done_at: float | None = None
        self.done = threading.Event()
        self.summary: dict = {}

    def ack(self, value: str, p: int, o: int) -> None:
        with self.lock:
            self.acked.append((value, p, o, time.monotonic()))

    def rec(self, value: str, p: int, o: int) -> None:
        with self.lock:
            self.consumed.append((value, p, o, time.monotonic()))

    def err(self, side: str, msg: str) -> None:
        with self.lock:
            self.errors.append((side, msg, time.monotonic()))

    def snapshot(self):
        with self.lock:
            return list(self.acked), list(self.consumed)

    def stop(self) -> None:
        self.stop_event.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)

    def kill(self) -> None:
        self.stop_event.set()

    def diagnostics(self) -> str:
        return ""

    def cleanup(self) -> None:
        pass

    # For the in-process Python clients: the consumer drains until it has seen every
    # acknowledged value (or DRAIN_S after the producer stopped).
    def consumer_should_finish(self, seen: set[str]) -> bool:
        if self.producer_done_at is None:
            return False
        with self.lock:
            missing = sum(1 for v, *_ in self.acked if v not in seen)
        return missing == 0 or time.monotonic() - self.producer_done_at > DRAIN_S


class ThreadRun(Run):
    def __init__(self, name: str, produce, consume):
        super().__init__(name)
        self.threads = [threading.Thread(target=self._guard, args=(produce, "producer"), daemon=True),
                        threading.Thread(target=self._guard, args=(consume, "consumer"), daemon=True)]
        for t in self.threads:
            t.start()
        threading.Thread(target=self._join, daemon=True).start()

    def _guard(self, fn, side):
        try:
            fn(self)
        except Exception as e:  # noqa: BLE001
            self.err(side, f"{side} died: {e!r}")
        finally:
            if side == "producer" and self.producer_done_at is None:
                self.producer_done_at = time.monotonic()

    def _join(self):
        for t in self.threads:
            t.join()
        self.done.set()


class ProcessRun(Run):
    def __init__(self, name: str, cmd: list[str]):
        super().__init__(name)
        self.stderr = tempfile.NamedTemporaryFile(prefix=f"failover-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)
        self.other: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                d = json.loads(line)
            except ValueError:
                self.other.append(line.rstrip())
                continue
            if "ack" in d:
                self.ack(d["ack"], d["p"], d["o"])
            elif "rec" in d:
                self.rec(d["rec"], d["p"], d["o"])
            elif "err" in d:
                self.err(d.get("side", "?"), d["err"])
            elif "produced" in d:
                self.producer_done_at = time.monotonic()
                self.summary["produced"] = d["produced"]
            else:
                self.summary.update(d)
        self.proc.wait()
        self.done.set()

    def stop(self) -> None:
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def diagnostics(self) -> str:
        self.stderr.flush()
        err = Path(self.stderr.name).read_text(errors="replace")[-3000:]
        return (f"exit {self.proc.returncode}; other stdout: {self.other[-20:]}; stderr "
                f"({self.stderr.name}) tail:\n{err}")

    def cleanup(self) -> None:
        self.stderr.close()
        Path(self.stderr.name).unlink(missing_ok=True)


# confluent-kafka ------------------------------------------------------------------------------

def start_confluent(bootstrap: str, topic: str, group: str) -> Run:
    from confluent_kafka import Consumer, KafkaError, Producer

    def produce(run: Run):
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 5, "message.timeout.ms": 120000,
                      "error_cb": lambda e: run.err("producer-info", str(e))})

        def cb(err, msg):
            if err:
                run.err("producer", str(err))
            else:
                run.ack(msg.value().decode(), msg.partition(), msg.offset())

        i = 0
        while not run.stop_event.is_set():
            p.produce(topic, value=f"ck-{i}".encode(), partition=i % PARTITIONS, on_delivery=cb)
            i += 1
            p.poll(0.004)
        left = p.flush(130)
        run.summary["produced"] = i
        if left:
            run.err("producer", f"{left} records still in flight after flush")
        run.producer_done_at = time.monotonic()

    def consume(run: Run):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "auto.commit.interval.ms": 1000,
                      "error_cb": lambda e: run.err("consumer-info", str(e))})
        c.subscribe([topic])
        seen: set[str] = set()
        try:
            while not run.consumer_should_finish(seen):
                m = c.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        run.err("consumer", str(m.error()))
                    continue
                v = m.value().decode()
                seen.add(v)
                run.rec(v, m.partition(), m.offset())
            c.commit(asynchronous=False)
        finally:
            c.close()

    return ThreadRun("confluent-kafka", produce, consume)


# kafka-python ---------------------------------------------------------------------------------

def start_kafka_python(bootstrap: str, topic: str, group: str) -> Run:
    from kafka import KafkaConsumer, KafkaProducer

    servers = bootstrap.split(",")

    def produce(run: Run):
        p = KafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True,
                          linger_ms=5, delivery_timeout_ms=120000, request_timeout_ms=10000)
        i = 0
        try:
            while not run.stop_event.is_set():
                v = f"kp-{i}"
                fut = p.send(topic, value=v.encode(), partition=i % PARTITIONS)
                fut.add_callback(lambda md, v=v: run.ack(v, md.partition, md.offset))
                fut.add_errback(lambda e, v=v: run.err("producer", f"{v}: {e!r}"))
                i += 1
                time.sleep(0.004)
            p.flush(130)
            run.summary["produced"] = i
        finally:
            p.close(timeout=30)
        run.producer_done_at = time.monotonic()

    def consume(run: Run):
        c = KafkaConsumer(topic, bootstrap_servers=servers, group_id=group,
                          auto_offset_reset="earliest", enable_auto_commit=True,
                          auto_commit_interval_ms=1000, request_timeout_ms=15000)
        seen: set[str] = set()
        try:
            while not run.consumer_should_finish(seen):
                try:
                    batches = c.poll(timeout_ms=200)
                except Exception as e:  # noqa: BLE001 - reported, and the loop goes on
                    run.err("consumer", repr(e))
                    time.sleep(0.2)
                    continue
                for tp, msgs in batches.items():
                    for m in msgs:
                        v = m.value.decode()
                        seen.add(v)
                        run.rec(v, m.partition, m.offset)
            c.commit()
        finally:
            c.close()

    return ThreadRun("kafka-python", produce, consume)


# Java and franz-go (programs under tests/cluster/failover) ----------------------------------

def newer(outputs: list[Path], inputs: list[Path]) -> bool:
    if not all(o.exists() for o in outputs):
        return False
    return min(o.stat().st_mtime for o in outputs) >= max(i.stat().st_mtime for i in inputs)


def java_command() -> list[str]:
    if shutil.which("java") is None or shutil.which("javac") is None or shutil.which("mvn") is None:
        pytest.skip("no java/javac/mvn")
    loader = importlib.machinery.SourceFileLoader("sluice_compat", str(ROOT / "scripts" / "compat"))
    spec = importlib.util.spec_from_loader("sluice_compat", loader)
    compat = importlib.util.module_from_spec(spec)
    loader.exec_module(compat)
    cmd = compat.setup_java()  # java -Xmx512m -cp CLASSES:DEPS dev.sluice.compat.Main
    cp = cmd[cmd.index("-cp") + 1]
    src = FAILOVER / "Failover.java"
    classes = FAILOVER / "target" / "classes"
    if not newer([classes / "Failover.class"], [src]):
        classes.mkdir(parents=True, exist_ok=True)
        subprocess.run(["javac", "-nowarn", "-d", str(classes), "-cp", cp, str(src)], check=True,
                       capture_output=True, timeout=300)
    return ["java", "-Xmx512m", "-cp", f"{classes}:{cp}", "Failover"]


def go_command() -> list[str]:
    if shutil.which("go") is None:
        pytest.skip("no go toolchain")
    d = FAILOVER / "go"
    binary = d / "bin" / "failover-go"
    if not newer([binary], [d / "main.go", d / "go.mod", d / "go.sum"]):
        p = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=d, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, f"go build failed:\n{p.stdout}\n{p.stderr}"
    return [str(binary)]


def start_java(bootstrap: str, topic: str, group: str) -> Run:
    return ProcessRun("java", JAVA_CMD + [bootstrap, topic, group, str(PARTITIONS)])


def start_franz(bootstrap: str, topic: str, group: str) -> Run:
    return ProcessRun("franz-go", GO_CMD + [bootstrap, topic, group, str(PARTITIONS)])


JAVA_CMD: list[str] = []
KILLED: list[int] = []  # brokers killed so far in this module
GO_CMD: list[str] = []


# -- the scenario ------------------------------------------------------------------------------

def longest_gap(times: list[float], t_kill: float) -> float:
    """The longest pause between consecutive events from 1 s before the kill on (the time the
    partition was unavailable to the client)."""
    ts = sorted(t for t in times if t >= t_kill - 1.0)
    return max((b - a for a, b in zip(ts, ts[1:])), default=0.0)


def failover(cl, start, name: str) -> None:
    t0 = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    topic, group = f"t-fo-{name}-{tag}", f"g-fo-{name}-{tag}"
    create(cl.bootstrap, topic, PARTITIONS, 3, 2)
    wait_isr(cl.bootstrap, topic, 3, WAIT_S, PARTITIONS)
    run = start(cl.bootstrap, topic, group)
    victim = None
    try:
        def progress(n_acked, n_consumed):
            def ok():
                a, c = run.snapshot()
                if run.done.is_set():
                    raise AssertionError(f"{name} client exited early; errors {run.errors[-5:]}; "
                                         f"{run.diagnostics()}")
                return len(a) >= n_acked and len(c) >= n_consumed
            return ok

        def counts() -> str:
            a, c = run.snapshot()
            return (f"{name}: {len(a)} acked, {len(c)} consumed; last errors {run.errors[-5:]}; "
                    f"{run.diagnostics()}")

        try:
            wait_until(progress(BEFORE_KILL, BEFORE_KILL // 2), WAIT_S,
                       f"{BEFORE_KILL} acknowledged and {BEFORE_KILL // 2} consumed records")
        except ClusterError as e:
            raise AssertionError(f"{e}; {counts()}") from None
        coord = group_coordinator(cl.bootstrap, group)
        try:
            qleader = cl.quorum_leader(timeout=10)
        except ClusterError:
            qleader = None
        d = describe(cl.bootstrap, topic)
        # Prefer a broker this module has not killed yet: a reference Kafka broker killed soon
        # after its restart was seen fenced late on a loaded machine.
        ranked = sorted(d, key=lambda p: (d[p][0] == coord, d[p][0] == qleader,
                                          KILLED.count(d[p][0]), p))
        vp = ranked[0]
        victim = d[vp][0]
        assert victim != coord, f"every partition is led by the group coordinator {coord}: {d}"
        acked, consumed = run.snapshot()
        mark = max((o for _, p, o, _ in acked if p == vp), default=-1)
        print(f"\n[{name}] leaders {({p: d[p][0] for p in d})}, coordinator {coord}, quorum leader "
              f"{qleader}: killing broker {victim} (leader of partition {vp}) after "
              f"{len(acked)} acked / {len(consumed)} consumed")
        t_kill = time.monotonic()
        cl.kill(victim)
        KILLED.append(victim)
        n_kill = len(acked)

        def recovered():
            a, c = run.snapshot()
            if run.done.is_set():
                raise AssertionError(f"{name} client exited early; {run.diagnostics()}")
            a_vp = sum(1 for _, p, o, _ in a if p == vp and o > mark)
            c_vp = sum(1 for _, p, o, _ in c if p == vp and o > mark)
            return len(a) >= n_kill + AFTER_KILL and a_vp >= AFTER_KILL_VICTIM and c_vp >= AFTER_KILL_VICTIM

        try:
            wait_until(recovered, 120, f"{AFTER_KILL} acknowledged writes after the kill, "
                                      f"{AFTER_KILL_VICTIM} of them to partition {vp} and consumed")
        except ClusterError as e:
            a, c = run.snapshot()
            raise AssertionError(
                f"[{name}] no recovery after killing {victim}: {e}\n acked {len(a)} (at kill {n_kill}), "
                f"consumed {len(c)}; partition {vp} acked past {mark}: "
                f"{sum(1 for _, p, o, _ in a if p == vp and o > mark)}, consumed past it: "
                f"{sum(1 for _, p, o, _ in c if p == vp and o > mark)}; metadata now "
                f"{describe(cl.live_bootstrap, topic)}, brokers {cl.brokers()}; last errors {run.errors[-8:]}") from None
        acked, consumed = run.snapshot()
        stall_ack = longest_gap([t for _, p, _, t in acked if p == vp], t_kill)
        stall_rec = longest_gap([t for _, p, _, t in consumed if p == vp], t_kill)
        new_leader = describe(cl.live_bootstrap, topic)[vp][0]
        t_restart = time.monotonic()
        cl.restart(victim)
        wait_isr(cl.bootstrap, topic, 3, WAIT_S, PARTITIONS)
        isr_s = time.monotonic() - t_restart
        victim_back = victim
        victim = None
        n_back = len(run.snapshot()[0])
        try:
            wait_until(progress(n_back + AFTER_RESTART, 0), WAIT_S,
                       f"{AFTER_RESTART} acknowledged writes after the restart")
        except ClusterError as e:
            raise AssertionError(f"{e}; {counts()}") from None
        run.stop()
        assert run.wait(130 + DRAIN_S + 30), f"{name} client did not finish; {run.diagnostics()}"
    finally:
        run.kill()
        if victim is not None and not cl.alive(victim):
            cl.restart(victim)

    acked, consumed = run.snapshot()
    hard = [(s, m) for s, m, _ in run.errors if s in ("producer", "consumer")]
    info = [m for s, m, _ in run.errors if s.endswith("-info")]
    hw, log = read_log(cl.bootstrap, topic)
    at = {(p, o): v for p, o, v in log}
    log_values = [v for _, _, v in log]
    acked_values = {v for v, *_ in acked}
    seen = {v for v, *_ in consumed}
    lost = [v for v, p, o, _ in acked if at.get((p, o)) != v]
    dup_log = len(log_values) - len(set(log_values))
    unseen = sorted(acked_values - seen)
    phantom = [(v, p, o) for v, p, o, _ in consumed if at.get((p, o)) != v]
    dup_consumed = len(consumed) - len(seen)
    comm = committed(cl.bootstrap, topic, group)
    after_kill = sum(1 for *_, t in acked if t > t_kill)
    print(f"[{name}] {len(acked)} acked ({after_kill} after the kill), {len(log)} in the log "
          f"(high watermarks {hw}), {len(consumed)} consumed ({dup_consumed} twice); partition {vp}: "
          f"broker {victim_back} -> {new_leader}, longest pause in its acks "
          f"{stall_ack:.2f}s / in its records consumed {stall_rec:.2f}s around the kill; ISR of 3 {isr_s:.1f}s after the restart; "
          f"{len(hard)} client errors, {len(info)} informational; {time.monotonic() - t0:.1f}s")
    if hard:
        print(f"[{name}] client errors: {hard[:5]}")
    if os.environ.get("FAILOVER_DUMP"):  # a directory: per-client timelines, times from the kill
        dump = Path(os.environ["FAILOVER_DUMP"]) / f"{name}.json"
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.write_text(json.dumps({
            "victim": victim_back, "partition": vp, "mark": mark,
            "acked": [(v, p, o, round(t - t_kill, 3)) for v, p, o, t in acked],
            "consumed": [(v, p, o, round(t - t_kill, 3)) for v, p, o, t in consumed],
            "errors": [(s, m, round(t - t_kill, 3)) for s, m, t in run.errors]}))
    assert new_leader not in (victim_back, -1), f"partition {vp} led by {new_leader} after the kill"
    assert not lost, f"{len(lost)} acknowledged records lost or moved, e.g. {lost[:5]}"
    assert dup_log == 0, f"{dup_log} duplicate records in the log with an idempotent producer"
    assert not [m for s, m in hard if s == "producer"], f"producer errors: {hard[:5]}"
    assert not unseen, f"the consumer missed {len(unseen)} acknowledged records, e.g. {unseen[:5]}"
    assert not phantom, (f"the consumer received {len(phantom)} records that are not in the log "
                         f"there, e.g. {phantom[:5]}")
    assert comm == hw, f"committed offsets {comm} != high watermarks {hw}"
    run.cleanup()  # kept (and named in the failure) when a check fails


def test_confluent_kafka(fc):
    failover(fc, start_confluent, "ck")


def test_kafka_python(fc):
    failover(fc, start_kafka_python, "kp")


def test_java(fc):
    JAVA_CMD[:] = java_command()
    failover(fc, start_java, "java")


def test_franz_go(fc):
    GO_CMD[:] = go_command()
    failover(fc, start_franz, "franz")
