//! Compaction tests.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;
use crate::{CleanOptions, CleanStats, MemoryBackend};

fn dir() -> PathBuf {
    PathBuf::from("/data/compact-0")
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn open(b: &MemoryBackend) -> Log {
    Log::open(Arc::new(b.clone()), &dir(), cfg()).unwrap()
}

/// One record to write: key, value (None = tombstone), headers.
type Spec<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);

/// Encodes a batch (producer `pid`/`seq`, -1 for none) with kafka-protocol's encoder.
fn kbatch(c: Compression, ts: i64, pid: (i64, i32), recs: &[Spec<'_>]) -> BytesMut {
    let records: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, (k, v, hs))| {
            let mut headers = IndexMap::new();
            for (hk, hv) in hs.iter() {
                headers.insert(
                    kafka_protocol::protocol::StrBytes::from_string(hk.to_string()),
                    Some(Bytes::from(hv.to_string())),
                );
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid.0,
                producer_epoch: if pid.0 >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder splits batches where `offset - sequence` changes.
                sequence: if pid.0 >= 0 {
                    pid.1 + i as i32
                } else {
                    i as i32 - 1
                },
                timestamp: ts + i as i64,
                key: Some(Bytes::from(k.to_string())),
                value: v.map(|v| Bytes::from(v.to_string())),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: c,
        },
    )
    .unwrap();
    buf
}

/// (offset, timestamp, key, value, headers) of one record, for comparisons.
type Seen = (
    i64,
    i64,
    Option<Bytes>,
    Option<Bytes>,
    Vec<(String, Option<Bytes>)>,
);

