//! The partition log: segments, indexes, append/read, flush, recovery and truncation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tracing::{debug, warn};

use crate::backend::{Backend, BackendFile, LazyFile};
use crate::batch::{self, BatchHeader};
use crate::epoch::EpochCache;
use crate::producer::{Check, ProducerStates};
use crate::scan::{Item, Scanner};
use crate::snapshot::{SegMeta, Snapshot};
use crate::{AppendInfo, LogConfig, ReadInfo, StorageError};

const RECOVERY_POINT_FILE: &str = "recovery-point";
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const LOG_START_FILE: &str = "log-start-offset";
const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const INDEX_ENTRY_LEN: usize = 8;
const TIME_ENTRY_LEN: usize = 12;

type Result<T> = std::result::Result<T, StorageError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    rel: u32,
    pos: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeEntry {
    ts: i64,
    rel: u32,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One segment as seen by readers and the writer.
struct Segment {
    base_offset: i64,
    log: Arc<dyn BackendFile>,
    path: PathBuf,
    /// Committed (fully written) bytes.
    size: u64,
    /// Offset after the last batch (`base_offset` when empty).
    next_offset: i64,
    /// Base offset of the first batch, if any.
    first_batch_offset: Option<i64>,
    index: Vec<IndexEntry>,
    time_index: Vec<TimeEntry>,
    /// Entries already written to the index files.
    index_written: usize,
    time_written: usize,
    bytes_since_index: u64,
    /// Largest batch max timestamp and the base offset of the first batch carrying it.
    max_ts: Option<(i64, i64)>,
    /// Wall-clock creation time (first append), for `segment_ms`.
    created_ms: Option<i64>,
}

impl Segment {
    fn new(base_offset: i64, log: Arc<dyn BackendFile>, path: PathBuf) -> Self {
        Segment {
            base_offset,
            log,
            path,
            size: 0,
            next_offset: base_offset,
            first_batch_offset: None,
            index: Vec::new(),
            time_index: Vec::new(),
            index_written: 0,
            time_written: 0,
            bytes_since_index: 0,
            max_ts: None,
            created_ms: None,
        }
    }

    /// Resets everything derived from the contents.
    fn reset(&mut self) {
        self.size = 0;
        self.next_offset = self.base_offset;
        self.first_batch_offset = None;
        self.index.clear();
        self.time_index.clear();
        self.index_written = 0;
        self.time_written = 0;
        self.bytes_since_index = 0;
        self.max_ts = None;
    }

    /// Byte position from which to scan for the batch containing `offset`.
    fn position_for(&self, offset: i64) -> u64 {
        let rel = offset - self.base_offset;
        let i = self.index.partition_point(|e| i64::from(e.rel) <= rel);
        match i.checked_sub(1).and_then(|i| self.index.get(i)) {
            Some(e) => u64::from(e.pos),
            None => 0,
        }
    }

    /// Offset from which no earlier record can have a timestamp `>= ts` (time index lookup).
    fn offset_before_timestamp(&self, ts: i64) -> i64 {
        let i = self.time_index.partition_point(|e| e.ts < ts);
        match i.checked_sub(1).and_then(|i| self.time_index.get(i)) {
            Some(e) => self.base_offset + i64::from(e.rel),
            None => self.base_offset,
        }
    }

    /// Accounts for batch `h` (already holding its final offsets) stored at `pos`:
    /// sparse index entries, size, offsets and timestamps.
    fn on_batch(&mut self, h: &BatchHeader, pos: u64, cfg: &LogConfig) {
        let rel = u32::try_from(h.base_offset - self.base_offset).ok();
        let pos32 = u32::try_from(pos).ok();
        let max_idx = (cfg.segment_index_bytes as usize / INDEX_ENTRY_LEN).max(1);
        let max_time = (cfg.segment_index_bytes as usize / TIME_ENTRY_LEN).max(1);
        if self.bytes_since_index >= u64::from(cfg.index_interval_bytes) {
            if let (Some(rel), Some(pos32)) = (rel, pos32) {
                let grows = self
                    .index
                    .last()
                    .is_none_or(|l| rel > l.rel && pos32 > l.pos);
                if grows && self.index.len() < max_idx {
                    self.index.push(IndexEntry { rel, pos: pos32 });
                    if let Some((ts, _)) = self.max_ts {
                        let ts_grows = self.time_index.last().is_none_or(|l| ts > l.ts);
                        if ts_grows && self.time_index.len() < max_time {
                            self.time_index.push(TimeEntry { ts, rel });
                        }
                    }
                    self.bytes_since_index = 0;
                }
            }
        }
        let total = h.total_len() as u64;
        self.bytes_since_index += total;
        self.size = pos + total;
        self.next_offset = h.next_offset();
        if self.first_batch_offset.is_none() {
            self.first_batch_offset = Some(h.base_offset);
        }
        if self.max_ts.is_none_or(|(t, _)| h.max_timestamp > t) {
            self.max_ts = Some((h.max_timestamp, h.base_offset));
        }
    }

    fn index_full(&self, cfg: &LogConfig) -> bool {
        let max_idx = (cfg.segment_index_bytes as usize / INDEX_ENTRY_LEN).max(1);
        let max_time = (cfg.segment_index_bytes as usize / TIME_ENTRY_LEN).max(1);
        self.index.len() >= max_idx || self.time_index.len() >= max_time
    }

    fn index_bytes(&self, from: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.index.len().saturating_sub(from) * INDEX_ENTRY_LEN);
        for e in self.index.iter().skip(from) {
            out.extend_from_slice(&e.rel.to_be_bytes());
            out.extend_from_slice(&e.pos.to_be_bytes());
        }
        out
    }

    fn time_bytes(&self, from: usize) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.time_index.len().saturating_sub(from) * TIME_ENTRY_LEN);
        for e in self.time_index.iter().skip(from) {
            out.extend_from_slice(&e.ts.to_be_bytes());
            out.extend_from_slice(&e.rel.to_be_bytes());
        }
        out
    }
}

/// What readers see.
struct View {
    segments: Vec<Segment>,
    log_start: i64,
    log_end: i64,
}

impl View {
    /// Index of the last segment whose base offset is `<= offset`.
    fn find(&self, offset: i64) -> Option<usize> {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .checked_sub(1)
    }

    fn by_base(&self, base: i64) -> Option<usize> {
        self.segments
            .binary_search_by_key(&base, |s| s.base_offset)
            .ok()
    }
}

/// Cached index file handles of the active segment.
struct IndexFiles {
    base: i64,
    index: Arc<dyn BackendFile>,
    time: Arc<dyn BackendFile>,
}

/// State owned by the (serialized) writer.
struct Writer {
    producers: ProducerStates,
    epochs: EpochCache,
    unflushed_messages: u64,
    last_flush: Instant,
    recovery_point: i64,
    persisted_recovery_point: Option<i64>,
    /// Base offsets of rolled segments whose data is not yet synced.
    unsynced: Vec<i64>,
    /// A segment was created since the directory was last synced. A roll does not sync the
    /// directory itself (that fsync can wait for the writeback of everything dirty, and a
    /// roll happens inside an append); the next flush does, before it moves the recovery
    /// point past the new segment.
    dir_unsynced: bool,
    active_index: Option<IndexFiles>,
    offline: Option<String>,
}

impl Writer {
    fn check_writable(&self) -> Result<()> {
        match &self.offline {
            Some(r) => Err(StorageError::Offline(r.clone())),
            None => Ok(()),
        }
    }
}

/// A single partition's log. See the crate documentation for the on-disk format.
///
/// `Log` is `Send + Sync`; every method takes `&self`.
pub struct Log {
    backend: Arc<dyn Backend>,
    dir: PathBuf,
    config: RwLock<LogConfig>,
    writer: Mutex<Writer>,
    /// Serializes the log-maintenance operations (retention, DeleteRecords, compaction,
    /// truncation) against each other; appends and reads never take it. Always taken
    /// before the writer lock.
    maintenance: Mutex<()>,
    view: RwLock<View>,
    clean_open: bool,
    snapshot_loaded: AtomicBool,
    /// While set, small-file writes, index rebuilds and the clean-shutdown marker's removal
    /// skip their fsyncs (see [`Log::open_deferred`]).
    defer_sync: AtomicBool,
    /// Files written without their fsync while `defer_sync` was set.
    deferred_files: Mutex<Vec<PathBuf>>,
}

