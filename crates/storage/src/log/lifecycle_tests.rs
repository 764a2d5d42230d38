//! Tests of retention, DeleteRecords, live config changes and log deletion.

use super::*;
use crate::batch::test_util::simple;
use crate::{FileBackend, MemoryBackend};

fn dir() -> PathBuf {
    PathBuf::from("/data/life-0")
}

fn open_mem(b: &MemoryBackend, cfg: LogConfig) -> Log {
    Log::open(Arc::new(b.clone()), &dir(), cfg).unwrap()
}

fn seg_cfg(bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes: bytes,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

/// Appends `count` batches of 2 records (~130 bytes each), batch `i` at timestamp
/// `ts0 + 1000 * i`. Returns each batch's (base offset, max timestamp).
fn fill(log: &Log, count: usize, ts0: i64) -> Vec<(i64, i64)> {
    (0..count)
        .map(|i| {
            let ts = ts0 + 1000 * i as i64;
            let a = log
                .append(BytesMut::from(&simple(2, ts, 50)[..]), 0)
                .unwrap();
            (a.base_offset, a.max_timestamp)
        })
        .collect()
}

fn bases(log: &Log) -> Vec<i64> {
    log.read_view()
        .segments
        .iter()
        .map(|s| s.base_offset)
        .collect()
}

fn assert_out_of_range(log: &Log, offset: i64) {
    assert!(
        matches!(
            log.read(offset, 1000, i64::MAX),
            Err(StorageError::OffsetOutOfRange { .. })
        ),
        "read at {offset} should be out of range"
    );
}

#[test]
fn retention_by_time_deletes_expired_segments_oldest_first() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, seg_cfg(400));
    fill(&log, 12, 10_000);
    log.flush().unwrap();
    let segs: Vec<(i64, Option<i64>)> = log
        .read_view()
        .segments
        .iter()
        .map(|s| (s.base_offset, s.max_ts.map(|m| m.0)))
        .collect();
    assert!(segs.len() >= 4, "need several segments: {segs:?}");
    // Expire everything up to (excluding) the third segment's newest record.
    let limit_ts = segs[2].1.unwrap();
    let now = 1_000_000;
    let out = log
        .enforce_retention(now, Some(now - limit_ts), None)
        .unwrap();
    assert_eq!(out.segments_deleted, 2);
    assert_eq!(out.log_start_offset, segs[2].0);
    assert!(out.bytes_deleted > 0);
    assert_eq!(log.log_start_offset(), segs[2].0);
    assert_eq!(bases(&log)[0], segs[2].0);
    assert_out_of_range(&log, segs[2].0 - 1);
    assert_out_of_range(&log, 0);
    assert!(!log.read(segs[2].0, 1000, i64::MAX).unwrap().data.is_empty());
    // No time limit / nothing expired: no-op.
    let out = log.enforce_retention(now, None, None).unwrap();
    assert_eq!(out.segments_deleted, 0);
    let out = log.enforce_retention(now, Some(-1), Some(-1)).unwrap();
    assert_eq!(out.segments_deleted, 0);
    // Files are gone and the start offset survives a crash + reopen.
    assert!(b.contents(&seg_file(&dir(), 0, "log")).is_none());
    b.crash();
    drop(log);
    let log = open_mem(&b, seg_cfg(400));
    assert_eq!(log.log_start_offset(), segs[2].0);
    assert_out_of_range(&log, segs[2].0 - 1);
}

#[test]
fn retention_stops_at_first_unexpired_segment() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, seg_cfg(400));
    fill(&log, 4, 10_000);
    // A new segment full of old timestamps after a young one: not reached.
    let young_end = log.log_end_offset();
    log.append(BytesMut::from(&simple(2, 5_000_000, 50)[..]), 0)
        .unwrap();
    fill(&log, 6, 20_000);
    let now = 5_000_000;
    let out = log.enforce_retention(now, Some(10_000), None).unwrap();
    assert!(out.log_start_offset <= young_end);
    assert!(log.log_start_offset() <= young_end);
    assert!(!log.read(young_end, 1000, i64::MAX).unwrap().data.is_empty());
}

#[test]
fn expired_active_segment_is_rolled_and_deleted() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    fill(&log, 3, 1_000);
    assert_eq!(log.segment_count(), 1);
    let end = log.log_end_offset();
    let out = log.enforce_retention(100_000, Some(1_000), None).unwrap();
    assert_eq!(out.segments_deleted, 1);
    assert_eq!(out.log_start_offset, end);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
    assert_eq!(bases(&log), vec![end]);
    assert_out_of_range(&log, 0);
    assert!(log.read(end, 100, i64::MAX).unwrap().data.is_empty());
    // Appends continue at the old end; an empty active segment is never deleted.
    let a = log
        .append(BytesMut::from(&simple(1, 200_000, 5)[..]), 0)
        .unwrap();
    assert_eq!(a.base_offset, end);
    assert_eq!(a.log_start_offset, end);
    let out = log.enforce_retention(100_000, Some(1_000), None).unwrap();
    assert_eq!(out.segments_deleted, 0);
    log.close().unwrap();
    drop(log);
    let log = open_mem(&b, LogConfig::default());
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (end, end + 1)
    );
    // Rolling an empty log: nothing to do.
    let b2 = MemoryBackend::new();
    let empty = open_mem(&b2, LogConfig::default());
    let out = empty.enforce_retention(i64::MAX, Some(0), Some(0)).unwrap();
    assert_eq!(out.segments_deleted, 0);
    assert_eq!(empty.segment_count(), 1);
}

