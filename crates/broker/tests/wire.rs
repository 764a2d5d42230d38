//! Wire-level tests against an in-process broker over real sockets: framing errors close only
//! the offending connection, unsupported versions behave as Kafka's, and the produce/fetch path
//! round-trips bytes. (Third-party client tests live in tests/clients at the repo root.)

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_broker::BrokerSettings;
use tokio::io::AsyncWriteExt;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_and_kip511() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    let resp = c.send(3, &ApiVersionsRequest::default()).await;
    assert_eq!(resp.error_code, 0);
    let produce = resp.api_keys.iter().find(|k| k.api_key == 0).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 13));

    // ApiVersions v99: v0 response header + v0 body with error 35 and the key-18 entry.
    let mut raw = BytesMut::new();
    raw.put_i32(10);
    raw.put_i16(18);
    raw.put_i16(99);
    raw.put_i32(77);
    raw.put_i16(-1);
    c.s.write_all(&raw).await.unwrap();
    let mut f = c.read_frame().await.unwrap();
    assert_eq!(f.get_i32(), 77);
    let body = ApiVersionsResponse::decode(&mut f, 0).unwrap();
    assert_eq!(body.error_code, 35);
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version >= 3));
    // ...and the connection stays usable.
    let again = c.send(0, &ApiVersionsRequest::default()).await;
    assert_eq!(again.error_code, 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_that_connection() {
    let b = TestBroker::start(&[("socket.request.max.bytes", "1048576")]).await;
    let mut healthy = Conn::open(&b.addr).await;
    healthy.send(3, &ApiVersionsRequest::default()).await;

    let cases: Vec<Vec<u8>> = vec![
        (-5i32).to_be_bytes().to_vec(),        // negative length
        0i32.to_be_bytes().to_vec(),           // zero length
        (200i32 << 20).to_be_bytes().to_vec(), // over socket.request.max.bytes
        [&8i32.to_be_bytes()[..], &[0x7f, 0x7f, 0, 0, 0, 0, 0, 1]].concat(), // unknown api key
        [&8i32.to_be_bytes()[..], &[0, 3, 0x7f, 0, 0, 0, 0, 1]].concat(), // Metadata v32512
        [
            &10i32.to_be_bytes()[..],
            &[0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff],
        ]
        .concat(), // garbage body
    ];
    for bytes in cases {
        let mut c = Conn::open(&b.addr).await;
        c.s.write_all(&bytes).await.unwrap();
        assert!(
            c.closed().await,
            "connection should be closed after {bytes:?}"
        );
    }
    // The healthy connection still works.
    let resp = healthy.send(12, &MetadataRequest::default()).await;
    assert_eq!(resp.brokers.len(), 1);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_roundtrip_and_errors() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    assert_eq!(create_topic(&mut c, "orders", 2).await, 0);
    assert_eq!(
        create_topic(&mut c, "orders", 2).await,
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    assert_eq!(
        create_topic(&mut c, "bad/name", 1).await,
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    assert_eq!(
        create_topic(&mut c, "zero", 0).await,
        37,
        "INVALID_PARTITIONS"
    );

    let (err, base) = produce(
        &mut c,
        "orders",
        1,
        batch(&[("k", "a"), ("k", "b")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!((err, base), (0, 0));
    let (err, base) = produce(
        &mut c,
        "orders",
        1,
        batch(&[("k", "c")], Compression::Zstd, -1, 0),
    )
    .await;
    assert_eq!((err, base), (0, 2));
    let (err, hw, data) = fetch(&mut c, "orders", 1, 0, 100).await;
    assert_eq!((err, hw), (0, 3));
    assert_eq!(
        values(data),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
    // A fetch offset inside a batch returns the whole batch.
    let (_, _, data) = fetch(&mut c, "orders", 1, 1, 100).await;
    assert_eq!(values(data)[0].0, 0);
    // Out of range.
    let (err, _, _) = fetch(&mut c, "orders", 1, 99, 100).await;
    assert_eq!(err, 1);
    // Unknown partition.
    let (err, _) = produce(
        &mut c,
        "orders",
        7,
        batch(&[("k", "x")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(err, 3);
    // Corrupt CRC.
    let mut bad = BytesMut::from(&batch(&[("k", "x")], Compression::None, -1, 0)[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let (err, _) = produce(&mut c, "orders", 0, bad.freeze()).await;
    assert_eq!(err, 2, "CORRUPT_MESSAGE");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_too_large_and_idempotence() {
    let b = TestBroker::start(&[("message.max.bytes", "2000")]).await;
    let mut c = Conn::open(&b.addr).await;
    assert_eq!(create_topic(&mut c, "t", 1).await, 0);
    let big = "x".repeat(5000);
    let (err, _) = produce(
        &mut c,
        "t",
        0,
        batch(&[("k", &big)], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(err, 10, "MESSAGE_TOO_LARGE");

    let pid = c
        .send(
            4,
            &InitProducerIdRequest::default()
                .with_transaction_timeout_ms(1000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert_eq!(pid.error_code, 0);
    let id = pid.producer_id.0;
    let b0 = batch(&[("k", "1"), ("k", "2")], Compression::None, id, 0);
    assert_eq!(produce(&mut c, "t", 0, b0.clone()).await, (0, 0));
    // A retry of the same batch is acknowledged with its original offset, not written twice.
    assert_eq!(produce(&mut c, "t", 0, b0).await, (0, 0));
    // A gap in sequence numbers is refused.
    let gap = batch(&[("k", "9")], Compression::None, id, 5);
    assert_eq!(produce(&mut c, "t", 0, gap).await.0, 45);
    let b1 = batch(&[("k", "3")], Compression::None, id, 2);
    assert_eq!(produce(&mut c, "t", 0, b1).await, (0, 2));
    let (_, hw, _) = fetch(&mut c, "t", 0, 0, 0).await;
    assert_eq!(hw, 3);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_long_poll_wakes_on_append() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    assert_eq!(create_topic(&mut c, "lp", 1).await, 0);
    let addr = b.addr.clone();
    let waiter = tokio::spawn(async move {
        let mut c2 = Conn::open(&addr).await;
        let t0 = std::time::Instant::now();
        let (err, _, data) = fetch(&mut c2, "lp", 0, 0, 10_000).await;
        (err, values(data), t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    produce(
        &mut c,
        "lp",
        0,
        batch(&[("k", "woke")], Compression::None, -1, 0),
    )
    .await;
    let (err, vals, elapsed) = waiter.await.unwrap();
    assert_eq!(err, 0);
    assert_eq!(vals, vec![(0, "woke".to_string())]);
    assert!(
        elapsed < Duration::from_secs(9),
        "fetch should return on append, took {elapsed:?}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_topic_ids_and_list_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let b = TestBroker::launch(dir.path(), &addr, &[], None).await;
    let mut c = Conn::open(&addr).await;
    create_topic(&mut c, "keep", 1).await;
    produce(
        &mut c,
        "keep",
        0,
        batch(&[("a", "1"), ("b", "2")], Compression::Gzip, -1, 0),
    )
    .await;
    let md1 = c
        .send(12, &MetadataRequest::default().with_topics(None))
        .await;
    drop(c);
    b.stop().await;

    let b = TestBroker::launch(dir.path(), &addr, &[], None).await;
    let mut c = Conn::open(&addr).await;
    let md2 = c
        .send(12, &MetadataRequest::default().with_topics(None))
        .await;
    assert_eq!(md1.topics[0].topic_id, md2.topics[0].topic_id);
    assert_ne!(md2.topics[0].topic_id, uuid::Uuid::nil());
    let (_, hw, data) = fetch(&mut c, "keep", 0, 0, 0).await;
    assert_eq!(hw, 2);
    assert_eq!(values(data).len(), 2);
    // ListOffsets: earliest, latest, by timestamp (record-level: second record).
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("keep")))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-2),
            ])]);
    let r = c.send(7, &req).await;
    assert_eq!(r.topics[0].partitions[0].offset, 0);
    let mut req2 = req.clone();
    req2.topics[0].partitions[0].timestamp = -1;
    assert_eq!(c.send(7, &req2).await.topics[0].partitions[0].offset, 2);
    let mut req3 = req.clone();
    req3.topics[0].partitions[0].timestamp = 1_700_000_000_001;
    let r3 = c.send(7, &req3).await;
    assert_eq!(r3.topics[0].partitions[0].offset, 1);
    assert_eq!(r3.topics[0].partitions[0].timestamp, 1_700_000_000_001);
    b.stop().await;
}

async fn create_topic_with(
    c: &mut Conn,
    name: &str,
    configs: &[(&str, &str)],
) -> CreateTopicsResponse {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(1)
            .with_replication_factor(-1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )])
        .with_timeout_ms(5000);
    c.send(7, &req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_compression_and_log_append_time() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    let r = create_topic_with(&mut c, "gz", &[("compression.type", "gzip")]).await;
    assert_eq!(r.topics[0].error_code, 0);
    let r = create_topic_with(
        &mut c,
        "lat",
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    assert_eq!(r.topics[0].error_code, 0);
    let r = create_topic_with(&mut c, "bad", &[("no.such.config", "1")]).await;
    assert_eq!(r.topics[0].error_code, 40, "INVALID_CONFIG");
    let r = create_topic_with(&mut c, "bad2", &[("segment.bytes", "10")]).await;
    assert_eq!(r.topics[0].error_code, 40, "INVALID_CONFIG");

    // Uncompressed batch into a gzip topic is stored gzip-compressed, records intact.
    produce(
        &mut c,
        "gz",
        0,
        batch(&[("k", "v1"), ("k", "v2")], Compression::None, -1, 0),
    )
    .await;
    let (_, _, data) = fetch(&mut c, "gz", 0, 0, 0).await;
    let hdr = sluice_storage::batch::BatchHeader::parse(&data).unwrap();
    assert_eq!(hdr.compression(), 1);
    assert_eq!(values(data), vec![(0, "v1".into()), (1, "v2".into())]);

    // LogAppendTime topics stamp the broker's time and say so in the response.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("lat")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&[("k", "v")], Compression::None, -1, 0))),
            ])]);
    let resp = c.send(9, &req).await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    assert!(
        p.log_append_time_ms >= before,
        "{} < {before}",
        p.log_append_time_ms
    );
    let (_, _, data) = fetch(&mut c, "lat", 0, 0, 0).await;
    let mut d = data.clone();
    let set = RecordBatchDecoder::decode(&mut d).unwrap();
    assert_eq!(set.records[0].timestamp_type, TimestampType::LogAppend);
    // Consumers read a LogAppendTime batch's record timestamps from the header's max timestamp.
    let hdr = sluice_storage::batch::BatchHeader::parse(&data).unwrap();
    assert_eq!(hdr.max_timestamp, p.log_append_time_ms);
    sluice_storage::batch::validate(&data).expect("CRC recomputed after stamping");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_ids_in_newest_produce_and_fetch() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    let r = create_topic_with(&mut c, "ids", &[]).await;
    let id = r.topics[0].topic_id;
    assert_ne!(id, uuid::Uuid::nil());
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_topic_id(id)
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&[("k", "by-id")], Compression::Lz4, -1, 0))),
            ])]);
    let resp = c.send(13, &req).await;
    assert_eq!(resp.responses[0].topic_id, id);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    // Unknown id.
    let mut bad = req.clone();
    bad.topic_data[0].topic_id = uuid::Uuid::new_v4();
    let resp = c.send(13, &bad).await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );

    let freq = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c.send(16, &freq).await;
    assert_eq!(resp.responses[0].topic_id, id);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(
        values(p.records.clone().unwrap()),
        vec![(0, "by-id".into())]
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip74_first_batch_larger_than_max_bytes() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    create_topic(&mut c, "big", 1).await;
    let v = "y".repeat(50_000);
    produce(
        &mut c,
        "big",
        0,
        batch(&[("k", &v)], Compression::None, -1, 0),
    )
    .await;
    produce(
        &mut c,
        "big",
        0,
        batch(&[("k", "small")], Compression::None, -1, 0),
    )
    .await;
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1000)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("big")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1000)])]);
    let resp = c.send(12, &req).await;
    let vals = values(resp.responses[0].partitions[0].records.clone().unwrap());
    assert_eq!(vals.len(), 1, "only the first (oversized) batch");
    assert_eq!(vals[0].1.len(), 50_000);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_and_idle_timeout() {
    // The idle timeout is long enough that the two held connections cannot go idle-closed
    // between being served and the third connection's check, even on a starved machine.
    let b = TestBroker::start(&[
        ("max.connections.per.ip", "2"),
        ("connections.max.idle.ms", "3000"),
    ])
    .await;
    // TestBroker::start's readiness probe may still hold a slot for a moment: retry until
    // served instead of sleeping.
    let mut a = Conn::open_answered(&b.addr, "127.0.0.1").await;
    let _c2 = Conn::open_answered(&b.addr, "127.0.0.1").await;
    // A third connection from the same IP is closed without an answer. (Its request is the
    // test: an idle connection would also be closed, by the idle timeout, but only after its
    // request had been answered.)
    let mut third = Conn::open_from(&b.addr, "127.0.0.1").await;
    assert!(
        third
            .try_send(3, &ApiVersionsRequest::default())
            .await
            .is_none(),
        "a third connection from one IP was served despite max.connections.per.ip=2"
    );
    // Another IP is not limited by this IP's count.
    let mut other = Conn::open_from(&b.addr, "127.0.0.2").await;
    assert_eq!(
        other
            .send(3, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
    drop(other);
    // Idle connections are closed after connections.max.idle.ms.
    assert!(
        a.closed_within(Duration::from_secs(15)).await,
        "idle connection not closed"
    );
    // Slots are released, so new connections from that IP are served again.
    let mut d = Conn::open_answered(&b.addr, "127.0.0.1").await;
    assert_eq!(
        d.send(3, &ApiVersionsRequest::default()).await.error_code,
        0
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_max_connections() {
    // One connection per source IP, so max.connections.per.ip plays no part.
    let b = TestBroker::start(&[("max.connections", "2")]).await;
    let a = Conn::open_answered(&b.addr, "127.0.0.2").await;
    let mut c = Conn::open_answered(&b.addr, "127.0.0.3").await;
    let mut third = Conn::open_from(&b.addr, "127.0.0.4").await;
    assert!(
        third
            .try_send(3, &ApiVersionsRequest::default())
            .await
            .is_none(),
        "a third connection was served despite max.connections=2"
    );
    // The held connections still work, and closing one frees its slot.
    assert_eq!(
        c.send(3, &ApiVersionsRequest::default()).await.error_code,
        0
    );
    drop(a);
    let mut d = Conn::open_answered(&b.addr, "127.0.0.5").await;
    assert_eq!(
        d.send(3, &ApiVersionsRequest::default()).await.error_code,
        0
    );
    // ...and the broker is full again.
    let mut e = Conn::open_from(&b.addr, "127.0.0.6").await;
    assert!(
        e.try_send(3, &ApiVersionsRequest::default())
            .await
            .is_none(),
        "a connection over max.connections=2 was served after a slot was reused"
    );
    b.stop().await;
}

/// KIP-320: a Fetch or ListOffsets naming a leader epoch older than the partition's gets
/// FENCED_LEADER_EPOCH (74), a newer one UNKNOWN_LEADER_EPOCH (75); the current one or -1 (no
/// check) is served. (Produce carries no leader epoch in Kafka's protocol.) A restart of a
/// single node re-elects its leaderships, which moves the leader epoch on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_epoch_fencing_in_fetch_and_list_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let b = TestBroker::launch(dir.path(), &addr, &[], None).await;
    let mut c = Conn::open(&addr).await;
    assert_eq!(create_topic(&mut c, "epochs", 1).await, 0);
    let (err, _) = produce(
        &mut c,
        "epochs",
        0,
        batch(&[("k", "v")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(err, 0);
    let epoch_of = |md: &MetadataResponse| md.topics[0].partitions[0].leader_epoch;
    let md = c
        .send(12, &MetadataRequest::default().with_topics(None))
        .await;
    let first = epoch_of(&md);
    drop(c);
    b.stop().await;
    let b = TestBroker::launch(dir.path(), &addr, &[], None).await;
    let mut c = Conn::open(&addr).await;
    // The partition is led again once the restarted node is unfenced.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let epoch = loop {
        let md = c
            .send(12, &MetadataRequest::default().with_topics(None))
            .await;
        let p = &md.topics[0].partitions[0];
        if p.error_code == 0 && p.leader_id.0 >= 0 {
            break p.leader_epoch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader after restart: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        epoch > first,
        "leader epoch did not move on across a restart ({first} -> {epoch})"
    );

    let fetch_at = |leader_epoch: i32| {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("epochs")))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(leader_epoch)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])])
    };
    let list_at = |leader_epoch: i32| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("epochs")))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_current_leader_epoch(leader_epoch)
                        .with_timestamp(-1),
                ])])
    };
    for (leader_epoch, want) in [
        (epoch - 1, 74), // FENCED_LEADER_EPOCH: the client's view is older
        (first, 74),
        (epoch + 1, 75), // UNKNOWN_LEADER_EPOCH: the client is ahead of this broker
        (epoch + 100, 75),
        (epoch, 0),
        (-1, 0), // no epoch: no check
    ] {
        let r = c.send(12, &fetch_at(leader_epoch)).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(
            p.error_code, want,
            "Fetch v12 with current_leader_epoch {leader_epoch} (partition at {epoch})"
        );
        if want == 0 {
            assert_eq!(values(p.records.clone().unwrap_or_default()).len(), 1);
        } else {
            assert!(
                p.records.as_ref().is_none_or(|r| r.is_empty()),
                "a fenced fetch returned records"
            );
        }
        let r = c.send(7, &list_at(leader_epoch)).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            p.error_code, want,
            "ListOffsets v7 with current_leader_epoch {leader_epoch} (partition at {epoch})"
        );
        if want == 0 {
            assert_eq!(p.offset, 1);
        }
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_and_describe_configs() {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let b = TestBroker::start(&[("log.retention.hours", "1")]).await;
    let mut c = Conn::open(&b.addr).await;
    create_topic(&mut c, "cfg", 1).await;
    let alter = |name: &str, op: i8, value: Option<&str>| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("cfg"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_string(name.to_string()))
                    .with_config_operation(op)
                    .with_value(value.map(|v| StrBytes::from_string(v.to_string())))]),
        ])
    };
    let r = c
        .send(1, &alter("max.message.bytes", 0, Some("3000")))
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    let r = c.send(1, &alter("bogus.config", 0, Some("1"))).await;
    assert_eq!(r.responses[0].error_code, 40, "INVALID_CONFIG");
    // The new limit applies at once.
    let (err, _) = produce(
        &mut c,
        "cfg",
        0,
        batch(&[("k", &"z".repeat(4000))], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(err, 10);

    let describe = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("cfg"))
                .with_configuration_keys(None),
        ]);
    let r = c.send(4, &describe).await;
    let find = |n: &str| {
        r.results[0]
            .configs
            .iter()
            .find(|e| e.name.as_str() == n)
            .unwrap_or_else(|| panic!("{n} missing"))
            .clone()
    };
    let mm = find("max.message.bytes");
    assert_eq!(mm.value.as_ref().map(|v| v.as_str()), Some("3000"));
    assert_eq!(mm.config_source, 1, "TOPIC_CONFIG");
    let cp = find("cleanup.policy");
    assert_eq!(cp.value.as_ref().map(|v| v.as_str()), Some("delete"));
    assert_eq!(cp.config_source, 5, "DEFAULT_CONFIG");
    let rm = find("retention.ms");
    assert_eq!(rm.value.as_ref().map(|v| v.as_str()), Some("3600000"));

    // DELETE restores the default.
    let r = c.send(1, &alter("max.message.bytes", 1, None)).await;
    assert_eq!(r.responses[0].error_code, 0);
    let (err, _) = produce(
        &mut c,
        "cfg",
        0,
        batch(&[("k", &"z".repeat(4000))], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(err, 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_and_keyless_records_on_compacted_topics() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    create_topic(&mut c, "ts", 1).await;
    // 2 hours in the future is beyond message.timestamp.after.max.ms (1 hour by default).
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 2 * 3600 * 1000;
    let rec = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: 0,
        timestamp: future,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&rec].into_iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    let (err, _) = produce(&mut c, "ts", 0, buf.freeze()).await;
    assert_eq!(err, 32, "INVALID_TIMESTAMP");

    let r = create_topic_with(&mut c, "compacted", &[("cleanup.policy", "compact")]).await;
    assert_eq!(r.topics[0].error_code, 0);
    let mut keyless = rec.clone();
    keyless.timestamp = 1_700_000_000_000;
    keyless.key = None;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&keyless].into_iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::Snappy,
        },
    )
    .unwrap();
    let (err, _) = produce(&mut c, "compacted", 0, buf.freeze()).await;
    assert_eq!(err, 87, "INVALID_RECORD");
    let (err, _) = produce(
        &mut c,
        "compacted",
        0,
        batch(&[("k", "v")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(err, 0);
    b.stop().await;
}

/// KIP-467: a batch refused because of some of its records lists exactly those records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_lists_the_records_at_fault() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let record = |i: i64, ts: i64, key: Option<&'static [u8]>| Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i,
        sequence: i as i32,
        timestamp: ts,
        key: key.map(Bytes::from_static),
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    };
    let encode = |recs: &[Record], compression: Compression| {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    };
    let send = |topic: &str, records: Bytes| {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ])])
    };
    let r = create_topic_with(&mut c, "cmp", &[("cleanup.policy", "compact")]).await;
    assert_eq!(r.topics[0].error_code, 0);
    let batch = encode(
        &[
            record(0, now, Some(b"a")),
            record(1, now, None),
            record(2, now, Some(b"b")),
            record(3, now, None),
        ],
        Compression::Lz4,
    );
    let resp: ProduceResponse = c.send(9, &send("cmp", batch)).await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 87, "INVALID_RECORD");
    let listed: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(listed, vec![1, 3]);
    let msg = p.record_errors[0]
        .batch_index_error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert_eq!(
        msg,
        "Compacted topic cannot accept message without key in topic partition cmp-0"
    );
    let top = p
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(top.contains("2 record errors"), "{top}");

    create_topic(&mut c, "ts2", 1).await;
    let batch = encode(
        &[
            record(0, now, Some(b"a")),
            record(1, now + 2 * 3600 * 1000, Some(b"b")),
            record(2, now, Some(b"c")),
        ],
        Compression::None,
    );
    let resp: ProduceResponse = c.send(9, &send("ts2", batch)).await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 32, "INVALID_TIMESTAMP");
    let listed: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(listed, vec![1]);
    assert_eq!(
        p.error_message.as_ref().map(|m| m.to_string()).as_deref(),
        Some("One or more records have been rejected due to invalid timestamp")
    );
    // Nothing of either refused batch was appended.
    let (err, base) = produce(&mut c, "ts2", 0, batch_now(&[("k", "v")])).await;
    assert_eq!((err, base), (0, 0));
    b.stop().await;
}