fn seg_file(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Snapshot of a segment taken under the read lock.
struct SegSnap {
    file: Arc<dyn BackendFile>,
    path: PathBuf,
    size: u64,
    pos: u64,
}

impl Log {
    fn read_view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_view(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        lock(&self.writer)
    }

    fn lock_maintenance(&self) -> MutexGuard<'_, ()> {
        lock(&self.maintenance)
    }

    /// A copy of the current configuration.
    fn cfg(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the configuration used from now on (segment size and age, index interval and
    /// size, flush policy). Existing segments, their indexes and unflushed data are left as
    /// they are; the new values apply from the next append, roll or flush check.
    pub fn set_config(&self, config: LogConfig) {
        let _w = self.lock_writer();
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The configuration currently in use.
    pub fn config(&self) -> LogConfig {
        self.cfg()
    }

    fn path(&self, base: i64, ext: &str) -> PathBuf {
        seg_file(&self.dir, base, ext)
    }

    fn open_file(&self, path: &Path, create: bool) -> Result<Arc<dyn BackendFile>> {
        self.backend
            .open(path, create)
            .map(Arc::from)
            .map_err(|e| StorageError::io(path, e))
    }

    fn deferred(&self) -> bool {
        self.defer_sync.load(Ordering::Relaxed)
    }

    /// Directory fsync, unless syncs are deferred.
    fn sync_dir(&self) -> Result<()> {
        if self.deferred() {
            return Ok(());
        }
        self.backend
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))
    }

    /// A lazily opened handle on `path`, creating the (empty) file first if it is missing.
    fn lazy_file(&self, path: &Path) -> Result<Arc<dyn BackendFile>> {
        if !self.backend.exists(path) {
            drop(self.open_file(path, true)?);
        }
        Ok(Arc::new(LazyFile::new(
            self.backend.clone(),
            path.to_path_buf(),
        )))
    }

    /// Writes a small file atomically (temp file, fsync, rename, directory fsync; the fsyncs
    /// left to the caller while syncs are deferred).
    fn write_file_atomic(&self, name: &str, data: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let dst = self.dir.join(name);
        let io = |e| StorageError::io(&tmp, e);
        let f = self.backend.open(&tmp, true).map_err(io)?;
        f.set_len(0).map_err(io)?;
        f.write_all_at(data, 0).map_err(io)?;
        if self.deferred() {
            lock(&self.deferred_files).push(dst.clone());
        } else {
            f.sync().map_err(io)?;
        }
        drop(f);
        self.backend
            .rename(&tmp, &dst)
            .map_err(|e| StorageError::io(&dst, e))?;
        self.sync_dir()
    }

    fn read_small_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(name);
        if !self.backend.exists(&path) {
            return Ok(None);
        }
        let f = self.open_file(&path, false)?;
        let len = f.len().map_err(|e| StorageError::io(&path, e))?;
        let mut buf = vec![0u8; usize::try_from(len.min(1 << 24)).unwrap_or(0)];
        let n = f
            .read_full_at(&mut buf, 0)
            .map_err(|e| StorageError::io(&path, e))?;
        buf.truncate(n);
        Ok(Some(buf))
    }

    fn read_offset_file(&self, name: &str) -> Result<Option<i64>> {
        let Some(data) = self.read_small_file(name)? else {
            return Ok(None);
        };
        let parsed = std::str::from_utf8(&data).ok().and_then(|t| {
            let mut lines = t.lines();
            (lines.next()?.trim() == "0").then_some(())?;
            lines.next()?.trim().parse::<i64>().ok()
        });
        if parsed.is_none() {
            warn!(dir = %self.dir.display(), file = name, "ignoring malformed checkpoint file");
        }
        Ok(parsed)
    }

    fn write_offset_file(&self, name: &str, offset: i64) -> Result<()> {
        self.write_file_atomic(name, format!("0\n{offset}\n").as_bytes())
    }

    // ------------------------------------------------------------------ open / recovery

    /// Opens (creating if missing) the partition directory `dir` and recovers it.
    ///
    /// See the crate documentation for the recovery rules. Fails with
    /// [`StorageError::Corrupt`] if data before the recovery point is damaged.
    pub fn open(backend: Arc<dyn Backend>, dir: &Path, config: LogConfig) -> Result<Log> {
        Self::open_with(backend, dir, config, false)
    }

    /// [`Log::open`] without fsyncs until [`Log::end_deferred_sync`], which does the ones
    /// still needed: a caller opening many partitions at once runs those on many threads (and
    /// most need none, see [`Log::deferred_writes_pending`]).
    ///
    /// The removal of the clean-shutdown marker is never waited for: a marker that survives
    /// a crash is harmless, because its snapshot is used only if every segment still has
    /// exactly the size it records (else the log is scanned from the recovery point, and
    /// data below the recovery point was fsynced before it was recorded).
    pub fn open_deferred(backend: Arc<dyn Backend>, dir: &Path, config: LogConfig) -> Result<Log> {
        Self::open_with(backend, dir, config, true)
    }

    /// Whether writes skipped their fsyncs (since [`Log::open_deferred`]) that must be made
    /// durable. False for a log that holds no record yet: everything such a log wrote (empty
    /// index files, an epoch checkpoint) is recreated as it was if lost, so creating
    /// thousands of partitions needs no sync at all (the metadata log holds them).
    pub fn deferred_writes_pending(&self) -> bool {
        !lock(&self.deferred_files).is_empty() && self.log_end_offset() > 0
    }

    /// Defers the fsyncs of small-file writes (such as the leader-epoch checkpoint a new
    /// leader epoch writes) until [`Log::end_deferred_sync`], as [`Log::open_deferred`] does.
    pub fn begin_deferred_sync(&self) {
        self.defer_sync.store(true, Ordering::Relaxed);
    }

    /// Ends deferred syncs: fsyncs the files written meanwhile and the directory, when
    /// [`Log::deferred_writes_pending`]; later writes fsync as usual.
    pub fn end_deferred_sync(&self) -> Result<()> {
        let pending = self.deferred_writes_pending();
        self.defer_sync.store(false, Ordering::Relaxed);
        let files = std::mem::take(&mut *lock(&self.deferred_files));
        if !pending {
            return Ok(());
        }
        for path in files {
            if self.backend.exists(&path) {
                let f = self.open_file(&path, false)?;
                f.sync().map_err(|e| StorageError::io(&path, e))?;
            }
        }
        self.sync_dir()
    }

    fn open_with(
        backend: Arc<dyn Backend>,
        dir: &Path,
        config: LogConfig,
        defer_sync: bool,
    ) -> Result<Log> {
        backend
            .create_dir_all(dir)
            .map_err(|e| StorageError::io(dir, e))?;
        let clean = backend.exists(&dir.join(CLEAN_SHUTDOWN_FILE));
        let log = Log {
            backend,
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            writer: Mutex::new(Writer {
                producers: ProducerStates::default(),
                epochs: EpochCache::default(),
                unflushed_messages: 0,
                last_flush: Instant::now(),
                recovery_point: 0,
                persisted_recovery_point: None,
                unsynced: Vec::new(),
                dir_unsynced: false,
                active_index: None,
                offline: None,
            }),
            view: RwLock::new(View {
                segments: Vec::new(),
                log_start: 0,
                log_end: 0,
            }),
            clean_open: clean,
            snapshot_loaded: AtomicBool::new(false),
            maintenance: Mutex::new(()),
            defer_sync: AtomicBool::new(defer_sync),
            deferred_files: Mutex::new(Vec::new()),
        };
        log.recover(clean)?;
        Ok(log)
    }

    fn list_segments(&self) -> Result<(Vec<i64>, Vec<PathBuf>)> {
        let entries = self
            .backend
            .list_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        for p in entries {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                if let Err(e) = self.backend.remove_file(&p) {
                    warn!(path = %p.display(), error = %e, "cannot remove temporary file");
                }
                continue;
            }
            let parse = |stem: &str| {
                (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| stem.parse::<i64>().ok())
                    .flatten()
            };
            if let Some(base) = name.strip_suffix(".log").and_then(parse) {
                bases.push(base);
            } else if name
                .strip_suffix(".index")
                .or_else(|| name.strip_suffix(".timeindex"))
                .and_then(parse)
                .is_some()
            {
                index_files.push(p);
            }
        }
        bases.sort_unstable();
        bases.dedup();
        Ok((bases, index_files))
    }

    fn remove_segment_files(&self, base: i64) -> Result<()> {
        for ext in ["log", "index", "timeindex"] {
            let p = self.path(base, ext);
            if self.backend.exists(&p) {
                self.backend
                    .remove_file(&p)
                    .map_err(|e| StorageError::io(&p, e))?;
            }
        }
        Ok(())
    }

    fn recover(&self, clean: bool) -> Result<()> {
        let swapped = self.recover_swaps()?;
        // Offset gaps left by compaction are legal below the cleaner checkpoint.
        let cleaned_upto = self
            .read_cleaner_checkpoint()?
            .map_or(i64::MIN, |c| c.first_dirty);
        let (bases, index_files) = self.list_segments()?;
        let persisted_recovery_point = self.read_offset_file(RECOVERY_POINT_FILE)?;
        let recovery_point = persisted_recovery_point.unwrap_or(0);
        let start_file = self.read_offset_file(LOG_START_FILE)?;
        let mut epochs = match self.read_small_file(EPOCH_CHECKPOINT_FILE)? {
            Some(d) => EpochCache::parse(&d).unwrap_or_else(|| {
                warn!(dir = %self.dir.display(), "malformed leader-epoch-checkpoint; rebuilding");
                EpochCache::new_dirty()
            }),
            None => EpochCache::new_dirty(),
        };
        let snapshot = if clean && !epochs.dirty && !swapped {
            self.load_snapshot(&bases)?
        } else {
            None
        };
        let fast = snapshot.is_some();
        self.snapshot_loaded.store(fast, Ordering::Relaxed);
        let (mut segments, producers) = match snapshot {
            Some(x) => x,
            None => {
                let (mut segments, producers) =
                    self.scan_segments(&bases, clean, recovery_point, cleaned_upto, &mut epochs)?;
                // Scanned: hold no descriptor until the segment is used again.
                for seg in &mut segments {
                    seg.log = Arc::new(LazyFile::new(self.backend.clone(), seg.path.clone()));
                }
                (segments, producers)
            }
        };
        // Orphan index files.
        for p in index_files {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let has_log = stem
                .parse::<i64>()
                .is_ok_and(|b| segments.iter().any(|s| s.base_offset == b));
            if !has_log {
                if let Err(e) = self.backend.remove_file(&p) {
                    warn!(path = %p.display(), error = %e, "cannot remove orphan index file");
                }
            }
        }
        if segments.is_empty() {
            let base = start_file.unwrap_or(0).max(0);
            let path = self.path(base, "log");
            let file = self.lazy_file(&path)?;
            segments.push(Segment::new(base, file, path));
        }
        if !fast {
            for seg in &mut segments {
                self.reconcile_index(seg)?;
            }
        }
        let active_base = segments.last().map(|s| s.base_offset).unwrap_or(0);
        let log_end = segments.last().map(|s| s.next_offset).unwrap_or(0);
        // The first segment's base offset (not its first batch: compaction may have removed
        // the first batches without moving the log start).
        let first = segments.first().map(|s| s.base_offset).unwrap_or(0);
        let log_start = start_file.map_or(first, |f| f.max(first)).min(log_end);
        if recovery_point > log_end {
            warn!(dir = %self.dir.display(), recovery_point, log_end, "log ends before its recovery point");
        }
        epochs.truncate_from_end(log_end, false);
        if clean {
            let p = self.dir.join(CLEAN_SHUTDOWN_FILE);
            self.backend
                .remove_file(&p)
                .map_err(|e| StorageError::io(&p, e))?;
            self.sync_dir()?;
        }
        // Rolled segments holding data beyond the recovery point may not be durable yet.
        let unsynced: Vec<i64> = segments
            .iter()
            .take(segments.len().saturating_sub(1))
            .filter(|s| s.next_offset > recovery_point)
            .map(|s| s.base_offset)
            .collect();
        let active_index = IndexFiles {
            base: active_base,
            index: self.lazy_file(&self.path(active_base, "index"))?,
            time: self.lazy_file(&self.path(active_base, "timeindex"))?,
        };
        {
            let mut v = self.write_view();
            v.segments = segments;
            v.log_start = log_start;
            v.log_end = log_end;
        }
        let mut w = self.lock_writer();
        w.producers = producers;
        w.recovery_point = recovery_point.min(log_end);
        // What the file says (read just now), so a close with nothing new to flush need not
        // rewrite it.
        w.persisted_recovery_point = persisted_recovery_point.filter(|r| *r <= log_end);
        if recovery_point > log_end {
            // Never leave a recovery point beyond the data: new appends would be
            // mistaken for flushed data on the next recovery.
            self.write_offset_file(RECOVERY_POINT_FILE, log_end)?;
            w.persisted_recovery_point = Some(log_end);
        }
        w.active_index = Some(active_index);
        w.unsynced = unsynced;
        if epochs.dirty {
            self.write_file_atomic(EPOCH_CHECKPOINT_FILE, &epochs.serialize())?;
            epochs.dirty = false;
        }
        w.epochs = epochs;
        debug!(dir = %self.dir.display(), log_start, log_end, clean, fast, "log opened");
        Ok(())
    }

    /// Loads the clean-shutdown snapshot if it matches the directory exactly (segment list,
    /// file sizes, index files); `None` means "scan instead".
    fn load_snapshot(&self, bases: &[i64]) -> Result<Option<(Vec<Segment>, ProducerStates)>> {
        let Some(data) = self.read_small_file(CLEAN_SHUTDOWN_FILE)? else {
            return Ok(None);
        };
        let Some(snap) = Snapshot::decode(&data) else {
            if !data.is_empty() {
                warn!(dir = %self.dir.display(), "ignoring malformed clean-shutdown snapshot");
            }
            return Ok(None);
        };
        if snap.segments.len() != bases.len()
            || snap.segments.iter().zip(bases).any(|(m, b)| m.base != *b)
        {
            return Ok(None);
        }
        let mut segments = Vec::with_capacity(bases.len());
        let mut expected = None;
        for m in &snap.segments {
            // Segments may be separated by gaps left by compaction, never overlap.
            if expected.is_some_and(|e| e > m.base) || m.next_offset < m.base {
                return Ok(None);
            }
            expected = Some(m.next_offset);
            let path = self.path(m.base, "log");
            let len = self
                .backend
                .file_len(&path)
                .map_err(|e| StorageError::io(&path, e))?;
            if len != m.size {
                return Ok(None);
            }
            let file: Arc<dyn BackendFile> =
                Arc::new(LazyFile::new(self.backend.clone(), path.clone()));
            let mut seg = Segment::new(m.base, file, path);
            seg.size = m.size;
            seg.next_offset = m.next_offset;
            seg.first_batch_offset = m.first_batch_offset;
            seg.max_ts = m.max_ts;
            seg.bytes_since_index = m.bytes_since_index;
            seg.created_ms = m.created_ms;
            let Some(index) =
                self.read_entries(m.base, "index", m.index_entries, INDEX_ENTRY_LEN)?
            else {
                return Ok(None);
            };
            let Some(time) =
                self.read_entries(m.base, "timeindex", m.time_entries, TIME_ENTRY_LEN)?
            else {
                return Ok(None);
            };
            let max_rel = m.next_offset - m.base;
            for c in index.chunks_exact(INDEX_ENTRY_LEN) {
                let rel = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                let pos = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
                let ok = i64::from(rel) < max_rel
                    && u64::from(pos) < m.size
                    && seg.index.last().is_none_or(|l| rel > l.rel && pos > l.pos);
                if !ok {
                    return Ok(None);
                }
                seg.index.push(IndexEntry { rel, pos });
            }
            for c in time.chunks_exact(TIME_ENTRY_LEN) {
                let ts = i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                let rel = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
                let ok = i64::from(rel) < max_rel
                    && seg
                        .time_index
                        .last()
                        .is_none_or(|l| ts > l.ts && rel >= l.rel);
                if !ok {
                    return Ok(None);
                }
                seg.time_index.push(TimeEntry { ts, rel });
            }
            seg.index_written = seg.index.len();
            seg.time_written = seg.time_index.len();
            segments.push(seg);
        }
        Ok(Some((
            segments,
            ProducerStates::from_entries(snap.producers),
        )))
    }

    /// Reads an index file that must hold exactly `count` entries of `entry_len` bytes.
    fn read_entries(
        &self,
        base: i64,
        ext: &str,
        count: u64,
        entry_len: usize,
    ) -> Result<Option<Vec<u8>>> {
        let path = self.path(base, ext);
        if !self.backend.exists(&path) {
            return Ok(None);
        }
        let io = |e| StorageError::io(&path, e);
        let f = self.open_file(&path, false)?;
        let len = f.len().map_err(io)?;
        if Some(len) != count.checked_mul(entry_len as u64) {
            return Ok(None);
        }
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        if f.read_full_at(&mut buf, 0).map_err(io)? != buf.len() {
            return Ok(None);
        }
        Ok(Some(buf))
    }

    /// Scans every segment (see the crate docs for the rules), truncating a torn tail.
    fn scan_segments(
        &self,
        bases: &[i64],
        clean: bool,
        recovery_point: i64,
        cleaned_upto: i64,
        epochs: &mut EpochCache,
    ) -> Result<(Vec<Segment>, ProducerStates)> {
        let mut producers = ProducerStates::default();
        let mut segments: Vec<Segment> = Vec::new();
        let mut expected = i64::MIN;
        let mut cut_rest = false;
        let now = now_ms();
        let cfg = self.cfg();
        for (i, &base) in bases.iter().enumerate() {
            // After a clean shutdown only batches beyond the recovery point are validated;
            // otherwise (like Kafka) every batch of the segment containing the recovery point
            // and of all later segments is.
            let next_base = bases.get(i + 1).copied();
            let validate_all = !clean && next_base.is_none_or(|nb| nb > recovery_point);
            if cut_rest {
                warn!(dir = %self.dir.display(), base, "deleting segment after torn tail");
                self.remove_segment_files(base)?;
                continue;
            }
            let path = self.path(base, "log");
            let file = self.open_file(&path, false)?;
            let len = file.len().map_err(|e| StorageError::io(&path, e))?;
            let mut seg = Segment::new(base, file.clone(), path.clone());
            let cleaner_gap = base > expected && base <= cleaned_upto;
            if expected != i64::MIN && base != expected && !cleaner_gap {
                // A segment must continue exactly where the previous one ends; anything
                // else means the previous segment lost its (unflushed) tail.
                let reason =
                    format!("segment base {base} does not continue previous end {expected}");
                if expected < recovery_point {
                    return Err(StorageError::Corrupt {
                        file: path,
                        position: 0,
                        reason,
                    });
                }
                warn!(file = %path.display(), %reason, "deleting segments after torn tail");
                self.remove_segment_files(base)?;
                cut_rest = true;
                continue;
            }
            let mut sc = Scanner::new(&*file, 0, len);
            loop {
                let item = sc
                    .next(|h| validate_all || h.last_offset() >= recovery_point)
                    .map_err(|e| StorageError::io(&path, e))?;
                let (pos, reason) = match item {
                    Item::End => break,
                    Item::Batch { pos, header } => {
                        let cleaner_gap = header.base_offset > seg.next_offset
                            && header.base_offset <= cleaned_upto;
                        if header.base_offset != seg.next_offset && !cleaner_gap {
                            (
                                pos,
                                format!(
                                    "batch offset {} where {} was expected",
                                    header.base_offset, seg.next_offset
                                ),
                            )
                        } else {
                            seg.on_batch(&header, pos, &cfg);
                            if seg.created_ms.is_none() {
                                seg.created_ms = Some(if header.max_timestamp > 0 {
                                    header.max_timestamp
                                } else {
                                    now
                                });
                            }
                            producers.replay(&header);
                            epochs.assign(header.partition_leader_epoch, header.base_offset);
                            continue;
                        }
                    }
                    Item::Bad { pos, reason } => (pos, reason),
                };
                if seg.next_offset < recovery_point {
                    return Err(StorageError::Corrupt {
                        file: path,
                        position: pos,
                        reason,
                    });
                }
                warn!(file = %path.display(), position = pos, %reason, "truncating torn log tail");
                file.set_len(pos).map_err(|e| StorageError::io(&path, e))?;
                file.sync().map_err(|e| StorageError::io(&path, e))?;
                cut_rest = true;
                break;
            }
            expected = seg.next_offset;
            segments.push(seg);
        }
        Ok((segments, producers))
    }

    /// Makes the index files of `seg` match its in-memory indexes, rewriting them if needed.
    fn reconcile_index(&self, seg: &mut Segment) -> Result<()> {
        let wanted = [
            (self.path(seg.base_offset, "index"), seg.index_bytes(0)),
            (self.path(seg.base_offset, "timeindex"), seg.time_bytes(0)),
        ];
        for (path, want) in wanted {
            let io = |e| StorageError::io(&path, e);
            let matches = match self.backend.open(&path, false) {
                Ok(f) => {
                    let len = f.len().map_err(io)?;
                    if len == want.len() as u64 {
                        let mut have = vec![0u8; want.len()];
                        let n = f.read_full_at(&mut have, 0).map_err(io)?;
                        n == want.len() && have == want
                    } else {
                        false
                    }
                }
                Err(_) => false,
            };
            if !matches {
                debug!(path = %path.display(), "rebuilding index file");
                let f = self.backend.open(&path, true).map_err(io)?;
                f.set_len(0).map_err(io)?;
                f.write_all_at(&want, 0).map_err(io)?;
                if self.deferred() {
                    lock(&self.deferred_files).push(path.clone());
                } else {
                    f.sync().map_err(io)?;
                }
            }
        }
        seg.index_written = seg.index.len();
        seg.time_written = seg.time_index.len();
        Ok(())
    }

    // ------------------------------------------------------------------ append

    /// Appends one or more v2 batches (the records of a Produce request).
    ///
    /// Every batch is validated (length, magic 2, CRC-32C, offset deltas, at least one
    /// record) and checked against the idempotent producer state before anything is written;
    /// any failure rejects the whole append. Offsets are assigned from the log end by
    /// patching `baseOffset`, and `partitionLeaderEpoch` is set to `leader_epoch`. If every
    /// batch is a retry of a recently appended batch of the same producer, nothing is
    /// written and the original offsets are returned with `duplicate = true`.
    pub fn append(&self, batches: BytesMut, leader_epoch: i32) -> Result<AppendInfo> {
        self.append_checked(&batch::Checked::new(batches.freeze())?, leader_epoch)
    }

    /// [`Log::append`] of batches already checked by [`batch::Checked::new`]: their CRCs are
    /// not computed again, and their bytes go to the file as received, with only each
    /// batch's offset/epoch prefix rewritten (one vectored write).
    pub fn append_checked(
        &self,
        batches: &batch::Checked,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        let parts = batches.parts();
        if parts.is_empty() {
            return Err(StorageError::InvalidRecord(
                "append contains no record batch".into(),
            ));
        }
        if parts.iter().any(|(h, _)| h.records_count == 0) {
            return Err(StorageError::InvalidRecord(
                "record batch contains no records".into(),
            ));
        }
        let mut w = self.lock_writer();
        w.check_writable()?;
        let (log_start, log_end) = {
            let v = self.read_view();
            (v.log_start, v.log_end)
        };

        // Idempotence checks against a staged copy of the producer state.
        let mut pending = HashMap::new();
        let mut next = log_end;
        let mut dup: Option<(i64, i64)> = None;
        let mut dups = 0usize;
        let mut max_timestamp = i64::MIN;
        let mut record_count = 0i64;
        for (h, _) in parts {
            match w.producers.check(&mut pending, h, next)? {
                Check::Append => next += i64::from(h.last_offset_delta) + 1,
                Check::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    dups += 1;
                    dup = Some((dup.map_or(base_offset, |d| d.0), last_offset));
                }
            }
            max_timestamp = max_timestamp.max(h.max_timestamp);
            record_count += i64::from(h.records_count);
        }
        if let Some((base_offset, last_offset)) = dup {
            if dups == parts.len() {
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    max_timestamp,
                    record_count,
                    duplicate: true,
                    log_start_offset: log_start,
                });
            }
            return Err(StorageError::InvalidRecord(
                "append mixes duplicate and new batches of an idempotent producer".into(),
            ));
        }

        // Assign offsets by rewriting each batch's prefix (not covered by the CRC).
        let mut headers = Vec::with_capacity(parts.len());
        let mut prefixes = Vec::with_capacity(parts.len());
        let mut off = log_end;
        let mut rel = 0u64;
        for (h, range) in parts {
            let original = batches.data().get(range.clone()).unwrap_or(&[]);
            prefixes.push(batch::patched_prefix(original, off, leader_epoch));
            let mut h = *h;
            h.base_offset = off;
            h.partition_leader_epoch = leader_epoch;
            headers.push((h, rel));
            rel += h.total_len() as u64;
            off = h.next_offset();
        }
        let mut pieces: Vec<&[u8]> = Vec::with_capacity(2 * parts.len());
        for ((_, range), prefix) in parts.iter().zip(&prefixes) {
            let Some(rest) = batches.after_prefix(range) else {
                return Err(StorageError::CorruptBatch(
                    "batch range out of bounds".into(),
                ));
            };
            pieces.push(prefix);
            pieces.push(rest);
        }
        self.write_batches_locked(&mut w, &pieces, &headers, next)?;
        w.producers.commit(pending);
        w.epochs.assign(leader_epoch, log_end);
        self.apply_flush_policy(&mut w, record_count)?;
        Ok(AppendInfo {
            base_offset: log_end,
            last_offset: next - 1,
            max_timestamp,
            record_count,
            duplicate: false,
            log_start_offset: log_start,
        })
    }

    /// The write half of every append: rolls the segment if needed, writes `batches` at the
    /// end of the active segment and publishes them (indexes, log end = `next`). `headers`
    /// are the batches' headers with their positions in `batches`. The caller holds the
    /// writer lock, then updates producer state and epochs and calls
    /// [`Log::apply_flush_policy`].
    fn write_batches_locked(
        &self,
        w: &mut Writer,
        pieces: &[&[u8]],
        headers: &[(BatchHeader, u64)],
        next: i64,
    ) -> Result<()> {
        let now = now_ms();
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        self.maybe_roll(w, len, next - 1, now)?;

        // Write outside the view lock; readers keep going.
        let (file, path, pos) = {
            let v = self.read_view();
            let a = v.segments.last().ok_or_else(no_segment)?;
            (a.log.clone(), a.path.clone(), a.size)
        };
        if let Err(e) = file.write_all_vectored_at(pieces, pos) {
            // Best effort: drop the partial write (readers never see it anyway).
            let _ = file.set_len(pos);
            return Err(StorageError::io(path, e));
        }

        // Publish.
        let cfg = self.cfg();
        {
            let mut v = self.write_view();
            let Some(seg) = v.segments.last_mut() else {
                return Err(no_segment());
            };
            if seg.created_ms.is_none() {
                seg.created_ms = Some(now);
            }
            for (h, rel_pos) in headers {
                seg.on_batch(h, pos + rel_pos, &cfg);
            }
            v.log_end = next;
        }
        Ok(())
    }

    /// Counts `record_count` unflushed records and fsyncs when `flush.messages` or
    /// `flush.ms` says so.
    fn apply_flush_policy(&self, w: &mut Writer, record_count: i64) -> Result<()> {
        let cfg = self.cfg();
        w.unflushed_messages += u64::try_from(record_count).unwrap_or(0);
        let due_messages = cfg
            .flush_messages
            .is_some_and(|n| w.unflushed_messages >= n);
        let due_time = cfg
            .flush_ms
            .is_some_and(|ms| w.last_flush.elapsed() >= Duration::from_millis(ms));
        if due_messages || due_time {
            self.flush_locked(w, false)?;
        }
        Ok(())
    }

    fn maybe_roll(&self, w: &mut Writer, add: u64, last_offset: i64, now: i64) -> Result<()> {
        let new_base = {
            let v = self.read_view();
            let a = v.segments.last().ok_or_else(no_segment)?;
            if a.size == 0 {
                return Ok(());
            }
            let cfg = self.cfg();
            let max_size = cfg.segment_bytes.min(u64::from(u32::MAX));
            let too_big = a.size + add > max_size;
            let too_old = match (cfg.segment_ms, a.created_ms) {
                (Some(ms), Some(c)) => {
                    now.saturating_sub(c) >= i64::try_from(ms).unwrap_or(i64::MAX)
                }
                _ => false,
            };
            let offsets_overflow = last_offset - a.base_offset > i64::from(i32::MAX);
            if !(too_big || too_old || offsets_overflow || a.index_full(&cfg)) {
                return Ok(());
            }
            v.log_end
        };
        self.roll_locked(w, new_base)
    }

    fn roll_locked(&self, w: &mut Writer, new_base: i64) -> Result<()> {
        let path = self.path(new_base, "log");
        let file = self.open_file(&path, true)?;
        file.set_len(0).map_err(|e| StorageError::io(&path, e))?;
        let mut files = Vec::new();
        for ext in ["index", "timeindex"] {
            let p = self.path(new_base, ext);
            let f = self.open_file(&p, true)?;
            f.set_len(0).map_err(|e| StorageError::io(&p, e))?;
            files.push(f);
        }
        let time = files.pop().ok_or_else(no_segment)?;
        let index = files.pop().ok_or_else(no_segment)?;
        w.dir_unsynced = true;
        let old = {
            let mut v = self.write_view();
            let old = v.segments.last().map(|s| s.base_offset);
            v.segments.push(Segment::new(new_base, file, path));
            old
        };
        if let Some(old) = old {
            w.unsynced.push(old);
        }
        w.active_index = Some(IndexFiles {
            base: new_base,
            index,
            time,
        });
        debug!(dir = %self.dir.display(), new_base, "rolled segment");
        Ok(())
    }

    // ------------------------------------------------------------------ flush

    fn flush_locked(&self, w: &mut Writer, checkpoint: bool) -> Result<()> {
        struct Target {
            base: i64,
            log: Arc<dyn BackendFile>,
            path: PathBuf,
            index: Vec<u8>,
            index_from: usize,
            index_to: usize,
            time: Vec<u8>,
            time_from: usize,
            time_to: usize,
        }
        let (targets, log_end) = {
            let v = self.read_view();
            let mut bases = w.unsynced.clone();
            if let Some(a) = v.segments.last() {
                bases.push(a.base_offset);
            }
            let mut t = Vec::new();
            for b in bases {
                let Some(i) = v.by_base(b) else { continue };
                let Some(s) = v.segments.get(i) else { continue };
                t.push(Target {
                    base: b,
                    log: s.log.clone(),
                    path: s.path.clone(),
                    index: s.index_bytes(s.index_written),
                    index_from: s.index_written,
                    index_to: s.index.len(),
                    time: s.time_bytes(s.time_written),
                    time_from: s.time_written,
                    time_to: s.time_index.len(),
                });
            }
            (t, v.log_end)
        };
        for t in &targets {
            let (index, time) = match &w.active_index {
                Some(f) if f.base == t.base => (f.index.clone(), f.time.clone()),
                _ => (
                    self.open_file(&self.path(t.base, "index"), true)?,
                    self.open_file(&self.path(t.base, "timeindex"), true)?,
                ),
            };
            let ipath = self.path(t.base, "index");
            let tpath = self.path(t.base, "timeindex");
            if !t.index.is_empty() {
                index
                    .write_all_at(&t.index, (t.index_from * INDEX_ENTRY_LEN) as u64)
                    .map_err(|e| StorageError::io(&ipath, e))?;
            }
            if !t.time.is_empty() {
                time.write_all_at(&t.time, (t.time_from * TIME_ENTRY_LEN) as u64)
                    .map_err(|e| StorageError::io(&tpath, e))?;
            }
            for (f, p) in [(&t.log, &t.path), (&index, &ipath), (&time, &tpath)] {
                if let Err(e) = f.sync() {
                    // Durability of written data is now unknown (fsyncgate): stop writing.
                    let reason = format!("fsync of {} failed: {e}", p.display());
                    warn!(%reason, "taking log offline");
                    w.offline = Some(reason);
                    return Err(StorageError::io(p, e));
                }
            }
        }
        if w.dir_unsynced {
            if let Err(e) = self.backend.sync_dir(&self.dir) {
                let reason = format!("fsync of {} failed: {e}", self.dir.display());
                warn!(%reason, "taking log offline");
                w.offline = Some(reason);
                return Err(StorageError::io(&self.dir, e));
            }
            w.dir_unsynced = false;
        }
        {
            let mut v = self.write_view();
            for t in &targets {
                if let Some(s) = v.by_base(t.base).and_then(|i| v.segments.get_mut(i)) {
                    s.index_written = s.index_written.max(t.index_to);
                    s.time_written = s.time_written.max(t.time_to);
                }
            }
        }
        w.unsynced.clear();
        w.recovery_point = log_end;
        w.unflushed_messages = 0;
        w.last_flush = Instant::now();
        if w.epochs.dirty {
            self.write_file_atomic(EPOCH_CHECKPOINT_FILE, &w.epochs.serialize())?;
            w.epochs.dirty = false;
        }
        if checkpoint && w.persisted_recovery_point != Some(log_end) {
            self.write_offset_file(RECOVERY_POINT_FILE, log_end)?;
            w.persisted_recovery_point = Some(log_end);
        }
        Ok(())
    }

    /// Fsyncs all unflushed segment data and indexes and persists the recovery point.
    pub fn flush(&self) -> Result<()> {
        let mut w = self.lock_writer();
        if let Some(r) = &w.offline {
            if r != CLOSED {
                return Err(StorageError::Offline(r.clone()));
            }
            return Ok(());
        }
        self.flush_locked(&mut w, true)
    }

    /// Flushes if the `flush_ms` policy says the last flush is too old (and there is
    /// anything to flush). Call periodically.
    pub fn maybe_flush(&self) -> Result<()> {
        let Some(ms) = self.cfg().flush_ms else {
            return Ok(());
        };
        let mut w = self.lock_writer();
        if w.offline.is_some() {
            return Ok(());
        }
        if w.last_flush.elapsed() < Duration::from_millis(ms) {
            return Ok(());
        }
        let log_end = self.read_view().log_end;
        let nothing = w.unflushed_messages == 0
            && w.unsynced.is_empty()
            && w.persisted_recovery_point == Some(log_end);
        if nothing {
            w.last_flush = Instant::now();
            return Ok(());
        }
        self.flush_locked(&mut w, true)
    }

    /// Clean shutdown: flushes everything, persists the recovery point and writes the
    /// clean-shutdown marker. The log refuses writes afterwards (reads still work).
    pub fn close(&self) -> Result<()> {
        let mut w = self.lock_writer();
        match &w.offline {
            Some(r) if r == CLOSED => return Ok(()),
            Some(r) => return Err(StorageError::Offline(r.clone())),
            None => {}
        }
        if !self.nothing_to_flush(&w) {
            self.flush_locked(&mut w, true)?;
        }
        let snapshot = {
            let v = self.read_view();
            Snapshot {
                segments: v
                    .segments
                    .iter()
                    .map(|s| SegMeta {
                        base: s.base_offset,
                        size: s.size,
                        next_offset: s.next_offset,
                        first_batch_offset: s.first_batch_offset,
                        max_ts: s.max_ts,
                        bytes_since_index: s.bytes_since_index,
                        created_ms: s.created_ms,
                        index_entries: s.index.len() as u64,
                        time_entries: s.time_index.len() as u64,
                    })
                    .collect(),
                producers: w.producers.entries(),
            }
        };
        self.write_file_atomic(CLEAN_SHUTDOWN_FILE, &snapshot.encode())?;
        w.offline = Some(CLOSED.to_string());
        debug!(dir = %self.dir.display(), "log closed");
        Ok(())
    }

    /// Whether everything written is flushed and checkpointed already (a log untouched since
    /// it was opened), so a flush would only repeat fsyncs of unchanged files.
    fn nothing_to_flush(&self, w: &Writer) -> bool {
        let v = self.read_view();
        w.unflushed_messages == 0
            && w.unsynced.is_empty()
            && !w.epochs.dirty
            && w.recovery_point == v.log_end
            && w.persisted_recovery_point == Some(v.log_end)
            && v.segments
                .iter()
                .all(|s| s.index_written == s.index.len() && s.time_written == s.time_index.len())
    }

    // ------------------------------------------------------------------ read

    /// Reads whole batches starting with the batch that contains `offset`, up to
    /// `max_bytes` but always at least that first batch (KIP-74), never including a batch
    /// whose base offset is `>= upper_bound`. Reads from a single segment.
    ///
    /// `offset == log_end_offset` returns empty data; an offset outside
    /// `[log_start_offset, log_end_offset]` is [`StorageError::OffsetOutOfRange`].
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<ReadInfo> {
        let (snap, log_start, log_end) = {
            let v = self.read_view();
            if offset < v.log_start || offset > v.log_end {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start: v.log_start,
                    log_end: v.log_end,
                });
            }
            let empty = ReadInfo {
                data: Bytes::new(),
                log_start_offset: v.log_start,
                log_end_offset: v.log_end,
            };
            if offset == v.log_end || offset >= upper_bound {
                return Ok(empty);
            }
            let Some(mut i) = v.find(offset) else {
                return Ok(empty);
            };
            // Skip segments ending at or before `offset`, and segments emptied by compaction.
            while v
                .segments
                .get(i)
                .is_some_and(|s| s.next_offset <= offset || s.size == 0)
                && i + 1 < v.segments.len()
            {
                i += 1;
            }
            let Some(s) = v.segments.get(i) else {
                return Ok(empty);
            };
            (
                SegSnap {
                    file: s.log.clone(),
                    path: s.path.clone(),
                    size: s.size,
                    pos: s.position_for(offset),
                },
                v.log_start,
                v.log_end,
            )
        };
        let empty = ReadInfo {
            data: Bytes::new(),
            log_start_offset: log_start,
            log_end_offset: log_end,
        };
        let Some((start, first)) = find_batch(&snap, |h| h.last_offset() >= offset)? else {
            return Ok(empty);
        };
        if first.base_offset >= upper_bound {
            return Ok(empty);
        }
        // `start` comes from the segment's own index and headers; a damaged file must give a
        // clear error, not an underflow.
        let remaining = bytes_after(&snap.path, snap.size, start)?;
        let want = (max_bytes.max(first.total_len()) as u64).min(remaining);
        // Not `BytesMut::zeroed`: a zeroed allocation this large is served from fresh pages,
        // so every read would page-fault once per 4 KiB; filling reuses freed memory.
        let want = usize::try_from(want).unwrap_or(0);
        let mut buf = BytesMut::with_capacity(want);
        buf.resize(want, 0);
        let n = snap
            .file
            .read_full_at(&mut buf, start)
            .map_err(|e| StorageError::io(&snap.path, e))?;
        buf.truncate(n);
        let mut cut = 0usize;
        while let Some(rest) = buf.get(cut..) {
            let Ok(h) = BatchHeader::parse(rest) else {
                break;
            };
            if h.base_offset >= upper_bound || h.total_len() > rest.len() {
                break;
            }
            cut += h.total_len();
        }
        buf.truncate(cut);
        Ok(ReadInfo {
            data: buf.freeze(),
            log_start_offset: log_start,
            log_end_offset: log_end,
        })
    }

    /// First offset still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.read_view().log_start
    }

    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        self.read_view().log_end
    }

    /// Total bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.read_view().segments.iter().map(|s| s.size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.read_view().segments.len()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the last open found a clean-shutdown marker.
    pub fn opened_after_clean_shutdown(&self) -> bool {
        self.clean_open
    }

    /// Whether the last open used the clean-shutdown snapshot instead of scanning segments.
    pub fn opened_from_snapshot(&self) -> bool {
        self.snapshot_loaded.load(Ordering::Relaxed)
    }

    /// Offset up to which data is known to be flushed.
    pub fn recovery_point(&self) -> i64 {
        self.lock_writer().recovery_point
    }

    // ------------------------------------------------------------------ timestamps

    /// First record (in offset order) whose timestamp is `>= ts`: `(offset, timestamp)`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        let (cands, log_start) = {
            let v = self.read_view();
            let cands: Vec<SegSnap> = v
                .segments
                .iter()
                .filter(|s| s.max_ts.is_some_and(|(m, _)| m >= ts))
                .map(|s| SegSnap {
                    file: s.log.clone(),
                    path: s.path.clone(),
                    size: s.size,
                    pos: s.position_for(s.offset_before_timestamp(ts)),
                })
                .collect();
            (cands, v.log_start)
        };
        for snap in cands {
            let mut sc = Scanner::new(&*snap.file, snap.pos, snap.size);
            loop {
                match sc
                    .next(|_| false)
                    .map_err(|e| StorageError::io(&snap.path, e))?
                {
                    Item::End => break,
                    Item::Bad { pos, reason } => {
                        return Err(StorageError::Corrupt {
                            file: snap.path.clone(),
                            position: pos,
                            reason,
                        })
                    }
                    Item::Batch { pos, header } => {
                        if header.max_timestamp < ts || header.last_offset() < log_start {
                            continue;
                        }
                        let data = read_exact(&snap, pos, header.total_len())?;
                        let found = batch::records(&data)?
                            .into_iter()
                            .find(|r| r.timestamp >= ts && r.offset >= log_start);
                        if let Some(r) = found {
                            return Ok(Some((r.offset, r.timestamp)));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Record with the largest timestamp (earliest offset on ties): `(offset, timestamp)`.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        let found = {
            let v = self.read_view();
            let mut best: Option<(&Segment, i64, i64)> = None;
            for s in &v.segments {
                if let Some((ts, off)) = s.max_ts {
                    if best.is_none_or(|(_, b, _)| ts > b) {
                        best = Some((s, ts, off));
                    }
                }
            }
            best.map(|(s, ts, off)| {
                (
                    SegSnap {
                        file: s.log.clone(),
                        path: s.path.clone(),
                        size: s.size,
                        pos: s.position_for(off),
                    },
                    ts,
                    off,
                )
            })
        };
        let Some((snap, ts, off)) = found else {
            return Ok(None);
        };
        let Some((pos, h)) = find_batch(&snap, |h| h.base_offset >= off)? else {
            return Ok(Some((off, ts)));
        };
        let data = read_exact(&snap, pos, h.total_len())?;
        let offset = batch::records(&data)?
            .into_iter()
            .find(|r| r.timestamp == ts)
            .map_or(h.base_offset, |r| r.offset);
        Ok(Some((offset, ts)))
    }

    // ------------------------------------------------------------------ epochs

    /// Leader epoch lookup (Kafka `OffsetsForLeaderEpoch`): the largest known epoch `<=`
    /// `epoch` and its end offset (the start offset of the next larger epoch, or the log end
    /// for the latest epoch). If `epoch` is below the first known epoch the result is
    /// `(epoch, start offset of the first epoch)`. `None` when no epoch is recorded or
    /// `epoch` is larger than the latest known epoch (Kafka's UNDEFINED).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<Option<(i32, i64)>> {
        let w = self.lock_writer();
        let log_end = self.read_view().log_end;
        Ok(w.epochs.end_offset_for(epoch, log_end))
    }

    /// Latest leader epoch recorded, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock_writer().epochs.latest()
    }

    /// Records that leader epoch `epoch` starts at the current log end offset (a new leader
    /// calls this on election, before any append in the epoch). No-op unless `epoch` is
    /// larger than the latest recorded epoch.
    ///
    /// Persisted to `leader-epoch-checkpoint` by the next flush or clean close, not at once
    /// (as Kafka since KAFKA-15046): a restart moves every partition's epoch twice, and a
    /// checkpoint file written per partition and move made starting 10,000 partitions take
    /// tens of seconds. Nothing depends on it sooner: until records of the epoch exist the
    /// entry changes no OffsetsForLeaderEpoch answer (the end offset of the epoch before is
    /// the log end either way), records carry their epoch in their batch headers, and a
    /// flush writes the checkpoint before it moves the recovery point, so recovery rebuilds
    /// any entry lost in a crash from the batches it scans.
    pub fn assign_epoch(&self, epoch: i32) -> Result<()> {
        let mut w = self.lock_writer();
        w.check_writable()?;
        let log_end = self.read_view().log_end;
        w.epochs.assign(epoch, log_end);
        Ok(())
    }

    // ------------------------------------------------------------------ truncation

    /// Removes every batch containing an offset `>= offset` (the batch containing `offset`
    /// is removed whole, so the new log end may be below `offset`). If `offset` is below the
    /// log start, the log is emptied and restarts at `offset`. Producer state and the leader
    /// epoch cache are rebuilt/truncated accordingly.
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        let _m = self.lock_maintenance();
        let mut w = self.lock_writer();
        w.check_writable()?;
        let (log_start, log_end) = {
            let v = self.read_view();
            (v.log_start, v.log_end)
        };
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start,
                log_end,
            });
        }
        if offset >= log_end {
            // No batch to remove, but the epoch cache may still end with an epoch that
            // starts at the log end and holds no batch: this broker led that epoch and was
            // deposed before appending in it. Such an entry must go (as in Kafka's
            // `UnifiedLog.truncateTo`): while it stays, the follower keeps sending it as its
            // last fetched epoch, the new leader (which never had it) keeps answering with
            // a diverging epoch that truncates to here, and the follower never fetches again.
            w.epochs.truncate_from_end(log_end, true);
            if w.epochs.dirty {
                self.write_file_atomic(EPOCH_CHECKPOINT_FILE, &w.epochs.serialize())?;
                w.epochs.dirty = false;
            }
            return Ok(());
        }
        if offset < log_start {
            self.lower_recovery_point(&mut w, offset)?;
            return self.truncate_fully_locked(&mut w, offset);
        }
        let (idx, snap, base, seg_end) = {
            let v = self.read_view();
            let i = v.find(offset).ok_or_else(no_segment)?;
            let s = v.segments.get(i).ok_or_else(no_segment)?;
            (
                i,
                SegSnap {
                    file: s.log.clone(),
                    path: s.path.clone(),
                    size: s.size,
                    pos: s.position_for(offset),
                },
                s.base_offset,
                s.next_offset,
            )
        };
        let (cut, new_end) = match find_batch(&snap, |h| h.last_offset() >= offset)? {
            Some((pos, h)) => (pos, h.base_offset),
            None => (snap.size, seg_end),
        };
        // Lower the persisted recovery point first so that a crash mid-truncation (or
        // later, before the next flush) never leaves a recovery point beyond the data.
        self.lower_recovery_point(&mut w, new_end)?;
        // Drop later segments.
        let removed: Vec<i64> = {
            let mut v = self.write_view();
            let removed = v.segments.drain(idx + 1..).map(|s| s.base_offset).collect();
            if let Some(s) = v.segments.last_mut() {
                s.size = s.size.min(cut);
            }
            removed
        };
        for b in &removed {
            self.remove_segment_files(*b)?;
        }
        w.unsynced.retain(|b| !removed.contains(b) && *b != base);
        let io = |e| StorageError::io(&snap.path, e);
        snap.file.set_len(cut).map_err(io)?;
        snap.file.sync().map_err(io)?;
        // Rebuild the segment's in-memory state from its (now shorter) contents.
        let mut fresh = Segment::new(base, snap.file.clone(), snap.path.clone());
        scan_into(&mut fresh, &self.cfg(), cut)?;
        for ext in ["index", "timeindex"] {
            let p = self.path(base, ext);
            let f = self.open_file(&p, true)?;
            f.set_len(0).map_err(|e| StorageError::io(&p, e))?;
        }
        let new_end = fresh.next_offset;
        self.lower_recovery_point(&mut w, new_end)?;
        self.clamp_cleaner_checkpoint(new_end)?;
        {
            let mut v = self.write_view();
            if let Some(s) = v.segments.last_mut() {
                fresh.created_ms = s.created_ms;
                *s = fresh;
            }
            v.log_end = new_end;
            v.log_start = v.log_start.min(new_end);
        }
        w.active_index = Some(IndexFiles {
            base,
            index: self.open_file(&self.path(base, "index"), true)?,
            time: self.open_file(&self.path(base, "timeindex"), true)?,
        });
        self.rebuild_producers(&mut w)?;
        w.epochs.truncate_from_end(new_end, true);
        self.write_file_atomic(EPOCH_CHECKPOINT_FILE, &w.epochs.serialize())?;
        w.epochs.dirty = false;
        debug!(dir = %self.dir.display(), offset, new_end, "truncated log");
        Ok(())
    }

    fn lower_recovery_point(&self, w: &mut Writer, offset: i64) -> Result<()> {
        if w.persisted_recovery_point.is_none_or(|p| p > offset) || w.recovery_point > offset {
            let rp = w.recovery_point.min(offset);
            self.write_offset_file(RECOVERY_POINT_FILE, rp)?;
            w.persisted_recovery_point = Some(rp);
            w.recovery_point = rp;
        }
        Ok(())
    }

    fn truncate_fully_locked(&self, w: &mut Writer, offset: i64) -> Result<()> {
        let old: Vec<i64> = {
            let v = self.read_view();
            v.segments.iter().map(|s| s.base_offset).collect()
        };
        self.write_offset_file(LOG_START_FILE, offset)?;
        self.clamp_cleaner_checkpoint(offset)?;
        for b in &old {
            self.remove_segment_files(*b)?;
        }
        let path = self.path(offset, "log");
        let file = self.open_file(&path, true)?;
        file.set_len(0).map_err(|e| StorageError::io(&path, e))?;
        let index = self.open_file(&self.path(offset, "index"), true)?;
        let time = self.open_file(&self.path(offset, "timeindex"), true)?;
        for f in [&index, &time] {
            f.set_len(0)
                .map_err(|e| StorageError::io(self.path(offset, "index"), e))?;
        }
        {
            let mut v = self.write_view();
            v.segments = vec![Segment::new(offset, file, path)];
            v.log_start = offset;
            v.log_end = offset;
        }
        w.unsynced.clear();
        w.active_index = Some(IndexFiles {
            base: offset,
            index,
            time,
        });
        w.producers.clear();
        w.epochs.truncate_from_end(offset, true);
        self.write_file_atomic(EPOCH_CHECKPOINT_FILE, &w.epochs.serialize())?;
        w.epochs.dirty = false;
        Ok(())
    }

    /// Rebuilds the producer state by replaying every batch header of the log.
    fn rebuild_producers(&self, w: &mut Writer) -> Result<()> {
        let snaps: Vec<SegSnap> = {
            let v = self.read_view();
            v.segments
                .iter()
                .map(|s| SegSnap {
                    file: s.log.clone(),
                    path: s.path.clone(),
                    size: s.size,
                    pos: 0,
                })
                .collect()
        };
        w.producers.clear();
        for s in snaps {
            let mut sc = Scanner::new(&*s.file, 0, s.size);
            loop {
                match sc
                    .next(|_| false)
                    .map_err(|e| StorageError::io(&s.path, e))?
                {
                    Item::End => break,
                    Item::Bad { pos, reason } => {
                        return Err(StorageError::Corrupt {
                            file: s.path.clone(),
                            position: pos,
                            reason,
                        })
                    }
                    Item::Batch { header, .. } => w.producers.replay(&header),
                }
            }
        }
        Ok(())
    }
}

