#!/usr/bin/env python3
"""The front service: HTTP in, Kafka in the middle.

POST /classify {"text": "..."} puts a request with a fresh UUID key on topic `requests` and
waits for the matching result on topic `results` (answer 200 {"id", "label", "worker"}), or
answers 504 after --timeout seconds. Results are matched by request id, so a duplicate result
(a worker that died after producing but before committing) is simply ignored.

    python front.py --bootstrap-server 127.0.0.1:9092 --port 8000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


class Pending:
    """Requests waiting for their result, by id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list]] = {}

    def register(self, rid: str) -> tuple[threading.Event, list]:
        slot = (threading.Event(), [])
        with self._lock:
            self._waiting[rid] = slot
        return slot

    def forget(self, rid: str) -> None:
        with self._lock:
            self._waiting.pop(rid, None)

    def deliver(self, rid: str, result: dict) -> bool:
        with self._lock:
            slot = self._waiting.pop(rid, None)
        if slot is None:
            return False  # a duplicate, or a request that already timed out
        slot[1].append(result)
        slot[0].set()
        return True


def results_reader(bootstrap: str, pending: Pending, ready: threading.Event,
                   stop: threading.Event) -> None:
    """Reads every partition of `results` from its current end (no group: every front
    instance sees every result) and hands results to the waiting requests."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"front-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    md = consumer.list_topics("results", timeout=10)
    topic = md.topics.get("results")
    if topic is None or topic.error is not None or not topic.partitions:
        print("front: topic 'results' does not exist", file=sys.stderr, flush=True)
        os._exit(1)
    # Start at the end offsets as they are *now*, before accepting requests, so no result of
    # a request we send can slip by (OFFSET_END would be resolved later, at first fetch).
    start = []
    for p in topic.partitions:
        _lo, hi = consumer.get_watermark_offsets(TopicPartition("results", p), timeout=10)
        start.append(TopicPartition("results", p, hi))
    consumer.assign(start)
    ready.set()
    try:
        while not stop.is_set():
            msg = consumer.poll(0.2)
            if msg is None or (msg.error() and msg.error().code() == KafkaError._PARTITION_EOF):
                continue
            if msg.error():
                print(f"front: consume error: {msg.error()}", file=sys.stderr, flush=True)
                continue
            try:
                result = json.loads(msg.value())
                pending.deliver(str(result["id"]), result)
            except (ValueError, KeyError, TypeError):
                continue
    finally:
        consumer.close()


def make_handler(producer: Producer, pending: Pending, timeout: float):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):  # quiet
            pass

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            if self.path != "/classify":
                return self._reply(404, {"error": "POST /classify"})
            try:
                n = int(self.headers.get("Content-Length", "0"))
                text = json.loads(self.rfile.read(n))["text"]
                if not isinstance(text, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                return self._reply(400, {"error": 'expected JSON {"text": "..."}'})
            rid = str(uuid.uuid4())
            event, box = pending.register(rid)
            producer.produce("requests", key=rid.encode(),
                             value=json.dumps({"id": rid, "text": text}).encode())
            producer.poll(0)
            if not event.wait(timeout):
                pending.forget(rid)
                return self._reply(504, {"id": rid, "error": f"no result within {timeout} s"})
            self._reply(200, box[0])

    return Handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap-server", default=os.environ.get("BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before 504")
    args = ap.parse_args(argv)

    producer = Producer({"bootstrap.servers": args.bootstrap_server, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 1})
    # Serve delivery callbacks/retries in the background.
    stop = threading.Event()
    threading.Thread(target=lambda: [producer.poll(0.1) for _ in iter(stop.is_set, True)],
                     daemon=True).start()
    pending = Pending()
    ready = threading.Event()
    threading.Thread(target=results_reader,
                     args=(args.bootstrap_server, pending, ready, stop), daemon=True).start()
    if not ready.wait(30):
        print("front: could not read topic 'results'", file=sys.stderr)
        return 1
    server = ThreadingHTTPServer((args.host, args.port), make_handler(producer, pending, args.timeout))
    print(f"front: listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        producer.flush(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
