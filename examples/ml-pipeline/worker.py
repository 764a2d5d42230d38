#!/usr/bin/env python3
"""A classifier worker: one member of consumer group `classifiers`.

It takes requests from topic `requests` one at a time, runs a CPU-heavy stand-in "model",
produces {"id", "label", "worker"} to topic `results` (keyed by the request id) and only then
commits the request's offset. If the worker dies between producing and committing, the request
is processed again by whoever gets its partition: results are at-least-once, and consumers of
`results` dedupe by request id (the label is deterministic, so duplicates agree).

    python worker.py --bootstrap-server 127.0.0.1:9092 --name w1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

LABELS = ("positive", "negative", "neutral", "question")
GROUP = "classifiers"


def classify(text: str, rounds: int = 60_000) -> str:
    """A deterministic stand-in for a model: `rounds` chained SHA-256 hashes of the text
    (about 50 ms of real CPU work at the default), then a label picked from the digest."""
    digest = text.encode("utf-8")
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return LABELS[digest[0] % len(LABELS)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap-server", default=os.environ.get("BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--name", default=f"worker-{os.getpid()}", help="reported in each result")
    ap.add_argument("--rounds", type=int, default=60_000, help="hash rounds per request (CPU cost)")
    ap.add_argument("--session-timeout-ms", type=int, default=10_000)
    args = ap.parse_args(argv)

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap_server,
            "group.id": GROUP,
            "client.id": args.name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": max(args.session_timeout_ms // 4, 500),
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap_server,
            "client.id": args.name,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,
        }
    )
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer.subscribe(["requests"])
    print(f"{args.name}: ready", flush=True)
    try:
        while not stopping:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"{args.name}: consume error: {msg.error()}", file=sys.stderr, flush=True)
                continue
            try:
                req = json.loads(msg.value())
                rid, text = str(req["id"]), str(req["text"])
            except (ValueError, KeyError, TypeError):
                print(f"{args.name}: skipping malformed request at offset {msg.offset()}",
                      file=sys.stderr, flush=True)
                consumer.commit(message=msg, asynchronous=False)
                continue
            label = classify(text, args.rounds)
            result = {"id": rid, "label": label, "worker": args.name}
            producer.produce("results", key=rid.encode(), value=json.dumps(result).encode())
            # The result must be durable before the request is marked done.
            if producer.flush(30) != 0:
                raise KafkaException("result not acknowledged in 30 s")
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()
        producer.flush(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
