"""The idempotent producer's retry, really caused: a frame-aware proxy (frame_proxy.py) lets the
broker append a Produce and then cuts the connection before the client reads the answer. The
client must send the same batch again (same producer id, epoch and sequence: the proxy sees it
twice), and the broker must recognise it as a duplicate: every record is in the log once.
Runs against Sluice and, with KAFKA_BOOTSTRAP, Apache Kafka."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition

from frame_proxy import PRODUCE, FrameProxy, produce_batches
from helpers import confluent_consume, create_topic, kp_consume


def _produce_through_drop(proxy, topic, make_producer, send, flush):
    """Sends batch A (dropped answer, must be retried) then batch B; returns A's batch ids."""
    proxy.drop_response_once(lambda r: r.api_key == PRODUCE and produce_batches(r))
    p = make_producer()
    send(p, [f"a{i}".encode() for i in range(5)])
    flush(p)
    send(p, [f"b{i}".encode() for i in range(5)])
    flush(p)
    return p


def _check_retry_and_log(broker, proxy, topic, consume):
    produces = proxy.matching(lambda r: r.api_key == PRODUCE and produce_batches(r))
    dropped = [r for r in produces if r.dropped]
    assert len(dropped) == 1, f"the proxy did not drop a produce answer: {produces}"
    first = produce_batches(dropped[0])
    assert first[0].producer_id >= 0, f"not an idempotent batch: {first}"
    again = [r for r in produces if not r.dropped and produce_batches(r)[:len(first)] == first]
    # The retry: the very batch whose answer was lost (same producer id, epoch, sequence and
    # count), sent again on a new connection.
    assert again, (f"no retry of {first} seen; produces: "
                   f"{[(r.conn, produce_batches(r)) for r in produces]}")
    assert again[0].conn != dropped[0].conn
    values = [r.value for r in consume()]
    want = [f"a{i}".encode() for i in range(5)] + [f"b{i}".encode() for i in range(5)]
    assert values == want, f"log holds {values}, expected each record once: {want}"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    finally:
        c.close()
    assert (low, high) == (0, 10), f"log spans offsets {low}..{high}: a duplicate was appended"


def test_confluent_idempotent_retry_after_lost_answer_no_duplicate(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    proxy = FrameProxy(broker.port)
    try:
        errors = []

        def make():
            return Producer({"bootstrap.servers": proxy.bootstrap, "enable.idempotence": True,
                             "acks": "all", "linger.ms": 50, "retry.backoff.ms": 100,
                             "reconnect.backoff.ms": 100, "message.timeout.ms": 60000})

        def send(p, values):
            for v in values:
                p.produce(topic, value=v, partition=0,
                          on_delivery=lambda err, m: err and errors.append(err))

        def flush(p):
            assert p.flush(60) == 0, "undelivered records"

        _produce_through_drop(proxy, topic, make, send, flush)
        assert errors == [], errors
        _check_retry_and_log(broker, proxy, topic,
                             lambda: confluent_consume(broker.bootstrap, topic, 1, 10))
    finally:
        proxy.close()


def test_kafka_python_idempotent_retry_after_lost_answer_no_duplicate(broker, topic):
    from kafka import KafkaProducer

    create_topic(broker.bootstrap, topic, 1)
    proxy = FrameProxy(broker.port)
    try:
        def make():
            return KafkaProducer(bootstrap_servers=proxy.bootstrap, enable_idempotence=True,
                                 acks="all", linger_ms=50, retries=10, retry_backoff_ms=100,
                                 reconnect_backoff_ms=100, request_timeout_ms=30000,
                                 max_in_flight_requests_per_connection=1)

        futures = []

        def send(p, values):
            futures.extend(p.send(topic, value=v, partition=0) for v in values)

        def flush(p):
            p.flush(60)
            for f in futures:
                f.get(1)

        p = _produce_through_drop(proxy, topic, make, send, flush)
        p.close(5)
        _check_retry_and_log(broker, proxy, topic,
                             lambda: kp_consume(broker.bootstrap, topic, 1, 10))
    finally:
        proxy.close()