fn seen(r: &Record) -> Seen {
    (
        r.offset,
        r.timestamp,
        r.key.clone(),
        r.value.clone(),
        r.headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// Every record of the log, by offset, read through `Log::read`.
fn all_records(log: &Log) -> BTreeMap<i64, Seen> {
    let mut out = BTreeMap::new();
    let mut o = log.log_start_offset();
    let end = log.log_end_offset();
    let mut guard = 0;
    while o < end {
        guard += 1;
        assert!(guard < 100_000, "read loop does not progress");
        let r = log.read(o, 1000, i64::MAX).unwrap();
        if r.data.is_empty() {
            break;
        }
        let mut buf = r.data.clone();
        for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
            // Like a consumer, skip records below the fetch offset in the first batch.
            for rec in set.records.iter().filter(|r| r.offset >= o) {
                out.insert(rec.offset, seen(rec));
            }
        }
        let mut last = o;
        for (h, _) in batch_headers(&r.data) {
            last = h.last_offset();
        }
        o = last + 1;
    }
    out
}

fn batch_headers(data: &[u8]) -> Vec<(BatchHeader, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(rest) = data.get(pos..) {
        if rest.is_empty() {
            break;
        }
        let h =
            batch::validate_stored(&rest[..BatchHeader::parse(rest).unwrap().total_len()]).unwrap();
        out.push((h, pos));
        pos += h.total_len();
    }
    out
}

fn opts(now: i64) -> CleanOptions {
    CleanOptions {
        now_ms: now,
        delete_retention_ms: 1_000_000,
        min_compaction_lag_ms: 0,
        max_bytes_per_sec: None,
    }
}

/// Expected content after cleaning `[0, end)`: the latest record of each key.
fn expected_after_clean(before: &BTreeMap<i64, Seen>, end: i64) -> BTreeMap<i64, Seen> {
    let mut latest: HashMap<Option<Bytes>, i64> = HashMap::new();
    for (o, r) in before.range(..end) {
        latest.insert(r.2.clone(), *o);
    }
    before
        .iter()
        .filter(|(o, r)| **o >= end || latest.get(&r.2) == Some(*o))
        .map(|(o, r)| (*o, r.clone()))
        .collect()
}

/// Writes `rounds` rounds of updates to keys k0..k4 with every codec in turn.
fn fill(log: &Log, rounds: usize) {
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    for r in 0..rounds {
        let c = codecs[r % codecs.len()];
        let v: Vec<String> = (0..5).map(|k| format!("value-{r}-{k}")).collect();
        let hv = format!("h{r}");
        let hs = [("trace", hv.as_str()), ("z", "")];
        let recs: Vec<Spec<'_>> = (0..5)
            .map(|k| {
                let key: &str = ["k0", "k1", "k2", "k3", "k4"][(k + r) % 5];
                (key, Some(v[k].as_str()), &hs[..])
            })
            .collect();
        // Split into batches of 2 and 3 records.
        log.append(kbatch(c, 1000 + r as i64 * 10, (-1, -1), &recs[..2]), 0)
            .unwrap();
        log.append(kbatch(c, 1005 + r as i64 * 10, (-1, -1), &recs[2..]), 0)
            .unwrap();
    }
}

#[test]
fn latest_value_per_key_survives_offsets_headers_preserved() {
    let b = MemoryBackend::new();
    let log = open(&b);
    fill(&log, 12);
    assert!(log.segment_count() >= 4);
    let before = all_records(&log);
    let end_before = log.log_end_offset();
    let info = log.cleanable_info(10_000, 0);
    assert_eq!(info.first_dirty_offset, 0);
    assert!(info.cleanable_bytes > 0 && info.clean_bytes == 0);
    assert!((info.dirty_ratio - 1.0).abs() < 1e-9);
    let e = info.first_uncleanable_offset;
    let active_base = log.read_view().segments.last().unwrap().base_offset;
    assert_eq!(e, active_base);

    let stats = log.clean(&opts(10_000)).unwrap();
    assert!(stats.segments_cleaned > 0);
    assert!(stats.records_removed > 0);
    assert!(stats.bytes_written < stats.bytes_read);
    let after = all_records(&log);
    let want = expected_after_clean(&before, e);
    assert_eq!(after, want, "latest per key, same offsets, same bytes");
    assert_eq!(stats.records_removed as usize, before.len() - after.len());
    assert_eq!(log.log_end_offset(), end_before);
    assert_eq!(log.log_start_offset(), 0);
    // The checkpoint moved; nothing is dirty any more.
    let info = log.cleanable_info(10_000, 0);
    assert_eq!(info.first_dirty_offset, e);
    assert_eq!(info.cleanable_bytes, 0);
    assert_eq!(info.dirty_ratio, 0.0);
    // Reads inside a removed range return the next batch.
    let gap = (0..e).find(|o| !after.contains_key(o)).unwrap();
    let r = log.read(gap, 1, i64::MAX).unwrap();
    let (h, _) = batch_headers(&r.data)[0];
    assert!(h.last_offset() >= gap);

    // Survives a clean reopen (snapshot), a crash reopen (scan) and more appends + cleans.
    log.close().unwrap();
    drop(log);
    let log = open(&b);
    assert!(log.opened_from_snapshot());
    assert_eq!(all_records(&log), want);
    drop(log);
    b.crash();
    let log = open(&b);
    assert!(!log.opened_from_snapshot());
    assert_eq!(all_records(&log), want);
    assert_eq!(log.log_start_offset(), 0);
    fill(&log, 6);
    let before2 = all_records(&log);
    let e2 = log.cleanable_info(10_000, 0).first_uncleanable_offset;
    log.clean(&opts(10_000)).unwrap();
    assert_eq!(all_records(&log), expected_after_clean(&before2, e2));
    drop(log);
    b.crash();
    let log = open(&b);
    assert_eq!(all_records(&log), expected_after_clean(&before2, e2));
    // Appends still work after reopen.
    fill(&log, 1);
}

#[test]
fn compaction_lag_limits_the_cleanable_range() {
    let b = MemoryBackend::new();
    let log = open(&b);
    fill(&log, 10);
    // Timestamps are ~1000..1100: a lag that keeps everything after ts 1040 dirty.
    let info = log.cleanable_info(1040 + 500, 500);
    let all = log.cleanable_info(1040 + 500, 0);
    assert!(info.first_uncleanable_offset < all.first_uncleanable_offset);
    let before = all_records(&log);
    log.clean(&CleanOptions {
        min_compaction_lag_ms: 500,
        ..opts(1540)
    })
    .unwrap();
    let after = all_records(&log);
    assert_eq!(
        after,
        expected_after_clean(&before, info.first_uncleanable_offset)
    );
    // Nothing cleanable: a no-op.
    let stats = log
        .clean(&CleanOptions {
            min_compaction_lag_ms: 1_000_000,
            ..opts(1540)
        })
        .unwrap();
    assert_eq!(stats, CleanStats::default());
}

#[test]
fn tombstones_dropped_only_after_delete_retention() {
    let b = MemoryBackend::new();
    let log = open(&b);
    let none: &[(&str, &str)] = &[];
    log.append(
        kbatch(
            Compression::None,
            10,
            (-1, -1),
            &[("a", Some("1"), none), ("b", Some("1"), none)],
        ),
        0,
    )
    .unwrap();
    log.append(
        kbatch(Compression::Lz4, 20, (-1, -1), &[("a", None, none)]),
        0,
    )
    .unwrap();
    let tomb = log.log_end_offset() - 1;
    // Push the tombstone out of the active segment.
    fill(&log, 4);
    let dr = 5_000;
    let o = |now| CleanOptions {
        delete_retention_ms: dr,
        ..opts(now)
    };
    let t0 = 100_000;
    let s = log.clean(&o(t0)).unwrap();
    assert_eq!(s.tombstones_removed, 0);
    let r = all_records(&log);
    assert!(!r.contains_key(&0), "a=1 superseded by its tombstone");
    assert!(r[&tomb].3.is_none(), "tombstone kept in the first pass");
    assert!(r.contains_key(&1), "b=1 kept");
    let s = log.clean(&o(t0 + dr - 1)).unwrap();
    assert_eq!(s.tombstones_removed, 0);
    assert!(all_records(&log).contains_key(&tomb));
    // Reopen in between: the pass history is persisted.
    drop(log);
    b.crash();
    let log = open(&b);
    assert!(all_records(&log).contains_key(&tomb));
    let s = log.clean(&o(t0 + dr)).unwrap();
    assert_eq!(s.tombstones_removed, 1);
    let r = all_records(&log);
    assert!(
        !r.contains_key(&tomb),
        "tombstone dropped after delete.retention.ms"
    );
    assert!(r.contains_key(&1));
    drop(log);
    b.crash();
    let log = open(&b);
    assert!(!all_records(&log).contains_key(&tomb));
}

#[test]
fn idempotent_producer_state_survives_compaction_and_reopen() {
    let b = MemoryBackend::new();
    let log = open(&b);
    let none: &[(&str, &str)] = &[];
    // Producer 7 writes keys x0..x5 in three batches (seq 0..5).
    let p7: Vec<BytesMut> = (0..3)
        .map(|i| {
            let k0 = format!("x{}", 2 * i);
            let k1 = format!("x{}", 2 * i + 1);
            kbatch(
                Compression::Snappy,
                50 + i,
                (7, 2 * i as i32),
                &[(k0.leak(), Some("p7"), none), (k1.leak(), Some("p7"), none)],
            )
        })
        .collect();
    for bt in &p7 {
        log.append(bt.clone(), 0).unwrap();
    }
    let last7 = log.log_end_offset() - 1;
    // Everything producer 7 wrote is superseded by a non-idempotent writer.
    for i in 0..6 {
        let k = format!("x{i}");
        log.append(
            kbatch(
                Compression::None,
                60,
                (-1, -1),
                &[(k.leak(), Some("new"), none)],
            ),
            0,
        )
        .unwrap();
    }
    fill(&log, 4);
    let stats = log.clean(&opts(10_000)).unwrap();
    assert!(stats.records_removed >= 6);
    let recs = all_records(&log);
    assert!(recs.values().all(|r| r.3.as_deref() != Some(&b"p7"[..])));
    // Producer 7's last batch remains as an empty batch with its sequence range.
    let r = log.read(last7, 1, i64::MAX).unwrap();
    let (h, _) = batch_headers(&r.data)[0];
    assert_eq!(
        (h.producer_id, h.records_count, h.last_offset()),
        (7, 0, last7)
    );
    assert_eq!((h.base_sequence, h.last_sequence()), (4, 5));
    // Reopen without a snapshot: producer state is rebuilt from the headers.
    drop(log);
    b.crash();
    let log = open(&b);
    assert!(!log.opened_from_snapshot());
    let dup = log.append(p7[2].clone(), 0).unwrap();
    assert!(
        dup.duplicate,
        "retry of the last batch is still a duplicate"
    );
    assert_eq!(dup.last_offset, last7);
    let gap = kbatch(Compression::None, 70, (7, 9), &[("y", Some("v"), none)]);
    assert!(matches!(
        log.append(gap, 0),
        Err(StorageError::OutOfOrderSequence { expected: 6, .. })
    ));
    let next = kbatch(Compression::None, 70, (7, 6), &[("y", Some("v"), none)]);
    assert!(!log.append(next, 0).unwrap().duplicate);
}

#[test]
fn crash_at_every_step_of_the_swap_loses_nothing() {
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        Write(u64),
        Sync(u64),
        Rename(u64),
    }
    let mut faults = Vec::new();
    for n in 1..40 {
        faults.extend([Fault::Write(n), Fault::Sync(n), Fault::Rename(n)]);
    }
    let mut fired = 0;
    for fault in faults {
        let b = MemoryBackend::new();
        let log = open(&b);
        fill(&log, 10);
        log.flush().unwrap();
        let before = all_records(&log);
        let e = log.cleanable_info(10_000, 0).first_uncleanable_offset;
        let want = expected_after_clean(&before, e);
        match fault {
            Fault::Write(n) => b.fail_nth_write(n),
            Fault::Sync(n) => b.fail_nth_sync(n),
            Fault::Rename(n) => b.fail_nth_rename(n),
        }
        let res = log.clean(&opts(10_000));
        b.fail_nth_write(0);
        b.fail_nth_sync(0);
        b.fail_nth_rename(0);
        if res.is_err() {
            fired += 1;
        }
        b.crash();
        drop(log);
        let log = open(&b);
        let got = all_records(&log);
        // Either the old or the new content: every latest value is there, at its offset,
        // nothing else is invented, and the log still ends where it did.
        assert_eq!(
            log.log_end_offset(),
            before.keys().last().unwrap() + 1,
            "{fault:?}"
        );
        for (o, r) in &want {
            assert_eq!(got.get(o), Some(r), "{fault:?}: lost offset {o}");
        }
        for (o, r) in &got {
            assert_eq!(
                before.get(o),
                Some(r),
                "{fault:?}: unexpected record at {o}"
            );
        }
        // A later pass completes the job.
        log.clean(&opts(10_000)).unwrap();
        assert_eq!(all_records(&log), want, "{fault:?}");
        drop(log);
        b.crash();
        assert_eq!(all_records(&open(&b)), want, "{fault:?}");
    }
    assert!(fired > 20, "faults must hit the pass ({fired} did)");
}

