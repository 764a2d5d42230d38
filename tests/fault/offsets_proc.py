"""Reads a consumer group's committed offsets (AdminClient list_consumer_group_offsets) every
INTERVAL seconds, as its own process (librdkafka 2.16 can crash an AdminClient's process with
SIGSEGV in rd_kafka_cgrp_op when OffsetFetch meets a coordinator error). Prints one line per
reading on stdout:

    O T TOPIC:PARTITION:OFFSET ...     a reading (T: time.monotonic())
    E ERROR                            no reading this time

    python offsets_proc.py BOOTSTRAP GROUP INTERVAL LOG_LEVEL     (SIGTERM ends it)
"""

import signal
import sys
import time

from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient


def main():
    bootstrap, group, interval, log_level = sys.argv[1:5]
    interval = float(interval)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": int(log_level)})
    while not stop:
        t0 = time.monotonic()
        try:
            futs = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                     request_timeout=5)
            res = futs[group].result(timeout=10)
            parts = [f"{tp.topic}:{tp.partition}:{tp.offset}" for tp in res.topic_partitions
                     if not tp.error]
            print(f"O {time.monotonic():.6f} {' '.join(parts)}", flush=True)
        except Exception as e:  # noqa: BLE001 - coordinator moving, node down: no reading
            print(f"E {type(e).__name__}", flush=True)
        d = interval - (time.monotonic() - t0)
        if d > 0 and not stop:
            time.sleep(d)


if __name__ == "__main__":
    main()
