#!/usr/bin/env python3
"""SIGKILL crash harness for the Sluice broker.

Each cycle: start a producer (acks=all, enable.idempotence=True) that sends numbered messages
as fast as it can from a background thread and records every acknowledged
(partition, offset, value) from its delivery callbacks; SIGKILL the broker at a random moment
(0.3-1.5 s in); restart it on the same data directory and port; let the producer deliver what
it still holds (its retries must be deduplicated by the restarted broker); then read every
partition from offset 0 and check:

* the broker starts again after the kill;
* every message acknowledged so far (all cycles) is present at its acknowledged offset;
* offsets are dense from 0 to the high watermark (no hole, no partial batch);
* no value appears twice (no duplicate from a retry);
* the producer never hit a fatal (idempotence) error.

Exit status 0 when every cycle passed, 1 with a message naming the violation otherwise.

Usage:
    crash_harness.py [--cycles 20] [--flush-messages-1] [--seed N] [--keep]

The broker binary is $SLUICE_BIN (default target/release/sluice, relative to the
repository root); run with /work/main/.venv/bin/python (confluent-kafka).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPIC = "crash-test"
PARTITIONS = 3
START_TIMEOUT_S = 30.0


class Violation(Exception):
    """A broken guarantee."""


def sluice_bin() -> Path:
    env = os.environ.get("SLUICE_BIN")
    p = Path(env) if env else Path("target/release/sluice")
    return p if p.is_absolute() else REPO_ROOT / p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, data_dir: Path, port: int, sets: list[str], log_dir: Path):
        self.data_dir = data_dir
        self.port = port
        self.sets = sets
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            str(sluice_bin()), "broker",
            "--listen", self.bootstrap,
            "--advertised", self.bootstrap,
            "--data-dir", str(self.data_dir),
            "--http", "off",
            "--node-id", "1",
        ]
        for s in self.sets:
            cmd += ["--set", s]
        return cmd

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"broker-{self.starts}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if "listening on" in self.log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        code = self.proc.poll()
        self.kill()
        why = f"exited with {code}" if code is not None else f"not listening after {START_TIMEOUT_S}s"
        raise Violation(f"broker did not start (start #{self.starts}): {why}\n"
                        f"--- log tail ---\n{self.log()[-4000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(20)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


class ProducerRun:
    """Produces numbered messages from a thread; records acknowledgements."""

    def __init__(self, bootstrap: str, cycle: int):
        self.cycle = cycle
        self.acked: list[tuple[int, int, str]] = []
        self.failed = 0
        self.fatal: str | None = None
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 60000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "error_cb": self._on_error,
            "log_level": 2,
        })
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = str(err)

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            with self._lock:
                self.failed += 1
            return
        with self._lock:
            self.acked.append((msg.partition(), msg.offset(), msg.value().decode()))

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set() and self.fatal is None:
            value = f"c{self.cycle}-{seq}"
            try:
                self.producer.produce(TOPIC, value=value.encode(), key=str(seq).encode(),
                                      on_delivery=self._on_delivery)
                seq += 1
            except BufferError:
                self.producer.poll(0.01)
                continue
            except KafkaException as e:
                self.fatal = str(e)
                break
            if seq % 100 == 0:
                self.producer.poll(0)
        self.sent = seq

    def start(self) -> None:
        self.thread.start()

    def stop_sending(self) -> None:
        self._stop.set()
        self.thread.join(30)

    def drain(self, timeout_s: float) -> int:
        """Waits for every outstanding message to be acknowledged or fail."""
        return self.producer.flush(timeout_s)


def read_partitions(bootstrap: str) -> dict[int, list[tuple[int, str]]]:
    """Every (offset, value) of every partition, from offset 0 to the high watermark."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "crash-harness-verify",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 50 * 1024 * 1024,
        "max.partition.fetch.bytes": 10 * 1024 * 1024,
        "log_level": 2,
    })
    try:
        high = {}
        for p in range(PARTITIONS):
            lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
            if lo != 0:
                raise Violation(f"partition {p}: log start offset is {lo}, expected 0")
            high[p] = hi
        out: dict[int, list[tuple[int, str]]] = {p: [] for p in range(PARTITIONS)}
        todo = {p for p in range(PARTITIONS) if high[p] > 0}
        c.assign([TopicPartition(TOPIC, p, 0) for p in todo])
        deadline = time.monotonic() + 120
        while todo:
            if time.monotonic() > deadline:
                got = {p: len(out[p]) for p in range(PARTITIONS)}
                raise Violation(f"timed out reading back: got {got}, high watermarks {high}")
            for m in c.consume(num_messages=10000, timeout=1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise Violation(f"consume error: {m.error()}")
                p = m.partition()
                if m.offset() < high[p]:
                    out[p].append((m.offset(), m.value().decode()))
                if m.offset() >= high[p] - 1:
                    todo.discard(p)
        return out
    finally:
        c.close()


def verify(bootstrap: str, acked: dict[tuple[int, int], str]) -> tuple[int, int]:
    parts = read_partitions(bootstrap)
    seen_values: dict[str, tuple[int, int]] = {}
    total = 0
    for p, msgs in parts.items():
        for i, (off, value) in enumerate(msgs):
            if off != i:
                raise Violation(f"partition {p}: offset {off} at position {i}: offsets are not "
                                f"dense from 0 (hole or partial batch)")
            if value in seen_values:
                raise Violation(f"duplicate value {value!r} at {p}/{off} and "
                                f"{seen_values[value][0]}/{seen_values[value][1]}")
            seen_values[value] = (p, off)
        total += len(msgs)
    for (p, off), value in acked.items():
        msgs = parts.get(p, [])
        if off >= len(msgs):
            raise Violation(f"acknowledged {value!r} at {p}/{off} is missing "
                            f"(partition holds {len(msgs)} messages)")
        if msgs[off][1] != value:
            raise Violation(f"acknowledged {value!r} at {p}/{off}, found {msgs[off][1]!r}")
    return total, len(acked)


def create_topic(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
    fs = admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
    for f in fs.values():
        f.result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(TOPIC, timeout=10)
        t = md.topics.get(TOPIC)
        if t is not None and t.error is None and len(t.partitions) == PARTITIONS:
            return
        time.sleep(0.1)
    raise Violation("topic did not appear in metadata")


def run(cycles: int, flush_one: bool, seed: int, keep: bool, quiet: bool = False) -> None:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="sluice-crash-"))
    sets = ["log.flush.interval.messages=1"] if flush_one else []
    broker = Broker(tmp / "data", free_port(), sets, tmp)
    mode = "flush.messages=1" if flush_one else "os-flush"
    acked: dict[tuple[int, int], str] = {}
    ok = False
    try:
        broker.start()
        create_topic(broker.bootstrap)
        for cycle in range(1, cycles + 1):
            run_ = ProducerRun(broker.bootstrap, cycle)
            run_.start()
            delay = rng.uniform(0.3, 1.5)
            time.sleep(delay)
            broker.kill()
            run_.stop_sending()
            t0 = time.monotonic()
            broker.start()
            restart_s = time.monotonic() - t0
            left = run_.drain(60)
            if run_.fatal:
                raise Violation(f"cycle {cycle}: producer fatal error: {run_.fatal}")
            if left:
                raise Violation(f"cycle {cycle}: {left} messages still undelivered after 60 s")
            for p, off, value in run_.acked:
                prev = acked.get((p, off))
                if prev is not None and prev != value:
                    raise Violation(f"offset {p}/{off} acknowledged twice: {prev!r} and {value!r}")
                acked[(p, off)] = value
            total, n_acked = verify(broker.bootstrap, acked)
            if not quiet:
                print(f"[{mode}] cycle {cycle}/{cycles}: killed after {delay:.2f}s, "
                      f"sent {run_.sent}, acked {len(run_.acked)} (failed {run_.failed}), "
                      f"restart {restart_s:.2f}s, log holds {total}, all {n_acked} acked "
                      f"present, dense, no duplicates", flush=True)
            del run_
        ok = True
    finally:
        broker.stop()
        if keep or not ok:
            print(f"data kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--flush-messages-1", action="store_true",
                    help="start the broker with --set log.flush.interval.messages=1")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    binary = sluice_bin()
    if not binary.exists():
        print(f"broker binary {binary} not found (set SLUICE_BIN or cargo build -p sluice)",
              file=sys.stderr)
        return 2
    print(f"crash harness: {binary}, {args.cycles} cycles, seed {seed}, "
          f"{'flush.messages=1' if args.flush_messages_1 else 'os flush'}", flush=True)
    try:
        run(args.cycles, args.flush_messages_1, seed, args.keep)
    except Violation as v:
        print(f"VIOLATION: {v}", file=sys.stderr)
        return 1
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
