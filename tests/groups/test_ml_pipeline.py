"""The worker-queue example (examples/ml-pipeline) under failure: 3 workers in group
`classifiers`, 200 requests through the front service, one worker SIGKILLed mid-way. The group
rebalances, every request gets its result (at-least-once), and after deduplication by request id
there is exactly one (correct) result per request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from helpers import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ml-pipeline"
sys.path.insert(0, str(EXAMPLE))
import worker as worker_mod  # noqa: E402

REQUESTS = 200
ROUNDS = 20_000  # lighter "model" than the example's default, to keep the test short
SESSION_MS = 6000


def w1_committed(broker) -> bool:
    """Whether worker w1 owns a partition of `requests` with a committed offset."""
    p = broker.cli("groups", "describe", worker_mod.GROUP, "--output", "json",
                   "--http-server", "off", check=False)
    if p.returncode != 0:
        return False
    try:
        rows = json.loads(p.stdout)["partitions"]
    except (ValueError, KeyError, TypeError):
        return False
    return any(r.get("client_id") == "w1" and (r.get("current_offset") or 0) > 0 for r in rows)


def spawn(script: str, *args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(EXAMPLE / script), *args],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=EXAMPLE)


def wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"{proc.args} exited:\n{log.read_text(errors='replace')}"
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in {log} after {timeout}s")


def classify_over_http(port: int, text: str) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/classify",
                                 data=json.dumps({"text": text}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def read_all_results(bootstrap: str, partitions: int) -> list[dict]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker",
                  "enable.auto.commit": False})
    ends = {p: c.get_watermark_offsets(TopicPartition("results", p), timeout=10)[1]
            for p in range(partitions)}
    c.assign([TopicPartition("results", p, 0) for p in range(partitions)])
    out, pos = [], {p: 0 for p in range(partitions)}
    deadline = time.monotonic() + 30
    while any(pos[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        pos[m.partition()] = m.offset() + 1
        out.append(json.loads(m.value()))
    c.close()
    assert all(pos[p] >= ends[p] for p in ends), f"could not read all results: {pos} vs {ends}"
    return out


def test_workers_survive_a_sigkill(broker, tmp_path):
    broker.cli("topics", "create", "requests", "--partitions", "6")
    broker.cli("topics", "create", "results", "--partitions", "3")
    procs: list[subprocess.Popen] = []
    try:
        workers = {}
        for i in range(3):
            name = f"w{i}"
            log = tmp_path / f"{name}.log"
            p = spawn("worker.py", "--bootstrap-server", broker.bootstrap, "--name", name,
                      "--rounds", str(ROUNDS), "--session-timeout-ms", str(SESSION_MS), log=log)
            procs.append(p)
            workers[name] = (p, log)
        port = free_port()
        front_log = tmp_path / "front.log"
        front = spawn("front.py", "--bootstrap-server", broker.bootstrap, "--port", str(port),
                      "--timeout", "45", log=front_log)
        procs.append(front)
        wait_for_line(front_log, "listening on", front, 30)
        for name, (p, log) in workers.items():
            wait_for_line(log, "ready", p, 30)

        texts = [f"request number {i}: is sluice a river or a broker?" for i in range(REQUESTS)]
        answers: dict[int, tuple[int, dict]] = {}
        done = threading.Semaphore(0)

        def one(i: int) -> None:
            try:
                answers[i] = classify_over_http(port, texts[i])
            finally:
                done.release()

        with ThreadPoolExecutor(max_workers=16) as pool:
            for i in range(REQUESTS):
                pool.submit(one, i)
            # SIGKILL one worker once a third of the answers are in: requests it took but did
            # not commit are redelivered to the others after the rebalance.
            for _ in range(REQUESTS // 3):
                assert done.acquire(timeout=60), "requests stopped being answered"
            # The kill must hit a working member: wait (bounded) until w1 has committed a
            # request of its own (on a loaded machine its first assignment can come late).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not w1_committed(broker):
                time.sleep(0.2)
            victim, _ = workers["w1"]
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        # (the pool's exit waited for every request)

        assert len(answers) == REQUESTS
        bad = {i: a for i, a in answers.items() if a[0] != 200}
        assert not bad, f"{len(bad)} requests failed, e.g. {list(bad.items())[:3]}"
        for i, (_, body) in answers.items():
            assert body["label"] == worker_mod.classify(texts[i], ROUNDS)
        ids = {body["id"] for _, body in answers.values()}
        assert len(ids) == REQUESTS

        # The stored results: at least one per request (duplicates allowed), all agreeing.
        results = read_all_results(broker.bootstrap, 3)
        by_id: dict[str, set] = {}
        for r in results:
            by_id.setdefault(r["id"], set()).add(r["label"])
        assert ids <= set(by_id), f"{len(ids - set(by_id))} requests have no stored result"
        assert all(len(labels) == 1 for labels in by_id.values()), "conflicting duplicate results"
        deduped = {rid: next(iter(labels)) for rid, labels in by_id.items() if rid in ids}
        assert len(deduped) == REQUESTS
        # Every worker took part, the killed one included (so the kill hit a group member).
        assert {r["worker"] for r in results} == {"w0", "w1", "w2"}

        # The surviving workers committed everything they processed: no lag left once idle.
        deadline = time.monotonic() + 30
        while True:
            d = json.loads(broker.cli("groups", "describe", "classifiers", "--output", "json",
                                      "--http-server", broker.http).stdout)
            if d["total_lag"] == 0 and d["members"] == 2:
                break
            assert time.monotonic() < deadline, f"group did not settle: {d}"
            time.sleep(0.5)
        assert d["status"] == "OK"
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
