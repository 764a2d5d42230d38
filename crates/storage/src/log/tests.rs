use super::*;
use crate::batch::test_util::{encoded, hand_batch, idem, simple, Rec};
use crate::{FileBackend, MemoryBackend};
use kafka_protocol::records::Compression;

fn dir() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

fn open_mem(b: &MemoryBackend, cfg: LogConfig) -> Log {
    Log::open(Arc::new(b.clone()), &dir(), cfg).unwrap()
}

fn bm(v: &[u8]) -> BytesMut {
    BytesMut::from(v)
}

/// Splits read data into (base_offset, last_offset) pairs.
fn batch_offsets(data: &[u8]) -> Vec<(i64, i64)> {
    batch::split(data)
        .unwrap()
        .iter()
        .map(|(h, _)| (h.base_offset, h.last_offset()))
        .collect()
}

pub(super) fn small_cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 1000,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

#[test]
fn append_assigns_dense_offsets_and_reads_back() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let a1 = log.append(bm(&simple(3, 100, 10)), 0).unwrap();
    assert_eq!((a1.base_offset, a1.last_offset, a1.record_count), (0, 2, 3));
    assert!(!a1.duplicate);
    assert_eq!(a1.max_timestamp, 102);
    let a2 = log.append(bm(&simple(1, 200, 10)), 0).unwrap();
    assert_eq!((a2.base_offset, a2.last_offset), (3, 3));
    let a3 = log
        .append(bm(&encoded(Compression::Zstd, &[1, 2, 3, 4], true)), 0)
        .unwrap();
    assert_eq!((a3.base_offset, a3.last_offset), (4, 7));
    assert_eq!(log.log_end_offset(), 8);

    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 2), (3, 3), (4, 7)]);
    assert_eq!(r.log_end_offset, 8);
    // Stored bytes are the producer's bytes with patched offset: CRC still valid.
    let parts = batch::split(&r.data).unwrap();
    let recs = batch::records(&r.data[parts[2].1.clone()]).unwrap();
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![4, 5, 6, 7]
    );

    // Fetch offset inside a batch returns the whole batch.
    let r = log.read(1, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data)[0], (0, 2));
    let r = log.read(5, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(4, 7)]);
    // At log end: empty; beyond: out of range.
    assert!(log.read(8, 100, i64::MAX).unwrap().data.is_empty());
    assert!(matches!(
        log.read(9, 100, i64::MAX),
        Err(StorageError::OffsetOutOfRange {
            requested: 9,
            log_start: 0,
            log_end: 8
        })
    ));
    assert!(matches!(
        log.read(-1, 100, i64::MAX),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn kip74_and_upper_bound() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    let big = simple(2, 1, 500);
    let small = simple(1, 1, 10);
    log.append(bm(&big), 0).unwrap(); // 0..1
    log.append(bm(&small), 0).unwrap(); // 2
    log.append(bm(&small), 0).unwrap(); // 3
                                        // max_bytes smaller than the first batch still returns it (and only it).
    let r = log.read(0, 10, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 1)]);
    assert_eq!(r.data.len(), big.len());
    let r = log.read(0, 0, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 1)]);
    // Exactly two batches fit.
    let r = log.read(0, big.len() + small.len(), i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 1), (2, 2)]);
    let r = log.read(0, big.len() + small.len() + 1, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 1), (2, 2)]);
    // Upper bound excludes batches starting at or after it.
    let r = log.read(0, 1 << 20, 3).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 1), (2, 2)]);
    let r = log.read(0, 1 << 20, 1).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 1)]);
    assert!(log.read(2, 1 << 20, 2).unwrap().data.is_empty());
    assert!(log.read(0, 1 << 20, 0).unwrap().data.is_empty());
}