#[test]
fn interrupted_swap_rolls_forward_or_back_on_open() {
    let b = MemoryBackend::new();
    let log = open(&b);
    fill(&log, 10);
    let before = all_records(&log);
    let e = log.cleanable_info(10_000, 0).first_uncleanable_offset;
    log.clean(&opts(10_000)).unwrap();
    let want = expected_after_clean(&before, e);
    // Simulate leftovers: a stray `.cleaned` with garbage means "roll back" (delete it).
    b.set_contents(&seg_file(&dir(), 0, "log.cleaned"), vec![1, 2, 3]);
    drop(log);
    let log = open(&b);
    assert!(!Backend::exists(&b, &seg_file(&dir(), 0, "log.cleaned")));
    assert_eq!(all_records(&log), want);
    // A complete `.swap` of the first segment is rolled forward.
    let seg0 = b.contents(&seg_file(&dir(), 0, "log")).unwrap();
    drop(log);
    b.set_contents(&seg_file(&dir(), 0, "log.swap"), seg0.clone());
    let log = open(&b);
    assert!(!Backend::exists(&b, &seg_file(&dir(), 0, "log.swap")));
    assert_eq!(b.contents(&seg_file(&dir(), 0, "log")).unwrap(), seg0);
    assert_eq!(all_records(&log), want);
}