fn batch_now(records: &[(&str, &str)]) -> Bytes {
    batch(records, Compression::None, -1, 0)
}

/// Re-encodes a batch header field in place and fixes the CRC, so only the field is "bad".
fn patch_and_recrc(mut b: BytesMut, at: usize, bytes: &[u8]) -> Bytes {
    b[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_and_arguments_get_kafka_error_codes() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    create_topic(&mut c, "bad", 1).await;
    let good = BytesMut::from(&batch(&[("k", "v")], Compression::None, -1, 0)[..]);

    // Magic byte 1 (old message format): INVALID_RECORD or CORRUPT_MESSAGE, never accepted.
    let mut m = good.clone();
    m[16] = 1;
    let (err, _) = produce(&mut c, "bad", 0, m.freeze()).await;
    assert!(err == 87 || err == 2, "magic 1 gave {err}");
    // Truncated batch.
    let (err, _) = produce(&mut c, "bad", 0, good.clone().freeze().slice(0..40)).await;
    assert!(err == 2 || err == 87, "truncated gave {err}");
    // last_offset_delta inconsistent with the record count.
    let (err, _) = produce(
        &mut c,
        "bad",
        0,
        patch_and_recrc(good.clone(), 23, &5i32.to_be_bytes()),
    )
    .await;
    assert_eq!(err, 87, "INVALID_RECORD for offset delta mismatch");
    // Two batches in one partition's records.
    let two = [&good[..], &good[..]].concat();
    let (err, _) = produce(&mut c, "bad", 0, Bytes::from(two)).await;
    assert_eq!(err, 87, "INVALID_RECORD for two batches");
    // A compressed batch that does not decompress, on a topic where the broker must look inside.
    create_topic_with(&mut c, "cmp", &[("cleanup.policy", "compact")]).await;
    let gz = BytesMut::from(&batch(&[("k", "v")], Compression::Gzip, -1, 0)[..]);
    let n = gz.len();
    let mut broken = gz.clone();
    for i in 61..n {
        broken[i] = 0x5a;
    }
    let crc = crc32c::crc32c(&broken[21..]);
    broken[17..21].copy_from_slice(&crc.to_be_bytes());
    let (err, _) = produce(&mut c, "cmp", 0, broken.freeze()).await;
    assert_eq!(err, 2, "CORRUPT_MESSAGE for undecompressable payload");
    // acks=2 is not a valid acks value.
    let req = ProduceRequest::default()
        .with_acks(2)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bad")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(good.clone().freeze())),
            ])]);
    let resp = c.send(9, &req).await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 21,
        "INVALID_REQUIRED_ACKS"
    );

    // Names and arguments.
    for (name, code) in [
        (".", 17),
        ("..", 17),
        ("x".repeat(250).as_str(), 17),
        ("sp ace", 17),
    ] {
        assert_eq!(
            create_topic(&mut c, name, 1).await,
            code,
            "topic name {name:?}"
        );
    }
    let req = |p: i32, rf: i16| {
        CreateTopicsRequest::default()
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("args")))
                .with_num_partitions(p)
                .with_replication_factor(rf)])
            .with_timeout_ms(1000)
    };
    assert_eq!(
        c.send(7, &req(-2, 1)).await.topics[0].error_code,
        37,
        "INVALID_PARTITIONS"
    );
    assert_eq!(
        c.send(7, &req(1, 0)).await.topics[0].error_code,
        38,
        "INVALID_REPLICATION_FACTOR"
    );
    assert_eq!(
        c.send(7, &req(1, -2)).await.topics[0].error_code,
        38,
        "INVALID_REPLICATION_FACTOR"
    );
    assert_eq!(
        c.send(7, &req(1, 3)).await.topics[0].error_code,
        38,
        "RF above broker count"
    );
    assert_eq!(
        c.send(7, &req(-1, -1)).await.topics[0].error_code,
        0,
        "KIP-464 defaults"
    );
    // Unknown partition on fetch and list offsets.
    let (err, _, _) = fetch(&mut c, "bad", 9, 0, 0).await;
    assert_eq!(err, 3);
    // The broker still serves normal traffic.
    let (err, _) = produce(&mut c, "bad", 0, good.freeze()).await;
    assert_eq!(err, 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_gives_storage_error_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let backend = std::sync::Arc::new(sluice_storage::MemoryBackend::new());
    let b = TestBroker::launch(dir.path(), &addr, &[], Some(backend.clone())).await;
    let mut c = Conn::open(&addr).await;
    assert_eq!(create_topic(&mut c, "full", 1).await, 0);
    assert_eq!(
        produce(
            &mut c,
            "full",
            0,
            batch(&[("k", "1")], Compression::None, -1, 0)
        )
        .await,
        (0, 0)
    );
    backend.enospc_after(Some(0));
    let (err, _) = produce(
        &mut c,
        "full",
        0,
        batch(&[("k", "2")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(err, 56, "KAFKA_STORAGE_ERROR while the disk is full");
    // Other requests keep working.
    let (err, hw, data) = fetch(&mut c, "full", 0, 0, 0).await;
    assert_eq!((err, hw), (0, 1));
    assert_eq!(values(data), vec![(0, "1".to_string())]);
    // Space returns: appends continue densely, nothing partial is visible.
    backend.enospc_after(None);
    let (err, base) = produce(
        &mut c,
        "full",
        0,
        batch(&[("k", "3")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!((err, base), (0, 1));
    let (_, hw, data) = fetch(&mut c, "full", 0, 0, 0).await;
    assert_eq!(hw, 2);
    assert_eq!(
        values(data),
        vec![(0, "1".to_string()), (1, "3".to_string())]
    );
    b.stop().await;
}

async fn list_offset(c: &mut Conn, topic: &str, ts: i64) -> (i16, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts),
            ])]);
    let r = c.send(7, &req).await;
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_and_time_retention() {
    let b = TestBroker::start(&[("log.retention.check.interval.ms", "100")]).await;
    let mut c = Conn::open(&b.addr).await;
    create_topic(&mut c, "dr", 1).await;
    for i in 0..5 {
        let v = format!("v{i}");
        produce(
            &mut c,
            "dr",
            0,
            batch(&[("k", &v)], Compression::None, -1, 0),
        )
        .await;
    }
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("dr")))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(3),
            ])]);
    let r = c.send(2, &req).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(r.topics[0].partitions[0].low_watermark, 3);
    assert_eq!(list_offset(&mut c, "dr", -2).await, (0, 3));
    let (err, _, _) = fetch(&mut c, "dr", 0, 1, 0).await;
    assert_eq!(err, 1, "below the log start: OFFSET_OUT_OF_RANGE");
    let (_, _, data) = fetch(&mut c, "dr", 0, 3, 0).await;
    assert_eq!(values(data)[0], (3, "v3".to_string()));
    let mut beyond = req.clone();
    beyond.topics[0].partitions[0].offset = 99;
    assert_eq!(
        c.send(2, &beyond).await.topics[0].partitions[0].error_code,
        1
    );

    // Time retention: records from 2023 in a topic keeping one day are deleted, even on a
    // quiet topic whose only segment is the active one.
    let r = create_topic_with(
        &mut c,
        "old",
        &[("retention.ms", "86400000"), ("segment.ms", "100")],
    )
    .await;
    assert_eq!(r.topics[0].error_code, 0);
    produce(
        &mut c,
        "old",
        0,
        batch(&[("a", "1"), ("b", "2")], Compression::None, -1, 0),
    )
    .await;
    let mut start = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        start = list_offset(&mut c, "old", -2).await.1;
        if start == 2 {
            break;
        }
    }
    assert_eq!(start, 2, "retention advanced the log start offset");
    assert_eq!(list_offset(&mut c, "old", -1).await.1, 2);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_before_recovery_point_takes_only_that_partition_offline() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let b = TestBroker::launch(dir.path(), &addr, &[], None).await;
    let mut c = Conn::open(&addr).await;
    create_topic(&mut c, "broken", 1).await;
    create_topic(&mut c, "healthy", 1).await;
    for t in ["broken", "healthy"] {
        for i in 0..3 {
            let v = format!("{t}{i}");
            produce(&mut c, t, 0, batch(&[("k", &v)], Compression::None, -1, 0)).await;
        }
    }
    drop(c);
    b.stop().await; // clean shutdown: everything is below the recovery point

    // Flip a byte inside the first batch's records (covered by its CRC).
    let seg = dir.path().join("broken-0").join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[65] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    // Also drop the clean-shutdown snapshot so the segment is scanned on open.
    let _ = std::fs::remove_file(dir.path().join("broken-0").join("clean-shutdown"));

    let b = TestBroker::launch(dir.path(), &addr, &[], None).await;
    let mut c = Conn::open(&addr).await;
    let (err, _) = produce(
        &mut c,
        "broken",
        0,
        batch(&[("k", "x")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(err, 56, "KAFKA_STORAGE_ERROR for the corrupted partition");
    let (err, _, _) = fetch(&mut c, "broken", 0, 0, 0).await;
    assert_eq!(err, 56);
    let md = c
        .send(12, &MetadataRequest::default().with_topics(None))
        .await;
    let broken = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some("broken"))
        .unwrap();
    assert_eq!(broken.partitions[0].error_code, 56);
    // The corrupted file was not cut: it still has all its bytes.
    assert_eq!(std::fs::read(&seg).unwrap().len(), bytes.len());
    // Other partitions keep working.
    let (err, base) = produce(
        &mut c,
        "healthy",
        0,
        batch(&[("k", "more")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!((err, base), (0, 3));
    let (err, hw, _) = fetch(&mut c, "healthy", 0, 0, 0).await;
    assert_eq!((err, hw), (0, 4));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_fetch_answers_at_once_and_transactions_fail_fast() {
    let b = TestBroker::start(&[]).await;
    let mut c = Conn::open(&b.addr).await;
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(5000)
        .with_min_bytes(1)
        .with_session_epoch(-1);
    let t0 = std::time::Instant::now();
    let resp = c.send(12, &req).await;
    assert_eq!(resp.error_code, 0);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );

    let r = c
        .send(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
                .with_transaction_timeout_ms(1000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert_eq!(
        r.error_code, 53,
        "non-retriable: transactions not supported"
    );
    let r = c
        .send(
            3,
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("tx"))
                .with_key_type(1),
        )
        .await;
    assert_eq!(r.error_code, 53);
    b.stop().await;
}

/// A data dir written by the single-node version (its own metadata log under
/// `__cluster_metadata/`, `producer-id-block`, no quorum files) opens without loss: its
/// metadata seeds the quorum, the cluster id stays, and producer ids continue above the old
/// allocator's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_data_dir_upgrades_into_the_quorum() {
    use sluice_controller::{plan_create_topic, BrokerRegistration, Controller, MetadataCommand};
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let (host, port) = addr.rsplit_once(':').unwrap();
    {
        // What the single-node broker wrote: its registration and a topic, committed to the
        // old store, plus meta.properties and the producer id bound.
        let old = Controller::open(dir.path(), "legacy-cluster-id", 1).unwrap();
        old.commit(MetadataCommand::RegisterBroker(BrokerRegistration {
            node_id: 1,
            incarnation_id: uuid::Uuid::nil(),
            host: host.to_string(),
            port: port.parse().unwrap(),
            rack: None,
            inter_broker: None,
        }))
        .unwrap();
        let md = old.metadata();
        let cmd = plan_create_topic(
            &md,
            "legacy",
            2,
            1,
            &BTreeMap::new(),
            &BrokerSettings::default(),
        )
        .unwrap();
        old.commit(cmd).unwrap();
        std::fs::write(
            dir.path().join("meta.properties"),
            "version=1\ncluster.id=legacy-cluster-id\nnode.id=1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("producer-id-block"), "5000").unwrap();
    }
    let b = TestBroker::launch(dir.path(), &addr, &[], None).await;
    let mut c = Conn::open(&addr).await;
    let md = c
        .send(12, &MetadataRequest::default().with_topics(None))
        .await;
    assert_eq!(
        md.cluster_id.as_ref().map(|s| s.to_string()).as_deref(),
        Some("legacy-cluster-id")
    );
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("legacy"))
        .expect("the old topic survives the upgrade");
    assert_eq!(t.partitions.len(), 2);
    assert!(t.partitions.iter().all(|p| p.leader_id.0 == 1));
    let (code, _) = produce(
        &mut c,
        "legacy",
        1,
        batch(&[("k", "v")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(code, 0);
    let (_, hw, _) = fetch(&mut c, "legacy", 1, 0, 0).await;
    assert_eq!(hw, 1);
    let pid = c
        .send(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert_eq!(pid.error_code, 0);
    assert!(
        pid.producer_id.0 >= 5000,
        "producer id {} reuses the old allocator's range",
        pid.producer_id.0
    );
    drop(c);
    b.stop().await;
    // A second start uses the quorum's own state (not the old store) and still has it all.
    let b = TestBroker::launch(dir.path(), &addr, &[], None).await;
    let mut c = Conn::open(&addr).await;
    let md = c
        .send(12, &MetadataRequest::default().with_topics(None))
        .await;
    assert!(md
        .topics
        .iter()
        .any(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("legacy")));
    let (_, hw, _) = fetch(&mut c, "legacy", 1, 0, 0).await;
    assert_eq!(hw, 1);
    drop(c);
    b.stop().await;
}