#[test]
fn multi_batch_append_and_validation() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    let mut all = simple(2, 1, 5);
    all.extend_from_slice(&encoded(Compression::Gzip, &[5, 6, 7], false));
    let a = log.append(bm(&all), 3).unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.record_count), (0, 4, 5));
    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 1), (2, 4)]);
    for (h, _) in batch::split(&r.data).unwrap() {
        assert_eq!(h.partition_leader_epoch, 3);
    }
    // One bad batch rejects the whole append.
    let mut bad = simple(1, 1, 5);
    let mut corrupt = simple(1, 1, 5);
    let n = corrupt.len();
    corrupt[n - 1] ^= 1;
    bad.extend_from_slice(&corrupt);
    assert!(matches!(
        log.append(bm(&bad), 3),
        Err(StorageError::CorruptBatch(_))
    ));
    let mut magic = simple(1, 1, 5);
    magic[16] = 1;
    assert!(matches!(
        log.append(bm(&magic), 3),
        Err(StorageError::InvalidRecord(_))
    ));
    let partial = simple(1, 1, 5);
    assert!(matches!(
        log.append(bm(&partial[..partial.len() - 3]), 3),
        Err(StorageError::CorruptBatch(_))
    ));
    assert!(matches!(
        log.append(BytesMut::new(), 3),
        Err(StorageError::InvalidRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.size_bytes(), all.len() as u64);
}

#[test]
fn roll_by_size_and_index_lookup() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, small_cfg());
    let mut expect = Vec::new();
    for i in 0..40 {
        let n = 1 + (i % 4);
        let a = log.append(bm(&simple(n, i as i64, 30)), 1).unwrap();
        expect.push((a.base_offset, a.last_offset));
    }
    assert!(log.segment_count() > 5, "segments: {}", log.segment_count());
    {
        let v = log.read_view();
        for s in &v.segments {
            assert!(s.size <= 1000);
            assert!(!s.index.is_empty(), "sparse index has entries");
            // Every index entry points at a batch whose base offset matches.
            for e in &s.index {
                let mut hdr = [0u8; 61];
                s.log.read_full_at(&mut hdr, u64::from(e.pos)).unwrap();
                let h = BatchHeader::parse(&hdr).unwrap();
                assert_eq!(h.base_offset, s.base_offset + i64::from(e.rel));
            }
        }
    }
    // Every offset reads back the batch containing it.
    for &(base, last) in &expect {
        for o in base..=last {
            let r = log.read(o, 1, i64::MAX).unwrap();
            assert_eq!(batch_offsets(&r.data), vec![(base, last)], "offset {o}");
        }
    }
    // A read never crosses a segment boundary.
    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert!(r.data.len() <= 1000);
    log.flush().unwrap();
    // Files exist with Kafka-style names and index files hold 8/12-byte entries.
    let v = log.read_view();
    for s in &v.segments {
        let idx = b
            .contents(&seg_file(&dir(), s.base_offset, "index"))
            .unwrap();
        assert_eq!(idx.len(), s.index.len() * 8);
        assert_eq!(idx, s.index_bytes(0));
        let t = b
            .contents(&seg_file(&dir(), s.base_offset, "timeindex"))
            .unwrap();
        assert_eq!(t.len(), s.time_index.len() * 12);
    }
    assert!(b.exists(&dir().join("00000000000000000000.log")));
}

#[test]
fn segment_ms_rolls() {
    let b = MemoryBackend::new();
    let log = open_mem(
        &b,
        LogConfig {
            segment_ms: Some(0),
            ..LogConfig::default()
        },
    );
    for _ in 0..3 {
        log.append(bm(&simple(1, 1, 1)), 0).unwrap();
    }
    assert_eq!(log.segment_count(), 3);
}

#[test]
fn timestamp_lookup() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, small_cfg());
    let mut all: Vec<(i64, i64)> = Vec::new(); // (offset, ts)
    let patterns: Vec<Vec<i64>> = vec![
        vec![10, 12, 11],
        vec![5, 6],
        vec![30, 20, 25],
        vec![30, 30],
        vec![7],
        vec![50, 40],
        vec![45, 41, 49],
    ];
    for (i, ts) in patterns.iter().enumerate() {
        let data = if i % 2 == 0 {
            encoded(Compression::Lz4, ts, true)
        } else {
            let recs: Vec<Rec<'_>> = ts
                .iter()
                .map(|t| (*t, None, Some(&[0u8; 100][..])))
                .collect();
            hand_batch(0, (-1, -1, -1), &recs)
        };
        let a = log.append(bm(&data), 0).unwrap();
        for (j, t) in ts.iter().enumerate() {
            all.push((a.base_offset + j as i64, *t));
        }
    }
    assert!(log.segment_count() > 1);
    for target in 0..60 {
        let want = all.iter().find(|(_, t)| *t >= target).copied();
        assert_eq!(
            log.offset_for_timestamp(target).unwrap(),
            want,
            "ts {target}"
        );
    }
    let max = all.iter().map(|x| x.1).max().unwrap();
    let want = all.iter().find(|x| x.1 == max).copied();
    assert_eq!(log.max_timestamp().unwrap(), want);
    assert_eq!(want, Some((11, 50)));
    // Survives reopen (timestamps rebuilt from the segments).
    drop(log);
    let log = open_mem(&b, small_cfg());
    assert_eq!(log.offset_for_timestamp(26).unwrap(), Some((5, 30)));
    assert_eq!(log.max_timestamp().unwrap(), Some((11, 50)));
    let empty = open_mem(&MemoryBackend::new(), small_cfg());
    assert_eq!(empty.max_timestamp().unwrap(), None);
    assert_eq!(empty.offset_for_timestamp(0).unwrap(), None);
}

