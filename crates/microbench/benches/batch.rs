//! Record batch validation on the produce path: `storage::batch::split` (header parse,
//! length checks and CRC-32C of every batch) and `storage::batch::records` (decoding every
//! record, which the broker does for compacted topics, whose records must have keys).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::records::Compression;
use sluice_storage::batch;

mod common;

fn split(c: &mut Criterion) {
    let one = common::produce_batch();
    // 1 MiB of 16 KiB batches, as in a produce request of a busy producer or a fetch answer.
    let many = common::repeat(&one, (1 << 20) / one.len());
    let mut g = c.benchmark_group("split");
    for (name, buf) in [("one_16k_batch", &one), ("1mib_of_16k_batches", &many)] {
        let count = batch::split(buf).expect("valid").len();
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_with_input(
            BenchmarkId::new(name, format!("{}B_{count}batches", buf.len())),
            buf,
            |b, buf| b.iter(|| batch::split(black_box(buf)).expect("valid")),
        );
    }
    // Many small batches: header parsing and per-batch overhead dominate, not the CRC.
    let small = common::batch(1, 100, false, Compression::None);
    let many_small = common::repeat(&small, (1 << 20) / small.len());
    let count = batch::split(&many_small).expect("valid").len();
    g.throughput(Throughput::Bytes(many_small.len() as u64));
    g.bench_with_input(
        BenchmarkId::new(
            "1mib_of_1_record_batches",
            format!("{}B_{count}batches", many_small.len()),
        ),
        &many_small,
        |b, buf| b.iter(|| batch::split(black_box(buf)).expect("valid")),
    );
    g.finish();
}

fn records(c: &mut Criterion) {
    let mut g = c.benchmark_group("records");
    let cases = [
        (
            "16x1k_keyed",
            common::batch(16, 1024, true, Compression::None),
        ),
        (
            "160x100b_keyed",
            common::batch(160, 100, true, Compression::None),
        ),
        (
            "160x100b_keyed_lz4",
            common::batch(160, 100, true, Compression::Lz4),
        ),
    ];
    for (name, buf) in &cases {
        let n = batch::records(buf).expect("valid").len();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new(*name, format!("{}B", buf.len())),
            buf,
            |b, buf| b.iter(|| batch::records(black_box(buf)).expect("valid")),
        );
    }
    g.finish();
}

criterion_group!(benches, split, records);
criterion_main!(benches);
