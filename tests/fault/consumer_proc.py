"""One consumer-group member, run as its own process by the harness (a librdkafka crash of a
consumer, seen during coordinator failover, then ends only this process; the harness records
it and starts another). Prints `consumed N` lines; SIGTERM closes the consumer (which commits)
and exits.

    python consumer_proc.py BOOTSTRAP TOPIC GROUP CLIENT_ID LOG_LEVEL
"""

import signal
import sys
import time

from confluent_kafka import Consumer


def main():
    bootstrap, topic, group, client_id, log_level = sys.argv[1:6]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "log_level": int(log_level),
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    })
    c.subscribe([topic])
    consumed = errors = 0
    last = time.monotonic()
    while not stop:
        m = c.poll(0.5)
        if m is not None:
            if m.error():
                errors += 1
            else:
                consumed += 1
        if time.monotonic() - last >= 1:
            print(f"consumed {consumed} {errors}", flush=True)
            last = time.monotonic()
    c.close()
    print(f"consumed {consumed} {errors}", flush=True)
    print("closed", flush=True)


if __name__ == "__main__":
    main()