#[test]
fn max_timestamp_ties_pick_earliest() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    log.append(bm(&encoded(Compression::None, &[1, 9, 3], false)), 0)
        .unwrap();
    log.append(bm(&encoded(Compression::None, &[9, 9], false)), 0)
        .unwrap();
    assert_eq!(log.max_timestamp().unwrap(), Some((1, 9)));
}

#[test]
fn leader_epochs() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(log.end_offset_for_epoch(0).unwrap(), None);
    assert_eq!(log.latest_epoch(), None);
    log.append(bm(&simple(2, 1, 1)), 1).unwrap(); // 0,1 epoch 1
    log.append(bm(&simple(2, 1, 1)), 1).unwrap(); // 2,3
    log.append(bm(&simple(3, 1, 1)), 3).unwrap(); // 4..6 epoch 3
    log.append(bm(&simple(1, 1, 1)), 6).unwrap(); // 7 epoch 6
    assert_eq!(log.latest_epoch(), Some(6));
    assert_eq!(log.end_offset_for_epoch(6).unwrap(), Some((6, 8)));
    assert_eq!(log.end_offset_for_epoch(3).unwrap(), Some((3, 7)));
    assert_eq!(log.end_offset_for_epoch(2).unwrap(), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(1).unwrap(), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(0).unwrap(), Some((0, 0)));
    assert_eq!(log.end_offset_for_epoch(9).unwrap(), None);
    log.close().unwrap();
    let cp = b.contents(&dir().join(EPOCH_CHECKPOINT_FILE)).unwrap();
    assert_eq!(String::from_utf8(cp).unwrap(), "0\n3\n1 0\n3 4\n6 7\n");
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(log.end_offset_for_epoch(3).unwrap(), Some((3, 7)));
    drop(log);
    // Missing checkpoint: rebuilt from the batches' partition leader epochs.
    b.remove_file(&dir().join(EPOCH_CHECKPOINT_FILE)).unwrap();
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(log.end_offset_for_epoch(2).unwrap(), Some((1, 4)));
    assert_eq!(log.latest_epoch(), Some(6));
    assert!(b.exists(&dir().join(EPOCH_CHECKPOINT_FILE)));
    // A new leader records its epoch before appending.
    log.assign_epoch(8).unwrap();
    assert_eq!(log.end_offset_for_epoch(7).unwrap(), Some((6, 8)));
    assert_eq!(log.end_offset_for_epoch(8).unwrap(), Some((8, 8)));
    // Not persisted until the next flush: a crash before it loses the entry, which had no
    // records. The restarted broker leads again only at a newer epoch, and with that one
    // recorded, the end of epoch 7 is the same offset as before the crash.
    b.crash();
    drop(log);
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(log.latest_epoch(), Some(6));
    log.assign_epoch(9).unwrap();
    assert_eq!(log.end_offset_for_epoch(7).unwrap(), Some((6, 8)));
    b.crash();
    drop(log);
    let log = open_mem(&b, LogConfig::default());
    // A flush persists it.
    log.assign_epoch(8).unwrap();
    log.flush().unwrap();
    b.crash();
    drop(log);
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(log.latest_epoch(), Some(8));
    assert_eq!(log.end_offset_for_epoch(8).unwrap(), Some((8, 8)));
    let a = log.append(bm(&simple(1, 1, 1)), 8).unwrap();
    assert_eq!(a.base_offset, 8);
    assert_eq!(log.end_offset_for_epoch(6).unwrap(), Some((6, 8)));
    assert_eq!(log.end_offset_for_epoch(8).unwrap(), Some((8, 9)));
}

