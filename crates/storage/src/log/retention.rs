//! Log lifecycle: retention by time and size, DeleteRecords (KIP-107), deleting a log.

use tracing::{debug, warn};

use super::{Log, Result, Writer, LOG_START_FILE};
use crate::{RetentionOutcome, StorageError};

impl Log {
    /// Applies retention: deletes whole segments, oldest first,
    ///
    /// 1. that lie wholly below the log start offset (left over by DeleteRecords or a crash);
    /// 2. whose largest timestamp is older than `now_ms - retention_ms` (`None`: no time
    ///    limit), stopping at the first segment that is not expired. An expired, non-empty
    ///    active segment is rolled first, so a quiet topic still loses old data;
    /// 3. while the log stays at least `retention_bytes` large without the segment
    ///    (`None`: no size limit; the active segment is never deleted for size).
    ///
    /// The new log start offset (the base offset of the first remaining segment) is
    /// persisted in `log-start-offset` before any file is deleted, so a crash in between
    /// leaves a log that opens with the right start offset (leftover segments below it are
    /// deleted by the next call). Never moves the log start beyond the log end.
    pub fn enforce_retention(
        &self,
        now_ms: i64,
        retention_ms: Option<i64>,
        retention_bytes: Option<i64>,
    ) -> Result<RetentionOutcome> {
        let _m = self.lock_maintenance();
        let mut w = self.lock_writer();
        w.check_writable()?;
        // Decide under the read lock: (base, size, max_ts, next_offset) per segment.
        let segs: Vec<(i64, u64, Option<i64>, i64)> = {
            let v = self.read_view();
            v.segments
                .iter()
                .map(|s| (s.base_offset, s.size, s.max_ts.map(|m| m.0), s.next_offset))
                .collect()
        };
        let log_start = self.log_start_offset();
        let n = segs.len();
        let mut delete = 0usize; // number of leading segments to delete
        let mut roll_active = false;
        // 1. Wholly below the log start (never the active segment).
        while delete + 1 < n
            && segs
                .get(delete + 1)
                .is_some_and(|&(next_base, ..)| next_base <= log_start)
        {
            delete += 1;
        }
        // 2. By time.
        if let Some(ms) = retention_ms.filter(|m| *m >= 0) {
            let limit = now_ms.saturating_sub(ms);
            while let Some(&(_, size, max_ts, _)) = segs.get(delete) {
                // A segment without any batch (e.g. emptied by compaction) holds nothing to
                // keep; the empty active segment is never deleted.
                let expired = max_ts.is_none_or(|t| t < limit);
                if !expired {
                    break;
                }
                if delete + 1 == n {
                    if size > 0 {
                        roll_active = true;
                        delete += 1;
                    }
                    break;
                }
                delete += 1;
            }
        }
        // 3. By size (never the active segment).
        if let Some(limit) = retention_bytes.and_then(|b| u64::try_from(b).ok()) {
            let mut total: u64 = segs.iter().skip(delete).map(|s| s.1).sum();
            while delete + 1 < n {
                let Some(&(_, size, ..)) = segs.get(delete) else {
                    break;
                };
                if total.saturating_sub(size) < limit {
                    break;
                }
                total -= size;
                delete += 1;
            }
        }
        if delete == 0 {
            return Ok(RetentionOutcome {
                segments_deleted: 0,
                bytes_deleted: 0,
                log_start_offset: log_start,
            });
        }
        if roll_active {
            let log_end = self.log_end_offset();
            self.roll_locked(&mut w, log_end)?;
        }
        let doomed: Vec<(i64, u64)> = segs.iter().take(delete).map(|s| (s.0, s.1)).collect();
        let new_start = {
            let v = self.read_view();
            let first_kept = v.segments.get(delete).map_or(v.log_end, |s| s.base_offset);
            first_kept.max(v.log_start).min(v.log_end)
        };
        self.remove_leading_segments(&mut w, delete, new_start)?;
        let bytes_deleted = doomed.iter().map(|d| d.1).sum();
        debug!(dir = %self.dir.display(), segments = delete, new_start, "retention deleted segments");
        Ok(RetentionOutcome {
            segments_deleted: delete,
            bytes_deleted,
            log_start_offset: new_start,
        })
    }

    /// Persists `new_start` (if it moves the log start), then drops the first `count`
    /// segments from the view and deletes their files. The active segment is never removed.
    fn remove_leading_segments(&self, w: &mut Writer, count: usize, new_start: i64) -> Result<()> {
        let current = self.log_start_offset();
        if new_start > current {
            self.write_offset_file(LOG_START_FILE, new_start)?;
        }
        let removed: Vec<i64> = {
            let mut v = self.write_view();
            let count = count.min(v.segments.len().saturating_sub(1));
            let removed = v
                .segments
                .drain(..count)
                .map(|s| {
                    // A reader may still hold the segment: keep its contents reachable.
                    if let Err(e) = s.log.ensure_open() {
                        warn!(path = %s.path.display(), error = %e, "cannot open segment before removal");
                    }
                    s.base_offset
                })
                .collect();
            v.log_start = v.log_start.max(new_start);
            removed
        };
        w.unsynced.retain(|b| !removed.contains(b));
        for b in &removed {
            self.remove_segment_files(*b)?;
        }
        if !removed.is_empty() {
            self.backend
                .sync_dir(&self.dir)
                .map_err(|e| StorageError::io(&self.dir, e))?;
        }
        Ok(())
    }

    /// DeleteRecords (KIP-107): moves the log start offset up to `offset` and deletes the
    /// segments lying wholly below it. `offset` must be `<= log_end_offset` (else
    /// [`StorageError::OffsetOutOfRange`]); an offset at or below the current log start is
    /// a no-op. The new start is persisted in `log-start-offset` before anything is deleted.
    /// Reads below it then fail with `OffsetOutOfRange`. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let _m = self.lock_maintenance();
        let mut w = self.lock_writer();
        w.check_writable()?;
        let (log_start, log_end, below) = {
            let v = self.read_view();
            // Segments whose successor starts at or below `offset` hold only offsets below it.
            let below = v
                .segments
                .windows(2)
                .take_while(|p| p.get(1).is_some_and(|s| s.base_offset <= offset))
                .count();
            (v.log_start, v.log_end, below)
        };
        if offset < 0 || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start,
                log_end,
            });
        }
        if offset <= log_start {
            return Ok(log_start);
        }
        self.remove_leading_segments(&mut w, below, offset)?;
        debug!(dir = %self.dir.display(), offset, segments = below, "deleted records");
        Ok(offset)
    }

    /// Closes the log (no flush: its data is going away) and removes its directory with
    /// every file in it. Takes `&self` so a log shared behind an `Arc` can be deleted;
    /// afterwards every write fails with [`StorageError::Offline`] (readers that already
    /// hold a segment may finish their read).
    pub fn delete(&self) -> Result<()> {
        let _m = self.lock_maintenance();
        let mut w = self.lock_writer();
        w.offline = Some("log is deleted".into());
        w.active_index = None;
        {
            let mut v = self.write_view();
            v.segments.clear();
            v.log_start = v.log_end;
        }
        let entries = self
            .backend
            .list_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        for p in entries {
            self.backend
                .remove_file(&p)
                .map_err(|e| StorageError::io(&p, e))?;
        }
        self.backend
            .remove_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        if let Some(parent) = self.dir.parent() {
            // Best effort: make the removal durable.
            let _ = self.backend.sync_dir(parent);
        }
        debug!(dir = %self.dir.display(), "log deleted");
        Ok(())
    }
}
