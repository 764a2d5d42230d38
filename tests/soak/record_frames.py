#!/usr/bin/env python3
"""Records real client request frames for the fuzz seed corpora and the soak test.

Starts a Sluice broker that advertises a proxy port, runs a tiny TCP proxy on that port that
forwards bytes both ways and saves every client->broker request frame, and drives
confluent-kafka (admin, producer with every codec, idempotent producer, consumer) and
kafka-python through it. Frames are deduplicated and capped per (api key, version), then
written (without the 4-byte length prefix) to tests/soak/frames/<api>-v<ver>-<n>.bin.

    .venv/bin/python tests/soak/record_frames.py [--out DIR]
"""

import argparse
import hashlib
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from broker import Broker, free_port  # noqa: E402

PER_KEY = 6          # frames kept per (api key, version)
MAX_FRAME = 16384    # larger frames are skipped to keep the corpus small


class Proxy:
    def __init__(self, port, upstream):
        self.port = port
        self.upstream = upstream
        self.frames = []
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(64)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.create_connection(self.upstream)
            threading.Thread(target=self._up, args=(c, u), daemon=True).start()
            threading.Thread(target=self._down, args=(u, c), daemon=True).start()

    def _up(self, c, u):
        buf = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                u.sendall(d)
                buf += d
                while len(buf) >= 4:
                    n = struct.unpack(">i", buf[:4])[0]
                    if len(buf) < 4 + n:
                        break
                    with self.lock:
                        self.frames.append(buf[4 : 4 + n])
                    buf = buf[4 + n :]
        except OSError:
            pass
        finally:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _down(self, u, c):
        try:
            while True:
                d = u.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stopped = True
        self.srv.close()


def drive_confluent(bootstrap):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic("rec-a", 2, 1), NewTopic("rec-b", 1, 1, config={"cleanup.policy": "delete"})])
    for f in fs.values():
        f.result(15)
    for f in admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "rec-a")]).values():
        f.result(15)
    for f in admin.create_partitions([NewPartitions("rec-b", 2)]).values():
        f.result(15)
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5,
                      "enable.idempotence": codec == "zstd", "acks": "all"})
        for i in range(20):
            p.produce("rec-a", key=f"k{i % 4}".encode(), value=(f"{codec}-value-{i}-" * 3).encode(),
                      headers=[("h", b"v")] if i % 5 == 0 else None)
        p.flush(15)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rec-g", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("rec-a", 0, 0), TopicPartition("rec-a", 1, 0)])
    got = 0
    deadline = time.time() + 10
    while got < 100 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.get_watermark_offsets(TopicPartition("rec-a", 0), timeout=5)
    c.offsets_for_times([TopicPartition("rec-a", 0, 0)], timeout=5)
    c.close()
    for f in admin.delete_topics(["rec-b"]).values():
        f.result(15)


def drive_kafka_python(bootstrap):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
    for i in range(10):
        p.send("rec-a", key=b"kp", value=b"kafka-python-%d" % i)
    p.flush(10)
    p.close()
    c = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000)
    tp = TopicPartition("rec-a", 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    for _ in c:
        pass
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "frames"))
    args = ap.parse_args()
    pport = free_port()
    broker = Broker(advertised_port=pport)
    proxy = Proxy(pport, ("127.0.0.1", broker.port))
    bootstrap = f"127.0.0.1:{pport}"
    try:
        drive_confluent(bootstrap)
        try:
            drive_kafka_python(bootstrap)
        except Exception as e:  # noqa: BLE001 - optional client
            print("kafka-python run failed:", e)
        time.sleep(0.5)
    finally:
        proxy.close()
        broker.stop()
    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):
        if f.endswith(".bin"):
            os.remove(os.path.join(args.out, f))
    seen, count, kept = set(), {}, 0
    for fr in proxy.frames:
        if len(fr) < 8 or len(fr) > MAX_FRAME:
            continue
        key, ver = struct.unpack(">hh", fr[:4])
        body_hash = hashlib.sha1(fr[:4] + fr[8:]).hexdigest()  # ignore correlation id
        if body_hash in seen or count.get((key, ver), 0) >= PER_KEY:
            continue
        seen.add(body_hash)
        n = count.get((key, ver), 0)
        count[(key, ver)] = n + 1
        with open(os.path.join(args.out, f"{key:02d}-v{ver:02d}-{n}.bin"), "wb") as f:
            f.write(fr)
        kept += 1
    print(f"recorded {len(proxy.frames)} frames, kept {kept} in {args.out}")
    for (k, v), n in sorted(count.items()):
        print(f"  api {k} v{v}: {n}")


if __name__ == "__main__":
    main()