#[test]
fn idempotent_producer_rules() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    let a = log.append(bm(&idem(7, 0, 0, 3)), 0).unwrap(); // seq 0..2
    assert_eq!((a.base_offset, a.last_offset), (0, 2));
    let a = log.append(bm(&idem(7, 0, 3, 2)), 0).unwrap(); // seq 3..4
    assert_eq!((a.base_offset, a.last_offset), (3, 4));
    log.append(bm(&simple(1, 1, 1)), 0).unwrap(); // 5, other producer
    let size = log.size_bytes();
    // Duplicate of an earlier batch: original offsets, nothing written.
    let d = log.append(bm(&idem(7, 0, 0, 3)), 0).unwrap();
    assert!(d.duplicate);
    assert_eq!((d.base_offset, d.last_offset), (0, 2));
    let d = log.append(bm(&idem(7, 0, 3, 2)), 0).unwrap();
    assert!(d.duplicate);
    assert_eq!((d.base_offset, d.last_offset), (3, 4));
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.log_end_offset(), 6);
    // Gap.
    assert!(matches!(
        log.append(bm(&idem(7, 0, 9, 1)), 0),
        Err(StorageError::OutOfOrderSequence {
            producer_id: 7,
            expected: 5,
            found: 9
        })
    ));
    // Epoch bump must start at 0.
    assert!(matches!(
        log.append(bm(&idem(7, 1, 5, 1)), 0),
        Err(StorageError::OutOfOrderSequence { expected: 0, .. })
    ));
    log.append(bm(&idem(7, 1, 0, 1)), 0).unwrap();
    // Old epoch is fenced.
    assert!(matches!(
        log.append(bm(&idem(7, 0, 5, 1)), 0),
        Err(StorageError::InvalidProducerEpoch {
            current: 1,
            found: 0,
            ..
        })
    ));
    // Unknown producer: any sequence accepted.
    log.append(bm(&idem(8, 3, 1000, 2)), 0).unwrap();
    log.append(bm(&idem(8, 3, 1002, 1)), 0).unwrap();
    // Sequence wrap-around.
    log.append(bm(&idem(9, 0, i32::MAX - 1, 2)), 0).unwrap();
    log.append(bm(&idem(9, 0, 0, 1)), 0).unwrap();
    // Only the last five batches are remembered.
    for s in 1..=6 {
        log.append(bm(&idem(9, 0, s, 1)), 0).unwrap();
    }
    assert!(matches!(
        log.append(bm(&idem(9, 0, 1, 1)), 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert!(log.append(bm(&idem(9, 0, 2, 1)), 0).unwrap().duplicate);
    // Multi-batch append with a rejected batch writes nothing.
    let end = log.log_end_offset();
    let mut two = idem(10, 0, 0, 1);
    two.extend_from_slice(&idem(10, 0, 5, 1));
    assert!(log.append(bm(&two), 0).is_err());
    assert_eq!(log.log_end_offset(), end);
    let mut two = idem(10, 0, 0, 1);
    two.extend_from_slice(&idem(10, 0, 1, 1));
    assert_eq!(log.append(bm(&two), 0).unwrap().record_count, 2);
    // State is rebuilt on reopen (no close: crash-style reopen of in-memory data).
    let end = log.log_end_offset();
    drop(log);
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(log.log_end_offset(), end);
    let d = log.append(bm(&idem(7, 1, 0, 1)), 0).unwrap();
    assert!(d.duplicate);
    assert_eq!(d.base_offset, 6);
    assert!(matches!(
        log.append(bm(&idem(7, 0, 5, 1)), 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    log.append(bm(&idem(7, 1, 1, 1)), 0).unwrap();
    // And from the clean-shutdown snapshot.
    log.close().unwrap();
    drop(log);
    let log = open_mem(&b, LogConfig::default());
    assert!(log.opened_from_snapshot());
    assert!(log.append(bm(&idem(7, 1, 1, 1)), 0).unwrap().duplicate);
    assert!(log.append(bm(&idem(9, 0, 6, 1)), 0).unwrap().duplicate);
    assert!(matches!(
        log.append(bm(&idem(9, 0, 8, 1)), 0),
        Err(StorageError::OutOfOrderSequence { expected: 7, .. })
    ));
    assert!(matches!(
        log.append(bm(&idem(7, 0, 2, 1)), 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
}

#[test]
fn snapshot_rejected_when_files_changed() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, small_cfg());
    for i in 0..10 {
        log.append(bm(&simple(2, i, 40)), 0).unwrap();
    }
    let active = log.read_view().segments.last().unwrap().path.clone();
    log.close().unwrap();
    drop(log);
    // Garbage appended after a clean shutdown: snapshot does not match, scan cuts it.
    let mut data = b.contents(&active).unwrap();
    let n = data.len();
    data.extend_from_slice(b"junk");
    b.set_contents(&active, data);
    let log = open_mem(&b, small_cfg());
    assert!(!log.opened_from_snapshot());
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(b.contents(&active).unwrap().len(), n);
    // Corrupted snapshot: ignored.
    log.close().unwrap();
    drop(log);
    let marker = dir().join(CLEAN_SHUTDOWN_FILE);
    let mut snap = b.contents(&marker).unwrap();
    snap[10] ^= 1;
    b.set_contents(&marker, snap);
    let log = open_mem(&b, small_cfg());
    assert!(log.opened_after_clean_shutdown());
    assert!(!log.opened_from_snapshot());
    assert_eq!(log.log_end_offset(), 20);
}

#[test]
fn truncate_to_removes_whole_batches() {
    let b = MemoryBackend::new();
    let cfg = LogConfig {
        segment_bytes: 400,
        ..small_cfg()
    };
    let log = open_mem(&b, cfg.clone());
    for i in 0..30 {
        log.append(bm(&idem(1, 0, i * 3, 3)), i).unwrap();
    }
    assert_eq!(log.log_end_offset(), 90);
    let segs = log.segment_count();
    assert!(segs > 3);
    // Offset 31 is inside batch 30..32: that batch goes.
    log.truncate_to(31).unwrap();
    assert_eq!(log.log_end_offset(), 30);
    assert!(log.segment_count() < segs);
    let r = log.read(27, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(27, 29)]);
    assert!(log.read(30, 1 << 20, i64::MAX).unwrap().data.is_empty());
    assert!(log.read(31, 1, i64::MAX).is_err());
    // Epoch cache truncated: epochs 10.. started at >= 30.
    assert_eq!(log.latest_epoch(), Some(9));
    // Producer state rebuilt: sequence continues at 30, and 30.. is no longer a duplicate.
    let a = log.append(bm(&idem(1, 0, 30, 3)), 10).unwrap();
    assert!(!a.duplicate);
    assert_eq!(a.base_offset, 30);
    // Truncating to a batch boundary; reopen sees the same log.
    log.truncate_to(3).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.segment_count(), 1);
    log.append(bm(&simple(2, 1, 1)), 11).unwrap();
    drop(log);
    let log = open_mem(&b, cfg);
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.segment_count(), 1);
    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 2), (3, 4)]);
    // Truncate to everything / no-op beyond the end.
    log.truncate_to(100).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(log.latest_epoch(), None);
}

