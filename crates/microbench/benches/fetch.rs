//! Fetch assembly: what the Fetch handler does per request once it knows the partitions —
//! `Log::read` of each partition, a `FetchResponse` carrying the stored bytes — and
//! `sluice_protocol::chunked::encode_fetch_response`, which the connection loop calls on the
//! result (and, for comparison, the crate's copying `encode_response`).
//! The handler itself needs a whole `Broker` (metadata, leader lookup, memory leases,
//! long-poll); this is the part of it that runs on every fetch and scales with the data.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::{api, encode_response};
use sluice_storage::{FileBackend, Log, LogConfig};
use uuid::Uuid;

mod common;

/// Partitions per topic in the response.
const PER_TOPIC: usize = 16;

struct Partitions {
    _dir: tempfile::TempDir,
    logs: Vec<Log>,
}

/// `n` partition logs, each holding `bytes` of produce-sized batches.
fn partitions(n: usize, bytes: usize) -> Partitions {
    let dir = tempfile::tempdir().expect("temp dir");
    let one = common::produce_batch();
    let data = common::repeat(&one, bytes.div_ceil(one.len()));
    let logs = (0..n)
        .map(|i| {
            let log = Log::open(
                Arc::new(FileBackend::new()),
                &dir.path().join(format!("t-{i}")),
                LogConfig::default(),
            )
            .expect("open log");
            log.append(BytesMut::from(&data[..]), 0).expect("append");
            log
        })
        .collect();
    Partitions { _dir: dir, logs }
}

/// Reads every partition from offset 0 up to `max_bytes` and builds the response the way
/// the handler fills it (per partition: index, high watermark, LSO, log start, records).
fn assemble(logs: &[Log], version: i16, max_bytes: usize) -> (FetchResponse, usize) {
    let mut total = 0;
    let responses = logs
        .chunks(PER_TOPIC)
        .enumerate()
        .map(|(t, logs)| {
            let partitions = logs
                .iter()
                .enumerate()
                .map(|(p, log)| {
                    let hw = log.log_end_offset();
                    let info = log.read(0, max_bytes, hw).expect("read");
                    total += info.data.len();
                    let mut pd = PartitionData::default();
                    pd.partition_index = p as i32;
                    pd.high_watermark = hw;
                    pd.last_stable_offset = hw;
                    pd.log_start_offset = info.log_start_offset;
                    pd.records = Some(info.data);
                    pd
                })
                .collect();
            let mut t_resp = FetchableTopicResponse::default();
            if version >= 13 {
                t_resp.topic_id = Uuid::from_u128(t as u128 + 1);
            } else {
                t_resp.topic = TopicName(StrBytes::from_string(format!("topic-{t}")));
            }
            t_resp.partitions = partitions;
            t_resp
        })
        .collect();
    let mut resp = FetchResponse::default();
    resp.responses = responses;
    (resp, total)
}

/// What the connection loop does with a Fetch response: chunks that share the records.
fn encode(version: i16, resp: FetchResponse) -> Vec<Bytes> {
    sluice_protocol::chunked::encode_fetch_response(version, 7, &resp).expect("encode")
}

/// The crate's plain encoder, which copies every record byte (kept for comparison).
fn encode_copying(version: i16, resp: FetchResponse) -> Bytes {
    encode_response(ApiKey::Fetch, version, 7, &ResponseKind::Fetch(resp)).expect("encode")
}

fn fetch(c: &mut Criterion) {
    let version = api::supported(ApiKey::Fetch).expect("Fetch").max;
    let mut g = c.benchmark_group("fetch");
    // (partitions, bytes read per partition): one busy partition, a consumer of 16
    // partitions at the default max.partition.fetch.bytes, and 128 partitions with a little
    // data each.
    for (n, max_bytes) in [(1usize, 1usize << 20), (16, 1 << 20), (128, 64 << 10)] {
        let parts = partitions(n, max_bytes);
        let (resp, total) = assemble(&parts.logs, version, max_bytes);
        let bytes = encode_copying(version, resp.clone()).len();
        let param = format!("v{version}_{n}x{}KiB_{bytes}B", max_bytes >> 10);
        g.throughput(Throughput::Bytes(total as u64));
        g.bench_with_input(
            BenchmarkId::new("read_and_encode", &param),
            &parts.logs,
            |b, logs| {
                b.iter(|| {
                    let (resp, _) = assemble(black_box(logs), version, max_bytes);
                    encode(version, resp)
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("read_only", &param),
            &parts.logs,
            |b, logs| b.iter(|| assemble(black_box(logs), version, max_bytes)),
        );
        g.bench_with_input(BenchmarkId::new("encode_only", &param), &resp, |b, resp| {
            b.iter_batched(
                || resp.clone(),
                |resp| encode(version, black_box(resp)),
                criterion::BatchSize::SmallInput,
            )
        });
        g.bench_with_input(
            BenchmarkId::new("encode_copying", &param),
            &resp,
            |b, resp| {
                b.iter_batched(
                    || resp.clone(),
                    |resp| encode_copying(version, black_box(resp)),
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, fetch);
criterion_main!(benches);