#[test]
fn retention_by_size_keeps_at_least_the_limit() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, seg_cfg(400));
    fill(&log, 15, 10_000);
    let sizes: Vec<u64> = log.read_view().segments.iter().map(|s| s.size).collect();
    let total: u64 = sizes.iter().sum();
    assert_eq!(total, log.size_bytes());
    let limit = total - sizes[0] - sizes[1] - 1; // room to delete exactly two segments
    let out = log.enforce_retention(0, None, Some(limit as i64)).unwrap();
    assert_eq!(out.segments_deleted, 2);
    assert_eq!(out.bytes_deleted, sizes[0] + sizes[1]);
    assert!(log.size_bytes() >= limit);
    // A limit of 0 deletes every non-active segment but never the active one.
    let out = log.enforce_retention(0, None, Some(0)).unwrap();
    assert_eq!(out.segments_deleted, sizes.len() - 3);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), bases(&log)[0]);
    assert!(log.log_start_offset() < log.log_end_offset());
}

#[test]
fn delete_records_before_mid_segment_and_at_end() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, seg_cfg(400));
    fill(&log, 10, 10_000);
    let end = log.log_end_offset();
    let segs = bases(&log);
    // Inside the second segment: first segment deleted, reads below start fail.
    let mid = segs[1] + 1;
    assert_eq!(log.delete_records_before(mid).unwrap(), mid);
    assert_eq!(log.log_start_offset(), mid);
    assert_eq!(bases(&log)[0], segs[1]);
    assert_out_of_range(&log, mid - 1);
    // A read at the start returns the batch containing it.
    let r = log.read(mid, 10, i64::MAX).unwrap();
    assert_eq!(r.log_start_offset, mid);
    let h = BatchHeader::parse(&r.data).unwrap();
    assert!(h.base_offset <= mid && h.last_offset() >= mid);
    // Below the start: no-op; beyond the end: error.
    assert_eq!(log.delete_records_before(3).unwrap(), mid);
    assert!(matches!(
        log.delete_records_before(end + 1),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(log.delete_records_before(-5).is_err());
    // Crash + reopen keeps the mid-segment start.
    log.flush().unwrap();
    b.crash();
    drop(log);
    let log = open_mem(&b, seg_cfg(400));
    assert_eq!(log.log_start_offset(), mid);
    assert_out_of_range(&log, mid - 1);
    // Up to the log end: everything but the active segment is deleted.
    assert_eq!(log.delete_records_before(end).unwrap(), end);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
    assert_eq!(log.segment_count(), 1);
    assert!(log.read(end, 100, i64::MAX).unwrap().data.is_empty());
    assert_out_of_range(&log, end - 1);
    let a = log.append(BytesMut::from(&simple(1, 1, 5)[..]), 0).unwrap();
    assert_eq!(a.base_offset, end);
    log.close().unwrap();
    drop(log);
    let log = open_mem(&b, seg_cfg(400));
    assert_eq!(log.log_start_offset(), end);
    assert_eq!(log.log_end_offset(), end + 1);
}

#[test]
fn crash_between_start_persist_and_deletion_reopens_right() {
    // Simulates a crash after `log-start-offset` was written but before files were deleted.
    let b = MemoryBackend::new();
    let log = open_mem(&b, seg_cfg(400));
    fill(&log, 10, 10_000);
    let segs = bases(&log);
    log.flush().unwrap();
    drop(log);
    b.set_contents(
        &dir().join(LOG_START_FILE),
        format!("0\n{}\n", segs[2]).into_bytes(),
    );
    let log = open_mem(&b, seg_cfg(400));
    assert_eq!(log.log_start_offset(), segs[2]);
    assert_out_of_range(&log, segs[2] - 1);
    assert_eq!(log.segment_count(), segs.len());
    // The next retention pass removes the leftovers wholly below the start.
    let out = log.enforce_retention(0, None, None).unwrap();
    assert_eq!(out.segments_deleted, 2);
    assert_eq!(bases(&log)[0], segs[2]);
    assert_eq!(log.log_start_offset(), segs[2]);
}

#[test]
fn set_config_changes_roll_size() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, LogConfig::default());
    fill(&log, 10, 1);
    assert_eq!(log.segment_count(), 1);
    log.set_config(seg_cfg(300));
    assert_eq!(log.config().segment_bytes, 300);
    let before = log.size_bytes();
    fill(&log, 6, 1);
    // The big existing segment rolls at once; then every ~2 batches.
    assert!(log.segment_count() >= 3, "got {}", log.segment_count());
    assert_eq!(log.read_view().segments[0].size, before);
    for s in log.read_view().segments.iter().skip(1) {
        assert!(s.size <= 300);
    }
    // Flush policy changes take effect too.
    log.set_config(LogConfig {
        flush_messages: Some(1),
        ..seg_cfg(300)
    });
    fill(&log, 1, 1);
    let end = log.log_end_offset();
    b.crash();
    drop(log);
    let log = open_mem(&b, seg_cfg(300));
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn delete_removes_the_directory() {
    let b = MemoryBackend::new();
    let log = open_mem(&b, seg_cfg(400));
    fill(&log, 6, 1);
    log.flush().unwrap();
    log.delete().unwrap();
    assert!(!Backend::exists(&b, &dir()));
    assert!(matches!(
        log.append(BytesMut::from(&simple(1, 1, 5)[..]), 0),
        Err(StorageError::Offline(_))
    ));
    // Real files too.
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("t-3");
    let log = Log::open(Arc::new(FileBackend), &d, seg_cfg(400)).unwrap();
    fill(&log, 6, 1);
    log.close().unwrap();
    log.delete().unwrap();
    assert!(!d.exists());
}