#[test]
fn reopen_after_close() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, small_cfg());
    for i in 0..20 {
        log.append(bm(&simple(2, i, 40)), 2).unwrap();
    }
    let before = log.read(0, 1 << 20, i64::MAX).unwrap().data;
    let segs = log.segment_count();
    log.close().unwrap();
    assert!(matches!(
        log.append(bm(&simple(1, 1, 1)), 2),
        Err(StorageError::Offline(_))
    ));
    assert!(b.exists(&dir().join(CLEAN_SHUTDOWN_FILE)));
    let rp = b.contents(&dir().join(RECOVERY_POINT_FILE)).unwrap();
    assert_eq!(rp, b"0\n40\n");
    // Power cut after close loses nothing: everything was synced.
    b.crash();
    let log = open_mem(&b, small_cfg());
    assert!(log.opened_after_clean_shutdown());
    assert!(log.opened_from_snapshot());
    assert!(!b.exists(&dir().join(CLEAN_SHUTDOWN_FILE)));
    assert_eq!(log.segment_count(), segs);
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(log.read(0, 1 << 20, i64::MAX).unwrap().data, before);
    assert_eq!(log.append(bm(&simple(1, 1, 1)), 2).unwrap().base_offset, 40);
    drop(log);
    let log = open_mem(&b, small_cfg());
    assert!(!log.opened_after_clean_shutdown());
    assert_eq!(log.log_end_offset(), 41);
}

