//! Property tests: random appends, reads, flushes, truncations, reopens and crashes on the
//! in-memory backend, checked against a simple model (the list of stored batches).

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::records::Compression;
use proptest::prelude::*;

use crate::batch::test_util::{encoded, hand_batch, Rec};
use crate::batch::{self, BatchHeader};
use crate::{Log, LogConfig, MemoryBackend};

#[derive(Debug, Clone)]
enum Op {
    /// Append `batches` batches; each (records, value_len, compressed).
    Append(Vec<(usize, usize, bool)>),
    Flush,
    /// Drop without close and reopen.
    Reopen,
    CloseReopen,
    /// Power cut, then reopen.
    Crash,
    /// Truncate at this fraction (per mille) of the log end.
    Truncate(u16),
    /// An append whose write fails (I/O error, or ENOSPC after this many bytes).
    FailingAppend(Option<u16>),
    /// An append whose write is cut short once (a legal short write): must still succeed.
    ShortWriteAppend,
    /// An append whose fsync fails (with `flush_messages = Some(1)`): refused, the log goes
    /// offline; then a power cut and reopen.
    FailingSyncAppend,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec((1usize..6, 0usize..120, any::<bool>()), 1..4).prop_map(Op::Append),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::CloseReopen),
        2 => Just(Op::Crash),
        1 => (0u16..1000).prop_map(Op::Truncate),
        1 => prop::option::of(0u16..200).prop_map(Op::FailingAppend),
        1 => Just(Op::ShortWriteAppend),
        1 => Just(Op::FailingSyncAppend),
    ]
}

fn make_batch(n: usize, value_len: usize, compressed: bool, ts: i64) -> Vec<u8> {
    if compressed {
        let tss: Vec<i64> = (0..n as i64).map(|i| ts + (i * 7) % 5).collect();
        encoded(Compression::Snappy, &tss, true)
    } else {
        let v = vec![b'x'; value_len];
        let recs: Vec<Rec<'_>> = (0..n)
            .map(|i| (ts - i as i64, Some(&b"k"[..]), Some(v.as_slice())))
            .collect();
        hand_batch(0, (-1, -1, -1), &recs)
    }
}

/// Reads the whole log by walking fetches; returns the batches' bytes.
fn read_all(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut o = log.log_start_offset();
    let end = log.log_end_offset();
    let mut guard = 0;
    while o < end {
        guard += 1;
        assert!(guard < 100_000, "read loop does not progress");
        let r = log.read(o, 700, i64::MAX).unwrap();
        assert!(!r.data.is_empty(), "empty read at {o} < {end}");
        for (h, range) in batch::split(&r.data).unwrap() {
            out.push(r.data[range].to_vec());
            o = h.last_offset() + 1;
        }
    }
    out
}

fn header(b: &[u8]) -> BatchHeader {
    BatchHeader::parse(b).unwrap()
}

