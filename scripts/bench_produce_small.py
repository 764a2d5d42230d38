"""Produce N records of SIZE bytes to a fresh 1-partition topic with many small requests
(confluent-kafka, linger.ms=0, acks=1); prints records/s. Used to measure /metrics overhead.

usage: python scripts/bench_produce_small.py BOOTSTRAP N SIZE BATCH   (BATCH = batch.num.messages;
1 = one record per Produce request), e.g. 127.0.0.1:9092 200000 100 1
"""
import sys, time, uuid
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, n, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
topic = f"bench-{uuid.uuid4().hex[:8]}"
admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
    f.result(15)
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": 1,
              "batch.num.messages": batch, "queue.buffering.max.messages": 1000000,
              "compression.type": "none"})
value = b"x" * size
delivered = 0
def cb(err, msg):
    global delivered
    if err is None:
        delivered += 1
t0 = time.perf_counter()
for i in range(n):
    while True:
        try:
            p.produce(topic, value, callback=cb)
            break
        except BufferError:
            p.poll(0.01)
    if i % 1000 == 0:
        p.poll(0)
p.flush(120)
dt = time.perf_counter() - t0
print(f"{delivered} records in {dt:.2f}s = {delivered/dt:,.0f} records/s (batch.num.messages={batch})")