#[test]
fn torn_tail_is_truncated() {
    for tail in [
        b"garbage!".to_vec(),
        simple(3, 1, 50)[..70].to_vec(),
        simple(3, 1, 50)[..20].to_vec(),
        {
            let mut x = simple(3, 1, 50);
            let n = x.len();
            x[n - 1] ^= 0x55;
            x
        },
    ] {
        let b = MemoryBackend::new();
        let log = open_mem(&b, small_cfg());
        for i in 0..10 {
            log.append(bm(&simple(2, i, 40)), 0).unwrap();
        }
        let before = log.read(18, 1 << 20, i64::MAX).unwrap().data;
        let active = log.read_view().segments.last().unwrap().path.clone();
        drop(log);
        let mut data = b.contents(&active).unwrap();
        let good_len = data.len();
        data.extend_from_slice(&tail);
        b.set_contents(&active, data);
        let log = open_mem(&b, small_cfg());
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(b.contents(&active).unwrap().len(), good_len);
        assert_eq!(log.read(18, 1 << 20, i64::MAX).unwrap().data, before);
        assert_eq!(log.append(bm(&simple(1, 1, 1)), 0).unwrap().base_offset, 20);
    }
}

#[test]
fn torn_tail_on_real_files() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("p-0");
    let be: Arc<dyn Backend> = Arc::new(FileBackend);
    let log = Log::open(be.clone(), &d, small_cfg()).unwrap();
    for i in 0..10 {
        log.append(bm(&simple(2, i, 40)), 0).unwrap();
    }
    let active = log.read_view().segments.last().unwrap().path.clone();
    drop(log);
    let partial = simple(3, 1, 50);
    let f = be.open(&active, false).unwrap();
    f.append(&partial[..partial.len() / 2]).unwrap();
    let log = Log::open(be.clone(), &d, small_cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    log.append(bm(&simple(1, 1, 1)), 0).unwrap();
    log.close().unwrap();
    let log = Log::open(be, &d, small_cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 21);
    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data)[0], (0, 1));
}

#[test]
fn corruption_before_recovery_point_is_fatal() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, small_cfg());
    for i in 0..10 {
        log.append(bm(&simple(2, i, 40)), 0).unwrap();
    }
    log.flush().unwrap();
    // Not a clean shutdown: the segment holding the recovery point is validated on open.
    let (first, pos) = {
        let v = log.read_view();
        let s = v.segments.last().unwrap();
        let first_len = batch_offsets(&log.read(s.base_offset, 1, i64::MAX).unwrap().data);
        assert_eq!(first_len.len(), 1);
        (s.path.clone(), 0u64)
    };
    drop(log);
    let mut data = b.contents(&first).unwrap();
    data[pos as usize + 100] ^= 0xff; // inside the segment's first batch's records
    b.set_contents(&first, data.clone());
    match Log::open(Arc::new(b.clone()), &dir(), small_cfg()) {
        Err(StorageError::Corrupt { file, position, .. }) => {
            assert_eq!(file, first);
            assert_eq!(position, pos);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("corruption not detected"),
    }
    // Not cut: the file is untouched.
    assert_eq!(b.contents(&first).unwrap(), data);
}

#[test]
fn corruption_after_recovery_point_is_a_torn_tail() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    for i in 0..5 {
        log.append(bm(&simple(2, i, 40)), 0).unwrap();
    }
    log.flush().unwrap();
    let mut positions = Vec::new();
    for i in 0..5 {
        positions.push(log.size_bytes());
        log.append(bm(&simple(2, i, 40)), 0).unwrap();
    }
    let path = log.read_view().segments[0].path.clone();
    drop(log);
    let mut data = b.contents(&path).unwrap();
    data[positions[2] as usize + 70] ^= 0xff; // third unflushed batch
    b.set_contents(&path, data);
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(log.log_end_offset(), 14);
    assert_eq!(log.size_bytes(), positions[2]);
}

#[test]
fn crash_keeps_flushed_batches() {
    let b = MemoryBackend::new();
    let cfg = LogConfig {
        flush_messages: Some(1),
        ..small_cfg()
    };
    let log = open_mem(&b, cfg.clone());
    for i in 0..25 {
        log.append(bm(&simple(1 + i % 3, i as i64, 30)), 0).unwrap();
    }
    let end = log.log_end_offset();
    let data = log.read(0, 1 << 20, i64::MAX).unwrap().data;
    b.crash();
    drop(log);
    let log = open_mem(&b, cfg);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.read(0, 1 << 20, i64::MAX).unwrap().data, data);
}

#[test]
fn crash_without_flush_loses_only_unflushed_tail() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, small_cfg());
    for i in 0..5 {
        log.append(bm(&simple(2, i, 30)), 0).unwrap();
    }
    log.flush().unwrap();
    for i in 0..20 {
        log.append(bm(&simple(2, i, 30)), 0).unwrap();
    }
    b.crash();
    drop(log);
    let log = open_mem(&b, small_cfg());
    assert!(log.log_end_offset() >= 10);
    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data)[0], (0, 1));
    // Appends continue from the recovered end.
    let end = log.log_end_offset();
    assert_eq!(
        log.append(bm(&simple(1, 1, 1)), 0).unwrap().base_offset,
        end
    );
}

