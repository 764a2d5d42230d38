"""SIGTERM while Produce requests are in flight (README/ARCHITECTURE: on SIGTERM connections
finish the request they are in, every log is flushed and closed, and the process exits 0).

Raw connections (tests/clients/rawkafka.py, no client-side retries to blur the outcome) pipeline
Produce requests of 5-record batches without pause, so that at the SIGTERM some requests are
being handled and many are unread. Then, after a restart on the same data dir:
* every batch acknowledged with error 0 is in the log at the offset it was acknowledged at;
* every other request got an error: an error code, or its connection was closed (the reader
  sees EOF; a connection left open after the broker exited, or a hung one, fails);
* a batch answered with an error is not in the log; an unanswered one is wholly there or not at
  all: the log is dense from offset 0 and holds only whole batches that were sent, each once.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "clients"))

import crash_harness  # noqa: E402
from rawkafka import RawConn, produce_v3_partition, record_batch  # noqa: E402

TOPIC = "sigterm"
CONNS = 4
PER_BATCH = 5


@pytest.fixture(autouse=True)
def _need_binary():
    if not crash_harness.sluice_bin().exists():
        pytest.skip(f"broker binary {crash_harness.sluice_bin()} not built (set SLUICE_BIN)")


class Pipeline:
    """One raw connection: a writer thread sends Produce requests until the socket fails, a
    reader thread collects the answers until EOF."""

    def __init__(self, port: int, n: int):
        self.n = n
        self.conn = RawConn(port, client_id=f"sigterm-{n}")
        self.sent: dict[int, list[bytes]] = {}   # correlation id -> values of its batch
        self.answers: dict[int, tuple[int, int]] = {}  # correlation id -> (error, base offset)
        self.eof = False
        self.lock = threading.Lock()
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)

    def start(self):
        self.writer.start()
        self.reader.start()

    def _write(self):
        i = 0
        while True:
            values = [b"c%d-b%d-r%d" % (self.n, i, j) for j in range(PER_BATCH)]
            batch = record_batch(values)
            # Register before sending: the answer may come back before send() returns.
            cid = self.conn.next_cid
            with self.lock:
                self.sent[cid] = values
            try:
                got = self.conn.produce(TOPIC, 0, batch)
            except OSError:
                with self.lock:
                    del self.sent[cid]  # never fully written: the broker cannot have it
                return
            assert got == cid
            i += 1

    def _read(self):
        while True:
            r = self.conn.read(60)
            if r is None:
                self.eof = self.conn.eof
                return
            cid, body = r
            with self.lock:
                self.answers[cid] = produce_v3_partition(body)

    def answered(self) -> int:
        with self.lock:
            return len(self.answers)


def read_log(bootstrap: str) -> list[tuple[int, bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sigterm-verify",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True, "log_level": 2})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
        assert lo == 0, f"log start offset {lo}"
        out: list[tuple[int, bytes]] = []
        if hi == 0:
            return out
        c.assign([TopicPartition(TOPIC, 0, 0)])
        deadline = time.monotonic() + 60
        while len(out) < hi:
            assert time.monotonic() < deadline, f"read {len(out)} of {hi} records"
            for m in c.consume(num_messages=10000, timeout=1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                out.append((m.offset(), m.value()))
        return out
    finally:
        c.close()


def test_sigterm_with_produce_in_flight(tmp_path):
    broker = crash_harness.Broker(tmp_path / "data", crash_harness.free_port(), [], tmp_path)
    broker.start()
    pipes: list[Pipeline] = []
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 2})
        admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(30)
        pipes = [Pipeline(broker.port, n) for n in range(CONNS)]
        for p in pipes:
            p.start()
        # Positive evidence that the pipelines are flowing before the signal.
        deadline = time.monotonic() + 30
        while sum(p.answered() for p in pipes) < 200:
            assert time.monotonic() < deadline, "produce pipelines did not get going"
            time.sleep(0.01)
        proc = broker.proc
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        assert code == 0, f"broker exited {code} on SIGTERM:\n{broker.log()[-3000:]}"
        broker.proc = None
        for p in pipes:
            p.writer.join(30)
            p.reader.join(70)
            assert not p.writer.is_alive() and not p.reader.is_alive(), \
                f"connection {p.n} still open after the broker exited"
            assert p.eof, f"connection {p.n}: no EOF after the broker exited"

        broker.start()  # same data dir
        log = read_log(broker.bootstrap)
    finally:
        broker.stop()
        for p in pipes:
            p.conn.close()

    # The log: dense from 0, only whole batches that were sent, each once.
    batches = {}
    for p in pipes:
        for cid, values in p.sent.items():
            batches[values[0]] = (p, cid, values)
    assert [o for o, _ in log] == list(range(len(log))), "offsets not dense from 0"
    stored_at: dict[bytes, int] = {}
    i = 0
    while i < len(log):
        off, v = log[i]
        assert v in batches, f"offset {off}: {v!r} is not the first record of any batch sent"
        assert v not in stored_at, f"batch {v!r} stored twice (offsets {stored_at[v]} and {off})"
        _, _, values = batches[v]
        got = [x for _, x in log[i:i + len(values)]]
        assert got == values, f"batch at offset {off} half-written: {got} != {values}"
        stored_at[v] = off
        i += len(values)

    acked = failed = unanswered = 0
    for p in pipes:
        for cid, values in p.sent.items():
            ans = p.answers.get(cid)
            where = stored_at.get(values[0])
            if ans is None:
                unanswered += 1  # the client saw its connection close: an error; either outcome
            elif ans[0] == 0:
                acked += 1
                assert where == ans[1], (f"acknowledged batch {values[0]!r} at offset {ans[1]} "
                                         f"is {'missing' if where is None else f'at {where}'}")
            else:
                failed += 1
                assert where is None, f"batch {values[0]!r} refused with error {ans[0]} is in the log"
    print(f"acked {acked}, refused {failed}, unanswered {unanswered}, log {len(log)} records")
    assert acked >= 200
    assert failed + unanswered > 0, "no request was in flight at the SIGTERM: nothing tested"
