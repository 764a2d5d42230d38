"""One idempotent acks=all producer, run as its own process by the harness (so a librdkafka
crash ends only this process). Writes "PRODUCER:SEQ" values (keys k<SEQ mod 61>) at RATE per
second and reports on stdout, one line each:

    A VALUE PARTITION OFFSET ACK_T SENT_T    delivery acknowledged (times: time.monotonic())
    F VALUE ERROR_NAME FATAL                 delivery failed; the value is sent again
    S SENT                                   produce() calls so far (every second)
    U UNRESOLVED                             at the end: values neither acknowledged nor failed
    D                                        done

On SIGTERM it stops writing new values, re-sends what failed and flushes (up to 60 s).
CLOCK_MONOTONIC is system-wide, so the times compare with the harness's.

    python producer_proc.py BOOTSTRAP TOPIC LABEL RATE LOG_LEVEL
"""

import collections
import signal
import sys
import time

from confluent_kafka import KafkaException, Producer

out = sys.stdout


def emit(line: str) -> None:
    out.write(line + "\n")


def main():
    bootstrap, topic, label, rate, log_level = sys.argv[1:6]
    rate = float(rate)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    resend = collections.deque()
    state = {"need_new": False, "gen": 0, "sent": 0}

    def new_producer():
        state["gen"] += 1
        return Producer({
            "bootstrap.servers": bootstrap,
            "log_level": int(log_level),
            "client.id": f"fault-{label}-{state['gen']}",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "delivery.timeout.ms": 30000,
            "request.timeout.ms": 10000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": 5000,
        })

    def on_delivery(err, msg, sent_t):
        v = msg.value().decode()
        if err is None:
            emit(f"A {v} {msg.partition()} {msg.offset()} {time.monotonic():.6f} {sent_t:.6f}")
            return
        emit(f"F {v} {err.name()} {int(err.fatal())}")
        if err.fatal():
            state["need_new"] = True
        resend.append(v)

    def send(p, v):
        seq = int(v.rpartition(":")[2])
        now = time.monotonic()
        try:
            p.produce(topic, value=v.encode(), key=f"k{seq % 61}".encode(),
                      on_delivery=lambda err, msg: on_delivery(err, msg, now))
        except BufferError:
            p.poll(0.1)
            return False
        except KafkaException as e:
            if e.args and e.args[0].fatal():
                state["need_new"] = True
            return False
        state["sent"] += 1
        return True

    def replace(p):
        try:
            p.purge()
        except Exception:  # noqa: BLE001
            pass
        p.flush(5)
        return new_producer()

    p = new_producer()
    seq = 0
    interval = 1.0 / rate
    nxt = time.monotonic()
    last_report = 0.0
    while not stop:
        if state["need_new"]:
            state["need_new"] = False
            p = replace(p)
        if resend:
            v = resend.popleft()
            if not send(p, v):
                resend.appendleft(v)
        elif send(p, f"{label}:{seq + 1}"):
            seq += 1
        p.poll(0)
        if time.monotonic() - last_report >= 1:
            emit(f"S {state['sent']}")
            out.flush()
            last_report = time.monotonic()
        nxt += interval
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
        else:
            nxt = time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if state["need_new"]:
            state["need_new"] = False
            p = replace(p)
        while resend and send(p, resend[0]):
            resend.popleft()
        left = p.flush(5)
        if left == 0 and not resend:
            break
    emit(f"S {state['sent']}")
    emit(f"U {len(p) + len(resend)}")
    emit("D")
    out.flush()


if __name__ == "__main__":
    main()