#[test]
fn write_faults() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    log.append(bm(&simple(2, 1, 10)), 0).unwrap();
    // A failed write leaves the log unchanged and later appends work.
    b.fail_nth_write(1);
    assert!(matches!(
        log.append(bm(&simple(2, 1, 10)), 0),
        Err(StorageError::Io { .. })
    ));
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.append(bm(&simple(1, 1, 10)), 0).unwrap().base_offset, 2);
    // A short write is retried transparently.
    b.short_nth_write(1);
    assert_eq!(log.append(bm(&simple(1, 1, 10)), 0).unwrap().base_offset, 3);
    // Disk full.
    b.enospc_after(Some(10));
    let e = log.append(bm(&simple(1, 1, 10)), 0).unwrap_err();
    assert!(e.is_no_space(), "{e}");
    b.enospc_after(None);
    assert_eq!(log.append(bm(&simple(1, 1, 10)), 0).unwrap().base_offset, 4);
    let r = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(batch_offsets(&r.data), vec![(0, 1), (2, 2), (3, 3), (4, 4)]);
    // Failed fsync takes the log offline.
    b.fail_nth_sync(1);
    assert!(log.flush().is_err());
    assert!(matches!(
        log.append(bm(&simple(1, 1, 10)), 0),
        Err(StorageError::Offline(_))
    ));
    drop(log);
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn log_start_offset_file_and_empty_dir() {
    let b = MemoryBackend::new();
    b.create_dir_all(&dir()).unwrap();
    b.set_contents(&dir().join(LOG_START_FILE), b"0\n42\n".to_vec());
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(log.log_start_offset(), 42);
    assert_eq!(log.log_end_offset(), 42);
    assert!(b.exists(&dir().join("00000000000000000042.log")));
    assert_eq!(log.append(bm(&simple(1, 1, 1)), 0).unwrap().base_offset, 42);
    assert!(log.read(41, 10, i64::MAX).is_err());
}

#[test]
fn rebuilds_missing_or_bad_index_files() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, small_cfg());
    for i in 0..30 {
        log.append(bm(&simple(2, i, 30)), 0).unwrap();
    }
    log.close().unwrap();
    let idx0 = seg_file(&dir(), 0, "index");
    let good = b.contents(&idx0).unwrap();
    assert!(!good.is_empty());
    b.remove_file(&idx0).unwrap();
    let t1 = {
        let v = log.read_view();
        seg_file(&dir(), v.segments[1].base_offset, "timeindex")
    };
    b.set_contents(&t1, vec![1, 2, 3]);
    drop(log);
    let log = open_mem(&b, small_cfg());
    assert!(log.opened_after_clean_shutdown());
    assert!(
        !log.opened_from_snapshot(),
        "index files changed: must scan"
    );
    assert_eq!(b.contents(&idx0).unwrap(), good);
    assert_eq!(b.contents(&t1).unwrap().len() % 12, 0);
    for o in [0, 17, 33, 59] {
        let r = log.read(o, 1, i64::MAX).unwrap();
        let (base, last) = batch_offsets(&r.data)[0];
        assert!(base <= o && o <= last);
    }
}

#[test]
fn concurrent_reads_during_appends() {
    let b = MemoryBackend::new();
    let log = Arc::new(open_mem(&b, small_cfg()));
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                log.append(bm(&simple(1 + i % 3, i as i64, 20)), 0).unwrap();
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..2 {
        let log = log.clone();
        readers.push(std::thread::spawn(move || {
            for round in 0..300 {
                let end = log.log_end_offset();
                if end == 0 {
                    continue;
                }
                let o = (round * 7) % end;
                let r = log.read(o, 500, i64::MAX).unwrap();
                let batches = batch_offsets(&r.data);
                assert!(!batches.is_empty());
                assert!(batches[0].0 <= o && o <= batches[0].1);
                for w in batches.windows(2) {
                    assert_eq!(w[0].1 + 1, w[1].0);
                }
            }
        }));
    }
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
}

