//! Offset index lookup: `Log::read` at a random offset of a log with many batches, as a
//! consumer's Fetch does. Covers the segment lookup, the sparse offset index binary search,
//! the header scan from the index position to the batch holding the offset, and the
//! positional read of the batch (page cache, not disk: the log was just written).

use std::sync::Arc;

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use kafka_protocol::records::Compression;
use sluice_storage::{FileBackend, Log, LogConfig};

mod common;

/// Batches in the log.
const BATCHES: usize = 200_000;
/// Batches per `Log::append` while filling it.
const PER_APPEND: usize = 500;

fn index_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LogConfig {
        // Several segments, so the segment lookup is exercised too.
        segment_bytes: 8 << 20,
        ..LogConfig::default()
    };
    let log = Log::open(Arc::new(FileBackend::new()), dir.path(), config).expect("open log");
    // One-record batches of 100-byte values: many batches per index interval (4096 bytes),
    // the worst case for the scan that follows the index lookup.
    let one = common::batch(1, 100, false, Compression::None);
    let chunk = common::repeat(&one, PER_APPEND);
    for _ in 0..BATCHES / PER_APPEND {
        log.append(BytesMut::from(&chunk[..]), 0).expect("append");
    }
    let end = log.log_end_offset();
    assert_eq!(end, BATCHES as i64);

    let mut g = c.benchmark_group("log_read");
    for (name, max_bytes) in [("first_batch", 0usize), ("64k", 64 << 10)] {
        let mut rng = common::Rng::new(0x5eed);
        g.bench_function(
            BenchmarkId::new(
                name,
                format!(
                    "{BATCHES}batches_{}segments_{}B",
                    log.segment_count(),
                    log.size_bytes()
                ),
            ),
            |b| {
                b.iter(|| {
                    let offset = rng.below(end as u64) as i64;
                    let info = log
                        .read(black_box(offset), max_bytes, i64::MAX)
                        .expect("read");
                    assert!(!info.data.is_empty());
                    info
                })
            },
        );
    }
    g.finish();
    log.close().expect("close");
}

criterion_group!(benches, index_lookup);
criterion_main!(benches);