#[test]
fn throttle_slows_the_pass() {
    let b = MemoryBackend::new();
    let log = open(&b);
    fill(&log, 6);
    let size = log.size_bytes();
    let t = std::time::Instant::now();
    let stats = log
        .clean(&CleanOptions {
            max_bytes_per_sec: Some(size * 5),
            ..opts(10_000)
        })
        .unwrap();
    let io = stats.bytes_read + stats.bytes_written;
    // At 5 log-sizes per second, reading and writing takes at least io / rate.
    let min = std::time::Duration::from_secs_f64(io as f64 / (size * 5) as f64 * 0.9);
    assert!(t.elapsed() >= min, "{:?} < {min:?}", t.elapsed());
}

#[test]
fn retention_and_delete_records_work_on_compacted_logs() {
    let b = MemoryBackend::new();
    let log = open(&b);
    fill(&log, 10);
    log.clean(&opts(10_000)).unwrap();
    let after = all_records(&log);
    let second = log.read_view().segments[1].base_offset;
    assert_eq!(log.delete_records_before(second).unwrap(), second);
    assert_eq!(
        all_records(&log),
        after
            .range(second..)
            .map(|(o, r)| (*o, r.clone()))
            .collect()
    );
    let out = log.enforce_retention(0, None, Some(0)).unwrap();
    assert!(out.segments_deleted > 0);
    drop(log);
    b.crash();
    let log = open(&b);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), out.log_start_offset);
}