/// Rough throughput check: `cargo test -p sluice-storage --release -- --ignored throughput`.
#[test]
#[ignore]
fn throughput_smoke() {
    let t = tempfile::tempdir().unwrap();
    let log = Log::open(Arc::new(FileBackend), t.path(), LogConfig::default()).unwrap();
    // 64 batches of ~16 KiB per append (~1 MiB), like a busy Produce request.
    let one = simple(16, 1, 1000);
    let mut req = Vec::new();
    for _ in 0..64 {
        req.extend_from_slice(&one);
    }
    let total = 2usize << 30;
    let n = total / req.len();
    let start = std::time::Instant::now();
    for _ in 0..n {
        log.append(BytesMut::from(&req[..]), 0).unwrap();
    }
    let el = start.elapsed().as_secs_f64();
    eprintln!(
        "append: {:.0} MB/s ({} segments)",
        (n * req.len()) as f64 / el / 1e6,
        log.segment_count()
    );
    let start = std::time::Instant::now();
    let mut o = 0;
    let mut bytes = 0;
    while o < log.log_end_offset() {
        let r = log.read(o, 1 << 20, i64::MAX).unwrap();
        bytes += r.data.len();
        let parts = batch::split(&r.data).unwrap();
        o = parts.last().unwrap().0.last_offset() + 1;
    }
    let el = start.elapsed().as_secs_f64();
    eprintln!("read: {:.0} MB/s", bytes as f64 / el / 1e6);
    let start = std::time::Instant::now();
    drop(log);
    let log = Log::open(Arc::new(FileBackend), t.path(), LogConfig::default()).unwrap();
    eprintln!(
        "reopen without close (full validation of active segment): {:?}",
        start.elapsed()
    );
    log.close().unwrap();
    let start = std::time::Instant::now();
    drop(log);
    let _log = Log::open(Arc::new(FileBackend), t.path(), LogConfig::default()).unwrap();
    eprintln!("reopen after close: {:?}", start.elapsed());
}

#[test]
fn a_batch_start_past_the_segment_end_is_a_corrupt_error_not_an_underflow() {
    let p = std::path::Path::new("/x/00000000000000000000.log");
    assert_eq!(super::bytes_after(p, 100, 40).unwrap(), 60);
    assert_eq!(super::bytes_after(p, 100, 100).unwrap(), 0);
    match super::bytes_after(p, 100, 101) {
        Err(StorageError::Corrupt { position, .. }) => assert_eq!(position, 101),
        other => panic!("expected a corrupt-segment error, got {other:?}"),
    }
}

/// A backend that counts directory syncs and otherwise is the memory backend.
struct CountingDirSyncs {
    inner: MemoryBackend,
    dir_syncs: std::sync::atomic::AtomicUsize,
}

impl Backend for CountingDirSyncs {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<PathBuf>> {
        self.inner.list_dir(path)
    }
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Box<dyn BackendFile>> {
        self.inner.open(path, create)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.dir_syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync_dir(path)
    }
}

#[test]
fn a_roll_leaves_the_directory_sync_to_the_next_flush() {
    let b = Arc::new(CountingDirSyncs {
        inner: MemoryBackend::new(),
        dir_syncs: Default::default(),
    });
    let log = Log::open(b.clone(), &dir(), small_cfg()).unwrap();
    // The first append's epoch and the first recovery point are written by this flush.
    log.append(bm(&simple(1, 0, 30)), 1).unwrap();
    log.flush().unwrap();
    let segments = log.segment_count();
    let before = b.dir_syncs.load(Ordering::SeqCst);
    // Append until two rolls happened; the last append started the active segment.
    let mut i = 0;
    while log.segment_count() < segments + 2 {
        log.append(bm(&simple(2, i, 30)), 1).unwrap();
        i += 1;
        assert!(i < 1000, "segments do not roll");
    }
    assert_eq!(
        b.dir_syncs.load(Ordering::SeqCst),
        before,
        "appends that roll segments must not fsync the directory"
    );
    log.flush().unwrap();
    let with_roll = b.dir_syncs.load(Ordering::SeqCst) - before;
    // A flush after an append that did not roll: only the recovery-point file's own rename
    // (if any) syncs the directory. The flush after rolls syncs it once more.
    let segments = log.segment_count();
    log.append(bm(&simple(1, 99, 1)), 1).unwrap();
    assert_eq!(log.segment_count(), segments, "this append must not roll");
    let mark = b.dir_syncs.load(Ordering::SeqCst);
    log.flush().unwrap();
    let without_roll = b.dir_syncs.load(Ordering::SeqCst) - mark;
    assert_eq!(
        with_roll,
        without_roll + 1,
        "the flush after a roll syncs the directory"
    );
}
