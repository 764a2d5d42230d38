//! Tests of lazily opened files and deferred syncs (many partitions opened or closed at once).

use super::*;
use crate::batch::test_util::simple;
use crate::{FileBackend, MemoryBackend};

fn dir() -> PathBuf {
    PathBuf::from("/data/lazy-0")
}

/// The small segments and dense index of the log tests.
fn cfg() -> LogConfig {
    super::tests::small_cfg()
}

fn fill(log: &Log, n: i64) {
    for i in 0..n {
        log.append(BytesMut::from(&simple(2, i, 40)[..]), 2)
            .unwrap();
    }
}

/// Paths under `root` that this process holds open.
fn open_files_under(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|p| p.starts_with(root))
        .collect()
}

#[test]
fn deferred_writes_of_a_log_with_records_are_synced_at_the_end() {
    let b = MemoryBackend::new();
    let log = Log::open(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    fill(&log, 20);
    log.flush().unwrap();
    let before = log.read(0, 1 << 20, i64::MAX).unwrap().data;
    drop(log); // unclean
    let epochs = dir().join(EPOCH_CHECKPOINT_FILE);
    b.remove_file(&epochs).unwrap();
    // The deferred open rebuilds the epoch checkpoint without syncing it...
    let log = Log::open_deferred(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    assert!(log.deferred_writes_pending());
    // ... until the deferral ends.
    log.end_deferred_sync().unwrap();
    assert!(!log.deferred_writes_pending());
    b.crash();
    assert_eq!(b.contents(&epochs).unwrap(), b"0\n1\n2 0\n");
    let log = Log::open(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(log.latest_epoch(), Some(2));
    assert_eq!(log.read(0, 1 << 20, i64::MAX).unwrap().data, before);
}

#[test]
fn deferred_open_after_clean_shutdown_writes_nothing_to_sync() {
    let b = MemoryBackend::new();
    let log = Log::open(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    fill(&log, 20);
    log.close().unwrap();
    let log = Log::open_deferred(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    assert!(log.opened_from_snapshot());
    assert!(!log.deferred_writes_pending());
    log.end_deferred_sync().unwrap();
    // The marker's removal was not synced; a crash brings it back, and it still matches.
    b.crash();
    let log = Log::open(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 40);
}

#[test]
fn closing_an_untouched_log_keeps_a_usable_snapshot() {
    let b = MemoryBackend::new();
    let log = Log::open(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    fill(&log, 20);
    let before = log.read(0, 1 << 20, i64::MAX).unwrap().data;
    log.close().unwrap();
    for _ in 0..2 {
        // Opened from the snapshot and closed without a write: nothing is flushed again,
        // and the next open still takes the fast path with the same contents.
        let log = Log::open(Arc::new(b.clone()), &dir(), cfg()).unwrap();
        assert!(log.opened_from_snapshot());
        log.close().unwrap();
        b.crash();
    }
    let log = Log::open(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    assert!(log.opened_from_snapshot());
    assert_eq!(log.recovery_point(), 40);
    assert_eq!(log.read(0, 1 << 20, i64::MAX).unwrap().data, before);
    assert_eq!(
        log.append(BytesMut::from(&simple(1, 1, 1)[..]), 2)
            .unwrap()
            .base_offset,
        40
    );
}

#[test]
fn a_new_log_needs_no_sync() {
    let b = MemoryBackend::new();
    let log = Log::open_deferred(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    log.assign_epoch(3).unwrap();
    // Nothing to keep: a lost epoch of an empty log is assigned again by its next leader.
    assert!(!log.deferred_writes_pending());
    log.end_deferred_sync().unwrap();
    b.crash();
    let log = Log::open(Arc::new(b.clone()), &dir(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    log.assign_epoch(3).unwrap();
    assert_eq!(
        log.append(BytesMut::from(&simple(1, 1, 1)[..]), 3)
            .unwrap()
            .base_offset,
        0
    );
}

#[test]
fn a_reopened_log_holds_no_file_open_until_used() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let d = root.join("t-0");
    let backend: Arc<dyn Backend> = Arc::new(FileBackend::new());
    let log = Log::open(backend.clone(), &d, cfg()).unwrap();
    fill(&log, 20);
    log.close().unwrap();
    drop(log);
    assert!(open_files_under(&root).is_empty());

    // Clean open (snapshot) and unclean open (scan) alike.
    for (end, clean) in [(40, true), (41, false)] {
        let log = Log::open(backend.clone(), &d, cfg()).unwrap();
        assert_eq!(log.opened_from_snapshot(), clean);
        assert_eq!(open_files_under(&root), Vec::<PathBuf>::new());
        assert_eq!(log.read(0, 1 << 20, i64::MAX).unwrap().log_end_offset, end);
        assert!(
            !open_files_under(&root).is_empty(),
            "read opened the segment"
        );
        log.append(BytesMut::from(&simple(1, 1, 1)[..]), 2).unwrap();
        if clean {
            drop(log); // unclean: no marker
        } else {
            log.close().unwrap();
        }
    }
    let log = Log::open(backend, &d, cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 42);
}
