//! Request decode: `sluice_protocol::decode_request` (the function the connection loop calls
//! on every frame) on Produce and Fetch frames at the highest version the broker supports,
//! encoded by kafka-protocol as a client would send them.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchRequest, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use sluice_protocol::{api, decode_request};
use uuid::Uuid;

mod common;

/// A request frame without its length prefix, as `decode_request` receives it.
fn frame<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, req: &R) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("microbench")))
        .encode(&mut buf, R::header_version(version))
        .expect("encode header");
    req.encode(&mut buf, version).expect("encode body");
    buf.freeze()
}

fn max_version(key: ApiKey) -> i16 {
    api::supported(key).expect("supported API").max
}

/// Topic names before v13, topic ids from v13 (Produce and Fetch alike).
fn topic_ref(version: i16, i: usize) -> (TopicName, Uuid) {
    if version >= 13 {
        (TopicName::default(), Uuid::from_u128(i as u128 + 1))
    } else {
        (
            TopicName(StrBytes::from_string(format!("topic-{i}"))),
            Uuid::nil(),
        )
    }
}

/// `partitions` partitions spread over topics of at most 16 partitions each.
fn layout(partitions: usize) -> Vec<(usize, Vec<i32>)> {
    (0..partitions.div_ceil(16))
        .map(|t| {
            let n = (partitions - t * 16).min(16);
            (t, (0..n as i32).collect())
        })
        .collect()
}

fn produce_frame(version: i16, partitions: usize, records: &Bytes) -> Bytes {
    let topics = layout(partitions)
        .into_iter()
        .map(|(t, parts)| {
            let (name, id) = topic_ref(version, t);
            let mut td = TopicProduceData::default();
            td.name = name;
            td.topic_id = id;
            td.partition_data = parts
                .into_iter()
                .map(|p| {
                    let mut pd = PartitionProduceData::default();
                    pd.index = p;
                    pd.records = Some(records.clone());
                    pd
                })
                .collect();
            td
        })
        .collect();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(topics);
    frame(ApiKey::Produce, version, &req)
}

fn fetch_frame(version: i16, partitions: usize) -> Bytes {
    let topics = layout(partitions)
        .into_iter()
        .map(|(t, parts)| {
            let (name, id) = topic_ref(version, t);
            let mut ft = FetchTopic::default();
            ft.topic = name;
            ft.topic_id = id;
            ft.partitions = parts
                .into_iter()
                .map(|p| {
                    let mut fp = FetchPartition::default();
                    fp.partition = p;
                    fp.current_leader_epoch = 3;
                    fp.fetch_offset = 1_234_567;
                    fp.partition_max_bytes = 1 << 20;
                    fp
                })
                .collect();
            ft
        })
        .collect();
    let mut req = FetchRequest::default();
    req.max_wait_ms = 500;
    req.min_bytes = 1;
    req.max_bytes = 50 << 20;
    req.isolation_level = 1;
    req.topics = topics;
    frame(ApiKey::Fetch, version, &req)
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_request");
    let pv = max_version(ApiKey::Produce);
    let one = Bytes::from(common::produce_batch());
    let mib = Bytes::from(common::repeat(&one, (1 << 20) / one.len()));
    for (name, partitions, records) in [
        ("produce_1x1mib", 1usize, &mib),
        ("produce_16x16k", 16, &one),
        ("produce_256x16k", 256, &one),
    ] {
        let f = produce_frame(pv, partitions, records);
        assert!(decode_request(f.clone()).is_ok());
        g.throughput(Throughput::Elements(partitions as u64));
        g.bench_with_input(
            BenchmarkId::new(name, format!("v{pv}_{}B", f.len())),
            &f,
            |b, f| b.iter(|| decode_request(black_box(f.clone())).expect("decode")),
        );
    }
    let fv = max_version(ApiKey::Fetch);
    for partitions in [1usize, 16, 256] {
        let f = fetch_frame(fv, partitions);
        assert!(decode_request(f.clone()).is_ok());
        g.throughput(Throughput::Elements(partitions as u64));
        g.bench_with_input(
            BenchmarkId::new(
                format!("fetch_{partitions}_partitions"),
                format!("v{fv}_{}B", f.len()),
            ),
            &f,
            |b, f| b.iter(|| decode_request(black_box(f.clone())).expect("decode")),
        );
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
