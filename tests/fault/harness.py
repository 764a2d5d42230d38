"""Fault-injection harness: the acceptance test of replication (tests/fault/README.md).

    python tests/fault/harness.py --target kafka --nodes 3 --faults 10 --seed 42

Starts a cluster (Sluice or reference Kafka), creates an RF=3 / min.insync.replicas=2 topic,
runs idempotent acks=all producers and a consumer group while injecting single-node faults
(SIGKILL of a partition leader / the quorum leader / a follower, SIGSTOP pauses, network
isolation through a TCP proxy), then checks: no acknowledged value lost or moved, no
duplicates (except re-sent values), per-producer order per partition, committed offsets never
moving backwards, and replicas' segment files agreeing below the high watermark.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "cluster"))

from checks import (Ack, CommitMonitor, check_duplicates, check_lost, check_order,  # noqa: E402
                    compare_replicas, find_partition_dir, parse_value, percentile,
                    read_partition_dir)
from cluster import (ClusterError, KafkaCluster, SluiceCluster, _free_ports,  # noqa: E402
                     wait_until)
from proxy import FaultProxy  # noqa: E402

EXIT_OK, EXIT_VIOLATION, EXIT_ERROR, EXIT_UNSUPPORTED = 0, 1, 2, 3
FAULT_KINDS = ("kill-leader", "kill-quorum-leader", "kill-follower", "pause", "partition")

T0 = time.monotonic()
# librdkafka's own log (connection refused while a node is down...): errors and worse only
# with FAULT_CLIENT_LOG=1, else critical only.
CLIENT_LOG_LEVEL = 3 if os.environ.get("FAULT_CLIENT_LOG") == "1" else 2


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


class ReplicationUnsupported(Exception):
    """The target refuses replication factor > 1."""


# -- cluster topology ----------------------------------------------------------------------------

def _free_port_pairs(k: int, taken: set[int]) -> list[int]:
    """k ports P with P+1 free too (Kafka's controller listener is on P+1)."""
    out: list[int] = []
    while len(out) < k:
        (p,) = _free_ports(1, taken)
        try:
            _free_ports_exact(p + 1, taken)
        except OSError:
            continue
        out.append(p)
    return out


def _free_ports_exact(p: int, taken: set[int]) -> None:
    import socket

    if p in taken:
        raise OSError("taken")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", p))
    taken.add(p)


class Topology:
    """Ports, proxies and per-node settings of a cluster, built before it starts."""

    def __init__(self, target: str, n: int, network_faults: bool, broker_configs: dict):
        self.target, self.n, self.network_faults = target, n, network_faults
        self.broker_configs = broker_configs
        self.cluster = None
        self.proxy: FaultProxy | None = None
        taken: set[int] = set()
        ids = list(range(1, n + 1))
        if target == "kafka":
            ports = _free_port_pairs(n, taken)
            self.port = dict(zip(ids, ports))
            self.cport = {i: p + 1 for i, p in self.port.items()}
        else:
            self.port, self.cport, self.hport = {}, {}, {}
            for i in ids:
                self.port[i], self.cport[i], self.hport[i] = _free_ports(3, taken)
        self.voters_for: dict[int, str] = {}
        self.inter: dict[int, int] = {}
        self.inter_proxy: dict[int, int] = {}
        if network_faults:
            self.proxy = FaultProxy(node_pids=self._pids)
            for j in ids:
                self.inter[j], self.inter_proxy[j] = _free_ports(2, taken)
                self.proxy.add_route(self.inter_proxy[j], self.inter[j], dst=j, kind="inter-broker")
            for i in ids:
                parts = []
                for j in ids:
                    if i == j:
                        parts.append(f"{j}@127.0.0.1:{self.cport[j]}")
                    else:
                        (pp,) = _free_ports(1, taken)
                        self.proxy.add_route(pp, self.cport[j], dst=j, src=i, kind="controller")
                        parts.append(f"{j}@127.0.0.1:{pp}")
                self.voters_for[i] = ",".join(parts)

    def _pids(self) -> dict[int, int | None]:
        c = self.cluster
        return {i: c._pid(i) for i in c.ids()} if c is not None else {}

    def start(self):
        n = self.n
        if self.target == "kafka":
            node_configs = {}
            if self.network_faults:
                for i in range(1, n + 1):
                    node_configs[i] = {
                        "listeners": f"PLAINTEXT://127.0.0.1:{self.port[i]},"
                                     f"CONTROLLER://127.0.0.1:{self.cport[i]},"
                                     f"BROKER://127.0.0.1:{self.inter[i]}",
                        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port[i]},"
                                                f"BROKER://127.0.0.1:{self.inter_proxy[i]}",
                        "listener.security.protocol.map":
                            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,BROKER:PLAINTEXT",
                        "inter.broker.listener.name": "BROKER",
                        "controller.quorum.voters": self.voters_for[i],
                    }
            self.cluster = KafkaCluster(n, broker_configs=self.broker_configs,
                                        node_configs=node_configs,
                                        ports=[self.port[i] for i in range(1, n + 1)])
        else:
            node_args = {}
            if self.network_faults:
                for i in range(1, n + 1):
                    node_args[i] = ["--inter-broker-listen", f"127.0.0.1:{self.inter[i]}",
                                    "--inter-broker-advertised", f"127.0.0.1:{self.inter_proxy[i]}"]
            ports = {i: (self.port[i], self.cport[i], self.hport[i]) for i in range(1, n + 1)}
            self.cluster = SluiceCluster(n, broker_configs=self.broker_configs, ports=ports,
                                         node_args=node_args, quorum_for=self.voters_for)
        return self.cluster

    def close(self):
        if self.proxy is not None:
            self.proxy.close()