mod model {
    //! Property test: random keyed appends, compaction, DeleteRecords, size retention,
    //! reopens and power cuts, against a record-level model (offset -> record).

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Records (key index, tombstone) in one batch, with a codec index.
        Append(Vec<(u8, bool)>, u8),
        Clean,
        /// DeleteRecords at this fraction (per mille) of the log end.
        DeleteRecords(u16),
        /// Size retention keeping at least this many bytes.
        RetainBytes(u16),
        Reopen,
        CloseReopen,
        Crash,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            10 => (prop::collection::vec((0u8..6, prop::bool::weighted(0.15)), 1..5), 0u8..5)
                .prop_map(|(r, c)| Op::Append(r, c)),
            3 => Just(Op::Clean),
            1 => (0u16..1000).prop_map(Op::DeleteRecords),
            1 => (0u16..3000).prop_map(Op::RetainBytes),
            1 => Just(Op::Reopen),
            1 => Just(Op::CloseReopen),
            1 => Just(Op::Crash),
        ]
    }

    fn run(ops: Vec<Op>, seg: u64) {
        let b = MemoryBackend::new();
        let cfg = LogConfig {
            segment_bytes: seg,
            index_interval_bytes: 64,
            flush_messages: Some(1),
            ..LogConfig::default()
        };
        let open = || Log::open(Arc::new(b.clone()), &dir(), cfg.clone()).unwrap();
        let mut log = open();
        let mut model: BTreeMap<i64, Seen> = BTreeMap::new();
        let mut n = 0u64;
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for op in ops {
            match op {
                Op::Append(recs, c) => {
                    let vals: Vec<String> = recs
                        .iter()
                        .map(|_| {
                            n += 1;
                            format!("v{n}")
                        })
                        .collect();
                    let keys: Vec<String> = recs.iter().map(|(k, _)| format!("k{k}")).collect();
                    let hs: &[(&str, &str)] = &[("h", "x")];
                    let specs: Vec<Spec<'_>> = recs
                        .iter()
                        .enumerate()
                        .map(|(i, (_, tomb))| {
                            (keys[i].as_str(), (!tomb).then_some(vals[i].as_str()), hs)
                        })
                        .collect();
                    let bt = kbatch(codecs[c as usize % 5], 1000 + n as i64, (-1, -1), &specs);
                    let mut buf = bt.clone();
                    let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
                    let a = log.append(bt, 0).unwrap();
                    for r in sets.iter().flat_map(|s| s.records.iter()) {
                        let mut s = seen(r);
                        s.0 += a.base_offset;
                        model.insert(s.0, s);
                    }
                }
                Op::Clean => {
                    let e = log.cleanable_info(10_000, 0).first_uncleanable_offset;
                    log.clean(&opts(10_000)).unwrap();
                    let mut latest: HashMap<Option<Bytes>, i64> = HashMap::new();
                    for (o, r) in model.range(..e) {
                        latest.insert(r.2.clone(), *o);
                    }
                    model.retain(|o, r| *o >= e || latest.get(&r.2) == Some(o));
                }
                Op::DeleteRecords(pm) => {
                    let end = log.log_end_offset();
                    let start = log.log_start_offset();
                    let target = end * i64::from(pm) / 1000;
                    let got = log.delete_records_before(target).unwrap();
                    assert_eq!(got, target.max(start));
                    model.retain(|o, _| *o >= got);
                }
                Op::RetainBytes(limit) => {
                    let before = log.log_start_offset();
                    let out = log
                        .enforce_retention(0, None, Some(i64::from(limit)))
                        .unwrap();
                    assert!(out.log_start_offset >= before);
                    assert!(log.size_bytes() >= u64::from(limit) || out.segments_deleted == 0);
                    model.retain(|o, _| *o >= out.log_start_offset);
                }
                Op::Reopen => {
                    drop(log);
                    log = open();
                }
                Op::CloseReopen => {
                    log.close().unwrap();
                    drop(log);
                    log = open();
                    assert!(log.opened_from_snapshot());
                }
                Op::Crash => {
                    b.crash();
                    drop(log);
                    log = open();
                }
            }
            assert_eq!(all_records(&log), model, "log differs from the model");
            if let Some((o, _)) = model.iter().next() {
                assert!(log.log_start_offset() <= *o);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_compaction_retention_and_crashes(
            ops in prop::collection::vec(op(), 1..40),
            seg in 150u64..1200,
        ) {
            run(ops, seg);
        }
    }
}

#[test]
fn test_batches_hold_several_records() {
    let hs: &[(&str, &str)] = &[];
    for pid in [(-1, -1), (7, 3)] {
        let bt = kbatch(
            Compression::Gzip,
            1,
            pid,
            &[("a", Some("1"), hs), ("b", None, hs), ("c", Some("3"), hs)],
        );
        let h = batch::validate(&bt).expect("exactly one batch");
        assert_eq!(h.records_count, 3);
    }
}