fn run(ops: Vec<Op>, cfg: LogConfig) {
    let be = MemoryBackend::new();
    let dir = Path::new("/p/t-0");
    let open = || Log::open(Arc::new(be.clone()), dir, cfg.clone()).unwrap();
    let sync_every = cfg.flush_messages == Some(1);
    let mut log = open();
    // Model: stored batches (with assigned offsets) and how many are known durable.
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut durable = 0usize;
    let mut ts = 1_000i64;
    for op in ops {
        match op {
            Op::Append(specs) => {
                let mut buf = Vec::new();
                for (n, len, c) in &specs {
                    ts += 3;
                    buf.extend_from_slice(&make_batch(*n, *len, *c, ts));
                }
                let end = log.log_end_offset();
                let info = log.append(BytesMut::from(&buf[..]), 0).unwrap();
                assert_eq!(info.base_offset, end);
                let mut expect = end;
                for (h, range) in batch::split(&buf).unwrap() {
                    let mut b = buf[range].to_vec();
                    batch::set_base_offset(&mut b, expect);
                    batch::set_partition_leader_epoch(&mut b, 0);
                    expect += i64::from(h.last_offset_delta) + 1;
                    model.push(b);
                }
                assert_eq!(info.last_offset + 1, expect);
                assert_eq!(log.log_end_offset(), expect);
                if sync_every {
                    durable = model.len();
                }
            }
            Op::FailingAppend(space) => {
                match space {
                    Some(n) => be.enospc_after(Some(u64::from(n))),
                    None => be.fail_nth_write(1),
                }
                let end = log.log_end_offset();
                let r = log.append(BytesMut::from(&make_batch(3, 300, false, ts)[..]), 0);
                be.enospc_after(None);
                be.fail_nth_write(0);
                assert!(r.is_err(), "append should fail");
                if space.is_some() {
                    assert!(r.unwrap_err().is_no_space());
                }
                assert_eq!(log.log_end_offset(), end);
            }
            Op::ShortWriteAppend => {
                be.short_nth_write(1);
                ts += 3;
                let b = make_batch(2, 200, false, ts);
                let end = log.log_end_offset();
                let info = log.append(BytesMut::from(&b[..]), 0);
                be.short_nth_write(0);
                let info = info.unwrap();
                assert_eq!(info.base_offset, end);
                let mut b = b;
                batch::set_base_offset(&mut b, end);
                batch::set_partition_leader_epoch(&mut b, 0);
                model.push(b);
                if sync_every {
                    durable = model.len();
                }
            }
            Op::FailingSyncAppend => {
                ts += 3;
                let b = make_batch(1, 50, false, ts);
                if sync_every {
                    be.fail_nth_sync(1);
                    let r = log.append(BytesMut::from(&b[..]), 0);
                    be.fail_nth_sync(0);
                    assert!(
                        r.is_err(),
                        "append whose fsync failed must not be acknowledged"
                    );
                    // Offline now: further appends are refused.
                    assert!(log.append(BytesMut::from(&b[..]), 0).is_err());
                }
                be.crash();
                drop(log);
                log = open();
                let got = read_all(&log);
                assert!(got.len() >= durable, "lost acknowledged batches");
                assert!(
                    got.len() <= model.len(),
                    "unacknowledged batch survived a power cut"
                );
                assert_eq!(
                    &got[..],
                    &model[..got.len()],
                    "recovered log is not a prefix"
                );
                model.truncate(got.len());
                durable = model.len();
            }
            Op::Flush => {
                log.flush().unwrap();
                durable = model.len();
            }
            Op::Reopen => {
                drop(log);
                log = open();
            }
            Op::CloseReopen => {
                log.close().unwrap();
                drop(log);
                log = open();
                assert!(log.opened_after_clean_shutdown());
                assert!(log.opened_from_snapshot());
                durable = model.len();
            }
            Op::Crash => {
                be.crash();
                drop(log);
                log = open();
                let got = read_all(&log);
                assert!(got.len() >= durable, "lost flushed batches");
                assert!(got.len() <= model.len());
                assert_eq!(
                    &got[..],
                    &model[..got.len()],
                    "recovered log is not a prefix"
                );
                model.truncate(got.len());
                durable = model.len();
            }
            Op::Truncate(per_mille) => {
                let end = log.log_end_offset();
                let off = end * i64::from(per_mille) / 1000;
                log.truncate_to(off).unwrap();
                model.retain(|b| header(b).last_offset() < off);
                durable = durable.min(model.len());
            }
        }
        // Invariants after every step.
        let end = model.last().map_or(0, |b| header(b).last_offset() + 1);
        assert_eq!(log.log_end_offset(), end);
        let got = read_all(&log);
        assert_eq!(got.len(), model.len());
        assert!(got == model, "log contents differ from model");
        let mut next = 0;
        for b in &got {
            let h = batch::validate(b).unwrap();
            assert_eq!(h.base_offset, next, "offsets are dense and increasing");
            next = h.last_offset() + 1;
        }
        // Reads inside batches return the containing batch.
        if let Some(b) = model.get(model.len() / 2) {
            let h = header(b);
            let r = log.read(h.last_offset(), 1, i64::MAX).unwrap();
            assert_eq!(&r.data[..], &b[..]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_ops_sync_every_batch(
        ops in prop::collection::vec(op(), 1..40),
        seg in 200u64..3000,
        interval in 0u32..600,
    ) {
        run(ops, LogConfig {
            segment_bytes: seg,
            index_interval_bytes: interval,
            flush_messages: Some(1),
            ..LogConfig::default()
        });
    }

    #[test]
    fn random_ops_os_flush(
        ops in prop::collection::vec(op(), 1..40),
        seg in 200u64..3000,
        interval in 0u32..600,
        index_bytes in 8u32..200,
    ) {
        run(ops, LogConfig {
            segment_bytes: seg,
            index_interval_bytes: interval,
            segment_index_bytes: index_bytes,
            ..LogConfig::default()
        });
    }
}