const CLOSED: &str = "log is closed";

fn no_segment() -> StorageError {
    StorageError::Offline("log has no segment".into())
}

/// Scans the whole `limit` bytes of `seg.log` (headers only) into `seg`'s derived state.
fn scan_into(seg: &mut Segment, cfg: &LogConfig, limit: u64) -> Result<()> {
    seg.reset();
    let file = seg.log.clone();
    let mut sc = Scanner::new(&*file, 0, limit);
    loop {
        match sc
            .next(|_| false)
            .map_err(|e| StorageError::io(&seg.path, e))?
        {
            Item::End => return Ok(()),
            Item::Bad { pos, reason } => {
                return Err(StorageError::Corrupt {
                    file: seg.path.clone(),
                    position: pos,
                    reason,
                })
            }
            Item::Batch { pos, header } => {
                seg.on_batch(&header, pos, cfg);
            }
        }
    }
}

/// Scans `snap` from `snap.pos` for the first batch satisfying `pred`.
fn find_batch(
    snap: &SegSnap,
    pred: impl Fn(&BatchHeader) -> bool,
) -> Result<Option<(u64, BatchHeader)>> {
    let mut sc = Scanner::new(&*snap.file, snap.pos, snap.size);
    loop {
        match sc
            .next(|_| false)
            .map_err(|e| StorageError::io(&snap.path, e))?
        {
            Item::End => return Ok(None),
            Item::Bad { pos, reason } => {
                return Err(StorageError::Corrupt {
                    file: snap.path.clone(),
                    position: pos,
                    reason,
                })
            }
            Item::Batch { pos, header } if pred(&header) => return Ok(Some((pos, header))),
            Item::Batch { .. } => {}
        }
    }
}

fn read_exact(snap: &SegSnap, pos: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = snap
        .file
        .read_full_at(&mut buf, pos)
        .map_err(|e| StorageError::io(&snap.path, e))?;
    if n < len {
        return Err(StorageError::Corrupt {
            file: snap.path.clone(),
            position: pos,
            reason: format!("short read: {n} of {len} bytes"),
        });
    }
    Ok(buf)
}

mod clean;
mod follower;
mod retention;

/// Bytes of a segment of `size` bytes from `start` on. `start` comes from the segment's own
/// index and headers; a damaged file must give a clear error, not an underflow.
fn bytes_after(path: &Path, size: u64, start: u64) -> Result<u64> {
    size.checked_sub(start)
        .ok_or_else(|| StorageError::Corrupt {
            file: path.to_path_buf(),
            position: start,
            reason: format!("a batch starts at byte {start}, past the segment's size {size}"),
        })
}

#[cfg(test)]
mod clean_tests;
#[cfg(test)]
mod lazy_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod tests;