REAPER = r"""
import os, shutil, signal, sys, time
tmp = sys.argv[1]
sys.stdin.read()  # EOF: the harness is gone (normally or not)
time.sleep(1)
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        continue
    if tmp in cmd:
        for sig in (signal.SIGKILL, signal.SIGCONT):
            try:
                os.kill(int(pid), sig)
            except OSError:
                pass
if not os.environ.get("SLUICE_KEEP_DATA"):
    time.sleep(1)
    shutil.rmtree(tmp, ignore_errors=True)
"""


def start_reaper(tmp: Path):
    """A watchdog process that, once this process is gone (however it ended), SIGKILLs every
    process whose command line names `tmp` (the cluster's unique temp dir) and removes it."""
    import subprocess

    return subprocess.Popen([sys.executable, "-c", REAPER, str(tmp)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


# -- workload ------------------------------------------------------------------------------------

class History:
    """Everything the workers record (thread-safe appends)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acks: list[Ack] = []
        self.resent: set[str] = set()       # values that failed once (re-sent, or left unknown)
        self.failures: collections.Counter = collections.Counter()  # error name -> count
        self.fatal = 0
        self.sent = 0
        self.consumed = 0
        self.consumer_errors: collections.Counter = collections.Counter()


class ProducerWorker(threading.Thread):
    """Keeps one producer (producer_proc.py, a separate process) running until stopped and
    records what it reports. A producer process that dies on its own (e.g. a librdkafka crash)
    is counted and replaced by one with a new producer id (LABEL.GEN), so values stay unique."""

    def __init__(self, label: str, bootstrap: str, topic: str, hist: History, rate: float,
                 stop: threading.Event):
        super().__init__(name=f"producer-{label}", daemon=True)
        self.label, self.bootstrap, self.topic, self.hist = label, bootstrap, topic, hist
        self.rate, self.stop_ev = rate, stop
        self.generations = 0
        self.error: str | None = None
        self.unresolved = 0
        self.crashes: list[int] = []

    def _run_one(self, label: str) -> tuple[int, bool]:
        import subprocess

        proc = subprocess.Popen(
            [sys.executable, str(HERE / "producer_proc.py"), self.bootstrap, self.topic, label,
             str(self.rate), str(CLIENT_LOG_LEVEL)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=_term_when, args=(proc, self.stop_ev), daemon=True).start()
        sent_before = 0
        done = False
        for line in proc.stdout:
            f = line.split()
            if not f:
                continue
            if f[0] == "A":
                a = Ack(f[1], int(f[2]), int(f[3]), float(f[4]), float(f[5]))
                with self.hist.lock:
                    self.hist.acks.append(a)
            elif f[0] == "F":
                with self.hist.lock:
                    self.hist.failures[f[2]] += 1
                    self.hist.resent.add(f[1])
                    self.hist.fatal += int(f[3])
            elif f[0] == "S":
                n = int(f[1])
                with self.hist.lock:
                    self.hist.sent += n - sent_before
                sent_before = n
            elif f[0] == "U":
                self.unresolved += int(f[1])
            elif f[0] == "D":
                done = True
        return proc.wait(), done

    def run(self):
        try:
            while True:
                self.generations += 1
                label = self.label if self.generations == 1 else f"{self.label}.{self.generations}"
                rc, done = self._run_one(label)
                if done and rc == 0:
                    return
                self.crashes.append(rc)
                log(f"producer {label}: process exited with {rc} before finishing; "
                    f"starting another")
                if self.stop_ev.is_set():
                    return
        except Exception:  # noqa: BLE001
            self.error = traceback.format_exc()


def _term_when(proc, ev: threading.Event) -> None:
    """SIGTERM `proc` once `ev` is set (unless it ended before)."""
    import signal as _signal

    while proc.poll() is None:
        if ev.wait(0.5):
            try:
                proc.send_signal(_signal.SIGTERM)
            except OSError:
                pass
            return


class ConsumerWorker(threading.Thread):
    """Keeps one group member (consumer_proc.py, a separate process) running until stopped;
    a member that dies (e.g. a librdkafka crash) is counted and replaced."""

    def __init__(self, k: int, bootstrap: str, topic: str, group: str, hist: History,
                 stop: threading.Event):
        super().__init__(name=f"consumer-{k}", daemon=True)
        self.k, self.bootstrap, self.topic, self.group, self.hist = k, bootstrap, topic, group, hist
        self.stop_ev = stop
        self.error: str | None = None
        self.crashes: list[int] = []  # return codes of members that died on their own
        self.proc = None

    def _run_one(self, gen: int) -> int:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "consumer_proc.py"), self.bootstrap, self.topic,
             self.group, f"fault-consumer-{self.k}-{gen}", str(CLIENT_LOG_LEVEL)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        stopper = threading.Thread(target=self._stop_when_asked, args=(self.proc,), daemon=True)
        stopper.start()
        last = 0
        for line in self.proc.stdout:
            parts = line.split()
            if parts and parts[0] == "consumed":
                n, errs = int(parts[1]), int(parts[2])
                with self.hist.lock:
                    self.hist.consumed += n - last
                last = n
        return self.proc.wait()

    def _stop_when_asked(self, proc):
        import signal as _signal

        while proc.poll() is None:
            if self.stop_ev.wait(0.5):
                proc.send_signal(_signal.SIGTERM)
                try:
                    proc.wait(60)
                except Exception:  # noqa: BLE001
                    proc.kill()
                return

    def run(self):
        try:
            gen = 0
            while not self.stop_ev.is_set():
                gen += 1
                rc = self._run_one(gen)
                if not self.stop_ev.is_set() or rc != 0:
                    self.crashes.append(rc)
                    log(f"consumer {self.k}: member process exited with {rc}; starting another")
        except Exception:  # noqa: BLE001
            self.error = traceback.format_exc()


class CommitWatcher(threading.Thread):
    """Feeds the group's committed offsets, read every `interval` s by offsets_proc.py (its own
    process, replaced if it dies), to a CommitMonitor."""

    def __init__(self, bootstrap: str, group: str, stop: threading.Event, interval: float = 0.5):
        super().__init__(name="commit-watcher", daemon=True)
        self.bootstrap, self.group, self.stop_ev, self.interval = bootstrap, group, stop, interval
        self.monitor = CommitMonitor()
        self.failed_reads = 0
        self.crashes: list[int] = []
        self.error: str | None = None

    def run(self):
        import subprocess

        try:
            while not self.stop_ev.is_set():
                proc = subprocess.Popen(
                    [sys.executable, str(HERE / "offsets_proc.py"), self.bootstrap, self.group,
                     str(self.interval), str(CLIENT_LOG_LEVEL)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                threading.Thread(target=_term_when, args=(proc, self.stop_ev), daemon=True).start()
                for line in proc.stdout:
                    f = line.split()
                    if not f:
                        continue
                    if f[0] == "O":
                        offs = {}
                        for item in f[2:]:
                            topic, p, off = item.rsplit(":", 2)
                            offs[(topic, int(p))] = int(off)
                        self.monitor.observe(float(f[1]) - T0, offs)
                    elif f[0] == "E":
                        self.failed_reads += 1
                rc = proc.wait()
                if not self.stop_ev.is_set() or rc != 0:
                    self.crashes.append(rc)
                    log(f"commit watcher process exited with {rc}; starting another")
        except Exception:  # noqa: BLE001
            self.error = traceback.format_exc()


# -- the run -------------------------------------------------------------------------------------

class Harness:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.topic = f"fault-{args.seed}-{uuid.uuid4().hex[:6]}"
        self.group = f"fault-group-{args.seed}"
        self.hist = History()
        self.faults: list[dict] = []
        self.leader_kills: list[tuple[float, int, list[int]]] = []  # (t kill, node, partitions led)
        self.findings: dict = {}
        self.violations: list[str] = []
        self.topo: Topology | None = None
        self.c = None
        self.admin = None

    # -- cluster state ------------------------------------------------------------------
    def broker_configs(self) -> dict:
        conf = {
            "replica.lag.time.max.ms": str(self.a.replica_lag_ms),
            "offsets.topic.replication.factor": str(min(3, self.a.nodes)),
            "unclean.leader.election.enable": "false",
        }
        for kv in self.a.set or ():
            k, _, v = kv.partition("=")
            conf[k] = v
        return conf

    def metadata(self, timeout=5):
        md = self.admin.list_topics(self.topic, timeout=timeout)
        t = md.topics.get(self.topic)
        if t is None or t.error is not None:
            raise RuntimeError(f"topic metadata: {t.error if t else 'missing'}")
        return md, t

    def leaders(self) -> dict[int, int]:
        _, t = self.metadata()
        return {p: pm.leader for p, pm in t.partitions.items()}

    def healthy(self) -> bool | str:
        """Every node runs, Metadata lists all brokers, every partition has a leader and a full
        ISR, a quorum leader is known."""
        c = self.c
        if len(c.live_ids()) != c.n:
            return False
        md, t = self.metadata()
        if len(md.brokers) != c.n:
            return False
        if len(t.partitions) != self.a.partitions:
            return False
        for pm in t.partitions.values():
            if pm.leader < 0 or len(pm.isrs) != len(pm.replicas) or len(pm.replicas) != self.rf:
                return False
        c.quorum_leader(timeout=5)
        return True

    def wait_healthy(self, timeout: float) -> float:
        t = time.monotonic()
        wait_until(self.healthy, timeout, "a healthy cluster (all nodes up, leaders, full ISRs)",
                   interval=0.5)
        return time.monotonic() - t

    # -- setup ------------------------------------------------------------------------------
    def start(self):
        from confluent_kafka.admin import AdminClient, NewTopic

        a = self.a
        self.rf = min(3, a.nodes)
        log(f"seed {a.seed}: starting {a.target} cluster of {a.nodes} "
            f"(network faults {'on' if a.network_faults else 'off'}), broker configs "
            f"{self.broker_configs()}")
        self.topo = Topology(a.target, a.nodes, a.network_faults, self.broker_configs())
        self.c = self.topo.start()
        self.reaper = start_reaper(self.c._tmp)
        log(f"cluster up in {self.c.start_seconds:.1f}s: {self.c.bootstrap}")
        self.admin = AdminClient({"bootstrap.servers": self.c.bootstrap, "log_level": CLIENT_LOG_LEVEL})
        fut = self.admin.create_topics([NewTopic(self.topic, num_partitions=a.partitions,
                                                 replication_factor=self.rf, config={
                                                     "min.insync.replicas": "2",
                                                     "cleanup.policy": "delete",
                                                     "unclean.leader.election.enable": "false",
                                                 })], request_timeout=30)
        try:
            fut[self.topic].result(60)
        except Exception as e:  # noqa: BLE001
            msg = str(e)
            # Only Sluice's documented refusal of RF > 1 is "unsupported"; anything else (and
            # any refusal by Kafka) is an error.
            if a.target == "sluice" and "INVALID_REPLICATION_FACTOR" in msg:
                raise ReplicationUnsupported(f"{a.target} refused a topic with replication factor "
                                             f"{self.rf}: {msg}") from None
            raise
        self.wait_healthy(60)
        log(f"topic {self.topic}: {a.partitions} partitions, RF {self.rf}, min.insync.replicas 2; "
            f"leaders {self.leaders()}")

    # -- faults -----------------------------------------------------------------------------
    def _partitions_led_by(self, node: int) -> list[int]:
        try:
            return sorted(p for p, l in self.leaders().items() if l == node)
        except Exception:  # noqa: BLE001
            return []

    def inject(self, k: int):
        a, c, rng = self.a, self.c, self.rng
        kinds = [x for x in a.kinds if x != "partition" or a.network_faults]
        kind = rng.choice(kinds)
        hold = rng.uniform(a.hold_min, a.hold_max)
        leaders = self.leaders()
        detail = ""
        if kind == "kill-leader":
            p = rng.choice(sorted(leaders))
            node, detail = leaders[p], f"leader of p{p}"
        elif kind == "kill-quorum-leader":
            node, detail = c.quorum_leader(timeout=30), "quorum leader"
        elif kind == "kill-follower":
            _, t = self.metadata()
            p = rng.choice(sorted(t.partitions))
            followers = [r for r in t.partitions[p].replicas if r != t.partitions[p].leader]
            node, detail = rng.choice(sorted(followers)), f"follower of p{p}"
        else:
            node = rng.choice(c.ids())
        led = self._partitions_led_by(node)
        if led:
            detail += f" (leads p{','.join(map(str, led))})"
        qleader = None
        try:
            qleader = c.quorum_leader(timeout=5)
        except Exception:  # noqa: BLE001
            pass
        if node == qleader and "quorum" not in detail:
            detail += " [quorum leader]"
        rec = {"n": k + 1, "t": time.monotonic() - T0, "kind": kind, "node": node,
               "detail": detail.strip(), "hold_s": hold}
        log(f"fault {k + 1}/{a.faults}: {kind} node {node} {detail} for {hold:.1f}s")
        t_fault = time.monotonic()
        if kind.startswith("kill"):
            c.kill(node)
            # the process is gone now: a value sent from here on can only be acknowledged by
            # a new leader of the partitions this node led
            self.leader_kills.append((time.monotonic(), node, led))
            time.sleep(hold)
            t_end = time.monotonic()
            c.restart(node, wait_brokers=False)
        elif kind == "pause":
            c.pause(node)
            time.sleep(hold)
            t_end = time.monotonic()
            c.resume(node)
        else:
            self.topo.proxy.isolate(node)
            time.sleep(hold)
            t_end = time.monotonic()
            self.topo.proxy.heal()
        try:
            self.wait_healthy(a.recovery_timeout)
            rec["recovery_s"] = time.monotonic() - t_end
        except ClusterError as e:
            rec["recovery_s"] = None
            rec["error"] = str(e)
            self.violations.append(f"fault {k + 1} ({kind} node {node}): cluster did not recover "
                                   f"within {a.recovery_timeout}s: {e}")
            self.faults.append(rec)
            raise
        rec["total_s"] = time.monotonic() - t_fault
        self.faults.append(rec)
        log(f"  recovered {rec['recovery_s']:.1f}s after the fault ended")

    # -- final checks -----------------------------------------------------------------------
    def read_back(self) -> tuple[dict, dict]:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        log_: dict[int, list[tuple[int, str]]] = {}
        hws: dict[int, int] = {}
        cons = Consumer({"bootstrap.servers": self.c.bootstrap, "log_level": CLIENT_LOG_LEVEL, "group.id": f"readback-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            for p in range(self.a.partitions):
                tp = TopicPartition(self.topic, p)
                lo, hi = cons.get_watermark_offsets(tp, timeout=15)
                hws[p] = hi
                recs: list[tuple[int, str]] = []
                if hi > lo:
                    cons.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)])
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline:
                        m = cons.poll(1.0)
                        if m is None:
                            continue
                        if m.error():
                            continue
                        recs.append((m.offset(), m.value().decode()))
                        if m.offset() >= hi - 1:
                            break
                    else:
                        raise RuntimeError(f"p{p}: read {len(recs)} records, not up to {hi}")
                    cons.unassign()
                log_[p] = recs
        finally:
            cons.close()
        return log_, hws

    def replica_check(self, hws: dict[int, int]) -> dict[int, list[str]]:
        _, t = self.metadata()
        out: dict[int, list[str]] = {}
        for p in range(self.a.partitions):
            replicas = sorted(t.partitions[p].replicas)

            def agree():
                batches = {}
                for node in replicas:
                    d = find_partition_dir(self.c.node(node).data_dir, self.topic, p)
                    if d is None:
                        out[p] = [f"node {node}: no partition directory {self.topic}-{p}"]
                        return False
                    batches[node] = read_partition_dir(d)
                out[p] = compare_replicas(batches, hws[p])
                out[p + 10_000] = sum(1 for b in batches[replicas[0]] if b.base_offset < hws[p])
                return not out[p]

            try:
                wait_until(agree, 30, f"replicas of p{p} agreeing", interval=1)
            except ClusterError:
                pass
        return out

    def isr_check(self, timeout: float = 30) -> list[str]:
        """Every partition of every topic (`__consumer_offsets` included, which the health
        wait does not look at) has a leader and a full ISR, within `timeout` s of settling.
        Returns the partitions that do not (empty: all in sync)."""
        bad: list[str] = []

        def in_sync():
            bad[:] = ["no metadata answer"]
            md = self.admin.list_topics(timeout=5)
            bad.clear()
            for name, t in sorted(md.topics.items()):
                if t.error is not None:
                    bad.append(f"{name}: {t.error}")
                    continue
                for p, pm in sorted(t.partitions.items()):
                    if pm.leader < 0 or sorted(pm.isrs) != sorted(pm.replicas):
                        bad.append(f"{name}-{p} leader {pm.leader} replicas {pm.replicas} "
                                   f"isr {pm.isrs}")
            return not bad

        try:
            wait_until(in_sync, timeout, "every partition of every topic in sync", interval=1)
        except ClusterError:
            pass
        return list(bad)

    def check(self, log_: dict, hws: dict) -> None:
        h = self.hist
        f = self.findings
        lost = check_lost(h.acks, log_)
        dups = check_duplicates(log_, h.resent)
        acked = {a.value for a in h.acks}
        order = check_order(log_, acked, h.resent)
        f["acked"] = len(acked)
        f["records_read"] = sum(len(v) for v in log_.values())
        f["high_watermarks"] = hws
        f["lost"] = lost["lost"]
        f["moved"] = lost["moved"]
        f["duplicates"] = dups["duplicates"]
        f["resent"] = len(h.resent)
        f["resent_duplicates"] = len(dups["resent_duplicates"])
        f["order_violations"] = order
        f["commit_regressions"] = self.watcher.monitor.regressions
        f["commit_readings"] = self.watcher.monitor.readings
        f["committed_final"] = {f"{t}-{p}": o for (t, p), o in sorted(self.watcher.monitor.highest.items())}
        if lost["lost"]:
            self.violations.append(f"{len(lost['lost'])} acknowledged values lost, e.g. {lost['lost'][:5]}")
        if lost["moved"]:
            self.violations.append(f"{len(lost['moved'])} acknowledged values not at their acknowledged "
                                   f"offset, e.g. {lost['moved'][:5]}")
        if dups["duplicates"]:
            self.violations.append(f"{len(dups['duplicates'])} duplicated values (not re-sent), e.g. "
                                   f"{list(dups['duplicates'].items())[:5]}")
        if order:
            self.violations.append(f"{len(order)} order violations, e.g. {order[:5]}")
        if self.watcher.monitor.regressions:
            self.violations.append(f"committed offsets moved backwards: {self.watcher.monitor.regressions[:5]}")
        if self.watcher.monitor.readings == 0:
            self.violations.append("the commit monitor got no reading of the group's offsets")
        rep = self.replica_check(hws)
        f["replica_batches"] = {p: rep.get(p + 10_000) for p in range(self.a.partitions)}
        f["replica_divergence"] = {p: rep[p] for p in range(self.a.partitions) if rep.get(p)}
        for p, probs in f["replica_divergence"].items():
            self.violations.append(f"replicas of p{p} disagree: {probs[:3]}")
        f["out_of_sync"] = self.isr_check()
        if f["out_of_sync"]:
            self.violations.append(f"{len(f['out_of_sync'])} partitions without a full ISR 30 s "
                                   f"after settling, e.g. {f['out_of_sync'][:5]}")
        # failover: kill -> first ack on each partition the killed node led
        fo = []
        acks_by_p = collections.defaultdict(list)
        for ack in h.acks:
            acks_by_p[ack.partition].append(ack)
        for t_kill, node, led in self.leader_kills:
            for p in led:
                after = [x.t for x in acks_by_p[p] if x.sent_t >= t_kill]
                fo.append({"node": node, "partition": p,
                           "failover_s": (min(after) - t_kill) if after else None})
        f["failover"] = fo
        times = [x["failover_s"] for x in fo if x["failover_s"] is not None]
        f["failover_p50_s"] = percentile(times, 0.5)
        f["failover_max_s"] = max(times) if times else None
        if h.consumed == 0:
            self.violations.append("the consumer group consumed nothing")
        if len(acked) == 0:
            self.violations.append("no value was acknowledged")

    # -- main -------------------------------------------------------------------------------
    def run(self) -> int:
        a = self.a
        stop = threading.Event()
        self.start()
        bs = self.c.bootstrap
        self.producers = [ProducerWorker(f"p{k + 1}", bs, self.topic, self.hist, a.rate, stop)
                          for k in range(a.producers)]
        self.consumers = [ConsumerWorker(k + 1, bs, self.topic, self.group, self.hist, stop)
                          for k in range(a.consumers)]
        cstop = threading.Event()
        self.watcher = CommitWatcher(bs, self.group, cstop)
        for w in (*self.producers, *self.consumers, self.watcher):
            w.start()
        t_run = time.monotonic()
        time.sleep(a.warmup)
        log(f"warm-up done: {len(self.hist.acks)} acknowledged, {self.hist.consumed} consumed")
        try:
            for k in range(a.faults):
                self.inject(k)
                time.sleep(self.rng.uniform(a.gap_min, a.gap_max))
        except ClusterError as e:
            log(f"stopping faults: {e}")
        finally:
            self.settle()
        time.sleep(a.tail)
        log("stopping producers")
        stop.set()
        for w in self.producers:
            w.join(120)
        log("stopping consumers")
        for w in self.consumers:
            w.join(60)
        time.sleep(2)
        cstop.set()
        self.watcher.join(30)
        for w in (*self.producers, *self.consumers, self.watcher):
            if w.error:
                self.violations.append(f"worker {w.name} crashed: {w.error.strip().splitlines()[-1]}")
                log(f"{w.name} crashed:\n{w.error}")
        self.settle()
        log_, hws = self.read_back()
        self.check(log_, hws)
        self.findings["duration_s"] = time.monotonic() - t_run
        self.findings["proxy"] = self.topo.proxy.stats() if self.topo.proxy else None
        self.findings["producer_generations"] = {w.label: w.generations for w in self.producers}
        self.findings["unresolved_at_end"] = sum(w.unresolved for w in self.producers)
        self.findings["consumer_crashes"] = [rc for w in self.consumers for rc in w.crashes]
        self.findings["producer_crashes"] = [rc for w in self.producers for rc in w.crashes]
        self.findings["watcher_crashes"] = self.watcher.crashes
        self.report()
        return EXIT_VIOLATION if self.violations else EXIT_OK

    def settle(self):
        """End every fault: heal the network, resume paused nodes, restart dead ones, wait."""
        c = self.c
        if self.topo.proxy is not None:
            self.topo.proxy.heal()
        for i in c.ids():
            if c.node(i).paused:
                c.resume(i)
        for i in c.ids():
            if not c.alive(i):
                log(f"settle: restarting node {i}")
                c.restart(i, wait_brokers=False)
        t = self.wait_healthy(self.a.recovery_timeout)
        log(f"settled ({t:.1f}s)")

    def report(self):
        a, f, h = self.a, self.findings, self.hist
        out = sys.stdout
        print(f"\n=== fault harness: target {a.target}, {a.nodes} nodes, seed {a.seed}, "
              f"{len(self.faults)} faults, network faults {'on' if a.network_faults else 'off'} ===",
              file=out)
        print(f"{'#':>3} {'t(s)':>7} {'kind':<19} {'node':>4} {'hold':>5} {'recov':>6} {'total':>6}  detail",
              file=out)
        for r in self.faults:
            rs = f"{r['recovery_s']:.1f}" if r.get("recovery_s") is not None else "NONE"
            ts = f"{r['total_s']:.1f}" if r.get("total_s") is not None else "-"
            print(f"{r['n']:>3} {r['t']:>7.1f} {r['kind']:<19} {r['node']:>4} {r['hold_s']:>5.1f} "
                  f"{rs:>6} {ts:>6}  {r['detail']}", file=out)
        rec = [r["recovery_s"] for r in self.faults if r.get("recovery_s") is not None]
        print(f"recovery after fault end: p50 {_fmt(percentile(rec, 0.5))}s max {_fmt(max(rec) if rec else None)}s",
              file=out)
        print(f"failover (leader kill -> first acks=all ack on its partitions): n={len(f['failover'])} "
              f"p50 {_fmt(f['failover_p50_s'])}s max {_fmt(f['failover_max_s'])}s", file=out)
        print(f"produced: {h.sent} sends, {f['acked']} values acknowledged, {f['resent']} failed once "
              f"and re-sent ({dict(h.failures)}), fatal {h.fatal}, unresolved at end "
              f"{f['unresolved_at_end']}; consumed (group) {h.consumed}", file=out)
        print(f"read back: {f['records_read']} records, high watermarks {f['high_watermarks']}", file=out)
        print(f"lost: {len(f['lost'])}  moved: {len(f['moved'])}  duplicates: {len(f['duplicates'])} "
              f"(re-sent values written twice: {f['resent_duplicates']})  order violations: "
              f"{len(f['order_violations'])}", file=out)
        print(f"committed offsets: {f['commit_readings']} readings, {len(f['commit_regressions'])} "
              f"backward moves; final {f['committed_final']}", file=out)
        print(f"replicas: batches below HW per partition {f['replica_batches']}; divergent: "
              f"{f['replica_divergence'] or 'none'}; partitions of all topics without a full "
              f"ISR: {len(f.get('out_of_sync') or [])}", file=out)
        if f["producer_crashes"]:
            print(f"note: producer processes died (client-side, replaced by new producer ids): "
                  f"return codes {f['producer_crashes']}", file=out)
        if f["watcher_crashes"]:
            print(f"note: committed-offset reader processes died (client-side, replaced): "
                  f"return codes {f['watcher_crashes']}", file=out)
        if f["consumer_crashes"]:
            print(f"note: consumer member processes died (client-side, replaced): return codes "
                  f"{f['consumer_crashes']}", file=out)
        if f.get("proxy"):
            print(f"proxy: {f['proxy']}", file=out)
        print(f"duration {f['duration_s']:.0f}s", file=out)
        if self.violations:
            print("\nVIOLATIONS:", file=out)
            for v in self.violations:
                print(f"  - {v}", file=out)
        else:
            print("\nOK: no violation", file=out)
        out.flush()
        if a.report:
            Path(a.report).write_text(json.dumps({
                "target": a.target, "nodes": a.nodes, "seed": a.seed, "faults": self.faults,
                "findings": f, "violations": self.violations}, indent=1, default=str))

    def close(self):
        if self.c is not None:
            if self.violations and os.environ.get("FAULT_DUMP_LOGS", "1") == "1":
                print(self.c.dump_logs(30), file=sys.stderr)
            self.c.close()
        if self.topo is not None:
            self.topo.close()


def _fmt(x):
    return "-" if x is None else f"{x:.2f}"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="fault-harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=("sluice", "kafka"),
                    default=os.environ.get("CLUSTER_TARGET", "sluice"))
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    ap.add_argument("--faults", type=int, default=3)
    ap.add_argument("--kinds", default=",".join(FAULT_KINDS),
                    help=f"comma-separated subset of {','.join(FAULT_KINDS)}")
    ap.add_argument("--network-faults", action=argparse.BooleanOptionalAction, default=None,
                    help="route inter-node traffic through the fault proxy (default: on for kafka, "
                         "off for sluice until it has --inter-broker-listen)")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--rate", type=float, default=100.0, help="values per second per producer")
    ap.add_argument("--replica-lag-ms", type=int, default=4000)
    ap.add_argument("--set", action="append", metavar="K=V", help="extra broker setting (both targets)")
    ap.add_argument("--hold-min", type=float, default=3.0)
    ap.add_argument("--hold-max", type=float, default=8.0)
    ap.add_argument("--gap-min", type=float, default=2.0)
    ap.add_argument("--gap-max", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--tail", type=float, default=5.0, help="seconds of producing after the last fault")
    ap.add_argument("--recovery-timeout", type=float, default=120.0)
    ap.add_argument("--report", help="write a JSON report here")
    a = ap.parse_args(argv)
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 1_000_000)
    if a.network_faults is None:
        a.network_faults = a.target == "kafka"
    a.kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    bad = [k for k in a.kinds if k not in FAULT_KINDS]
    if bad:
        ap.error(f"unknown fault kinds {bad}")
    if a.nodes < 3:
        ap.error("--nodes must be at least 3 (RF=3)")
    return a


def main(argv=None) -> int:
    import faulthandler

    faulthandler.enable()
    a = parse_args(argv)
    print(f"fault-harness: seed {a.seed} (rerun with --seed {a.seed})", file=sys.stderr, flush=True)
    h = Harness(a)
    try:
        return h.run()
    except ReplicationUnsupported as e:
        print(f"UNSUPPORTED: {e}", flush=True)
        return EXIT_UNSUPPORTED
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        h.violations.append("harness error")
        return EXIT_ERROR
    finally:
        h.close()


if __name__ == "__main__":
    sys.exit(main())
