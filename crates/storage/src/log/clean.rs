//! Log compaction (`cleanup.policy=compact`): keep only the latest record of each key.
//!
//! # Files
//!
//! * `cleaner-offset-checkpoint` — text: `"0\n{first_dirty}\n{n}\n"` then `n` lines
//!   `"{end_offset} {cleaned_at_ms}\n"`, one per pass (oldest first, at most
//!   [`MAX_PASSES`]): offsets below `first_dirty` have been cleaned, and the offsets below
//!   `end_offset` (and at or above the previous line's) first entered the cleaned section at
//!   `cleaned_at_ms`; tombstones are dropped `delete.retention.ms` after that. Offset gaps
//!   left by the cleaner are only accepted by recovery below `first_dirty`.
//! * `{base:020}.log.cleaned` — a rewritten segment being written.
//! * `{base:020}.log.swap` — a complete, fsynced rewritten segment waiting to replace
//!   `{base:020}.log`.
//!
//! # Swap protocol
//!
//! 1. Write every rewritten segment to `.log.cleaned` and fsync it.
//! 2. Write the new checkpoint to `cleaner-offset-checkpoint.pending`.
//! 3. Rename every `.log.cleaned` to `.log.swap`, fsync the directory: the commit point
//!    (no `.cleaned` file is left). Rename the pending checkpoint over the checkpoint (its
//!    new `first_dirty` covers the offset gaps about to appear).
//! 4. Rename each `.log.swap` over its `.log` (atomic replace), swap the in-memory segment
//!    (readers holding the old file keep reading it), write its index files.
//!
//! Recovery ([`Log::recover_swaps`], run first by `open`): if any `.log.cleaned` exists the
//! pass did not reach its commit point and every `.cleaned`/`.swap` file and the pending
//! checkpoint are deleted (the originals and the checkpoint are untouched); otherwise the
//! pending checkpoint (if still there) is published and each `.log.swap` is renamed over its
//! `.log` (finishing step 4), and the segments are rescanned (indexes rebuilt). Either way
//! nothing is lost.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, warn};

use super::{Log, Result, Segment, CLEANER_CHECKPOINT_FILE};
use crate::backend::BackendFile;
use crate::compact;
use crate::scan::{Item, Scanner};
use crate::{CleanOptions, CleanStats, CleanableInfo, StorageError};

/// Passes remembered in the checkpoint; older ones are merged (which only delays tombstone
/// removal, never hastens it).
const MAX_PASSES: usize = 64;
const CLEANED_EXT: &str = "log.cleaned";
const SWAP_EXT: &str = "log.swap";
/// The checkpoint of a pass whose swap is in progress.
const PENDING_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint.pending";

/// Parsed `cleaner-offset-checkpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct CleanerCheckpoint {
    pub first_dirty: i64,
    /// `(end_offset, cleaned_at_ms)`, end offsets increasing.
    pub passes: Vec<(i64, i64)>,
}

impl CleanerCheckpoint {
    fn parse(data: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(data).ok()?;
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let first_dirty = lines.next()?.trim().parse().ok()?;
        let n: usize = lines.next()?.trim().parse().ok()?;
        let mut passes = Vec::with_capacity(n.min(MAX_PASSES));
        for _ in 0..n {
            let mut it = lines.next()?.split_whitespace();
            let end = it.next()?.parse().ok()?;
            let at = it.next()?.parse().ok()?;
            passes.push((end, at));
        }
        Some(CleanerCheckpoint {
            first_dirty,
            passes,
        })
    }

    fn serialize(&self) -> String {
        let mut s = format!("0\n{}\n{}\n", self.first_dirty, self.passes.len());
        for (end, at) in &self.passes {
            s.push_str(&format!("{end} {at}\n"));
        }
        s
    }

    /// When offset `o` (below `first_dirty`) entered the cleaned section, if known.
    fn cleaned_at(&self, o: i64) -> Option<i64> {
        self.passes.iter().find(|(end, _)| o < *end).map(|p| p.1)
    }

    fn record_pass(&mut self, end: i64, now_ms: i64) {
        if end > self.first_dirty {
            self.passes.retain(|p| p.0 < end);
            self.passes.push((end, now_ms));
            self.first_dirty = end;
        }
        while self.passes.len() > MAX_PASSES {
            // Merge the two oldest passes into the later one (later time: safe).
            self.passes.remove(0);
        }
    }
}

/// One non-active segment as seen at the start of a pass.
struct SegInfo {
    base: i64,
    file: Arc<dyn BackendFile>,
    path: PathBuf,
    size: u64,
    /// Base offset of the following segment.
    end: i64,
}

/// Sleeps to keep `bytes / elapsed` at or below the configured rate.
struct Throttle {
    rate: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Throttle {
    fn add(&mut self, n: u64) {
        self.bytes += n;
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let want = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.start.elapsed();
        if want > elapsed {
            std::thread::sleep(want - elapsed);
        }
    }
}

impl Log {
    pub(super) fn read_cleaner_checkpoint(&self) -> Result<Option<CleanerCheckpoint>> {
        Ok(self
            .read_small_file(CLEANER_CHECKPOINT_FILE)?
            .and_then(|d| CleanerCheckpoint::parse(&d)))
    }

    fn write_cleaner_checkpoint(&self, c: &CleanerCheckpoint) -> Result<()> {
        self.write_file_atomic(CLEANER_CHECKPOINT_FILE, c.serialize().as_bytes())
    }

    /// Lowers the cleaner checkpoint to `offset` (after a truncation), so offset gaps are
    /// no longer accepted above it.
    pub(super) fn clamp_cleaner_checkpoint(&self, offset: i64) -> Result<()> {
        if let Some(mut c) = self.read_cleaner_checkpoint()? {
            if c.first_dirty > offset {
                c.first_dirty = offset;
                c.passes.retain(|p| p.0 <= offset);
                self.write_cleaner_checkpoint(&c)?;
            }
        }
        Ok(())
    }

    fn commit_pending_checkpoint(&self) -> Result<()> {
        let pending = self.dir.join(PENDING_CHECKPOINT_FILE);
        if !self.backend.exists(&pending) {
            return Ok(());
        }
        let dst = self.dir.join(CLEANER_CHECKPOINT_FILE);
        self.backend
            .rename(&pending, &dst)
            .map_err(|e| StorageError::io(&dst, e))?;
        self.backend
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))
    }

    /// Finishes or rolls back a compaction swap interrupted by a crash (see the module
    /// docs). Returns whether any segment was replaced (its indexes must be rebuilt).
    pub(super) fn recover_swaps(&self) -> Result<bool> {
        let entries = self
            .backend
            .list_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        let name = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        let cleaned: Vec<&PathBuf> = entries
            .iter()
            .filter(|p| name(p).is_some_and(|n| n.ends_with(&format!(".{CLEANED_EXT}"))))
            .collect();
        let swaps: Vec<&PathBuf> = entries
            .iter()
            .filter(|p| name(p).is_some_and(|n| n.ends_with(&format!(".{SWAP_EXT}"))))
            .collect();
        let pending = self.dir.join(PENDING_CHECKPOINT_FILE);
        if cleaned.is_empty() && swaps.is_empty() {
            if self.backend.exists(&pending) {
                // A pass that wrote its pending checkpoint but no longer has any rewritten
                // segment on disk never reached its commit point: drop it.
                self.backend
                    .remove_file(&pending)
                    .map_err(|e| StorageError::io(&pending, e))?;
            }
            return Ok(false);
        }
        let mut replaced = false;
        if !cleaned.is_empty() {
            warn!(dir = %self.dir.display(), "rolling back an interrupted compaction");
            for p in cleaned.iter().chain(swaps.iter()) {
                self.backend
                    .remove_file(p)
                    .map_err(|e| StorageError::io(*p, e))?;
            }
            if self.backend.exists(&pending) {
                self.backend
                    .remove_file(&pending)
                    .map_err(|e| StorageError::io(&pending, e))?;
            }
        } else {
            warn!(dir = %self.dir.display(), "completing an interrupted compaction swap");
            self.commit_pending_checkpoint()?;
            for p in swaps {
                let Some(n) = name(p) else { continue };
                let Some(stem) = n.strip_suffix(&format!(".{SWAP_EXT}")) else {
                    continue;
                };
                let dst = self.dir.join(format!("{stem}.log"));
                self.backend
                    .rename(p, &dst)
                    .map_err(|e| StorageError::io(&dst, e))?;
                replaced = true;
            }
        }
        self.backend
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        Ok(replaced)
    }

    /// Non-active segments eligible for cleaning: the longest prefix whose segments'
    /// largest timestamps are at or before `now_ms - min_compaction_lag_ms`.
    fn cleanable_segments(&self, now_ms: i64, lag_ms: i64) -> (Vec<SegInfo>, i64) {
        let v = self.read_view();
        let limit = now_ms.saturating_sub(lag_ms.max(0));
        let mut out = Vec::new();
        for pair in v.segments.windows(2) {
            let (Some(s), Some(next)) = (pair.first(), pair.get(1)) else {
                break;
            };
            if s.max_ts.is_some_and(|(t, _)| t > limit) {
                break;
            }
            out.push(SegInfo {
                base: s.base_offset,
                file: s.log.clone(),
                path: s.path.clone(),
                size: s.size,
                end: next.base_offset,
            });
        }
        (out, v.log_start)
    }

    /// How much cleaning would gain: the cleanable range is the non-active segments older
    /// than the compaction lag (a prefix of the log); segments ending at or below the
    /// cleaner checkpoint are clean, the others dirty.
    pub fn cleanable_info(&self, now_ms: i64, min_compaction_lag_ms: i64) -> CleanableInfo {
        let first_dirty_ckpt = match self.read_cleaner_checkpoint() {
            Ok(c) => c.map(|c| c.first_dirty),
            Err(e) => {
                warn!(dir = %self.dir.display(), error = %e, "cannot read cleaner checkpoint");
                None
            }
        };
        let (segs, log_start) = self.cleanable_segments(now_ms, min_compaction_lag_ms);
        let first_dirty = first_dirty_ckpt.unwrap_or(log_start).max(log_start);
        let mut clean_bytes = 0u64;
        let mut dirty_bytes = 0u64;
        for s in &segs {
            if s.end <= first_dirty {
                clean_bytes += s.size;
            } else {
                dirty_bytes += s.size;
            }
        }
        let total = clean_bytes + dirty_bytes;
        let end = segs.last().map_or(first_dirty, |s| s.end);
        CleanableInfo {
            dirty_ratio: if total == 0 {
                0.0
            } else {
                dirty_bytes as f64 / total as f64
            },
            cleanable_bytes: dirty_bytes,
            clean_bytes,
            first_dirty_offset: first_dirty,
            first_uncleanable_offset: end.max(first_dirty),
        }
    }

    /// One compaction pass (Kafka semantics): builds a key → latest offset map over the
    /// dirty section (from the cleaner checkpoint to the end of the last non-active segment
    /// older than `min_compaction_lag_ms`), then rewrites every cleanable segment that
    /// changes, keeping only each key's latest record. Offsets are preserved (gaps appear);
    /// keyless records, control batches and transactional batches are kept as they are; a
    /// tombstone is dropped once it has been in the cleaned section for
    /// `delete_retention_ms`; a batch that loses all records is dropped, except the last
    /// batch of an idempotent producer, kept empty so its sequence state survives a reopen.
    ///
    /// Flushes the log first. Appends and reads continue during the pass; the segment list
    /// is locked only to swap the rewritten segments in (see the module docs for the
    /// crash-safe swap protocol).
    pub fn clean(&self, opts: &CleanOptions) -> Result<CleanStats> {
        let _m = self.lock_maintenance();
        let producer_last: HashMap<i64, i64> = {
            let mut w = self.lock_writer();
            w.check_writable()?;
            self.flush_locked(&mut w, true)?;
            w.producers.last_batch_offsets()
        };
        let mut stats = CleanStats::default();
        let (segs, log_start) = self.cleanable_segments(opts.now_ms, opts.min_compaction_lag_ms);
        let Some(end) = segs.last().map(|s| s.end) else {
            return Ok(stats);
        };
        let mut ckpt = self.read_cleaner_checkpoint()?.unwrap_or_default();
        if ckpt.first_dirty < log_start {
            ckpt.first_dirty = log_start;
        }
        let prev_dirty = ckpt.first_dirty;
        let mut throttle = Throttle {
            rate: opts.max_bytes_per_sec,
            start: Instant::now(),
            bytes: 0,
        };

        // 1. Key map over the dirty section.
        let mut map: HashMap<Bytes, i64> = HashMap::new();
        for s in segs.iter().filter(|s| s.end > prev_dirty) {
            for_each_batch(s, &mut throttle, &mut stats, |h, data| {
                if h.is_control() || h.is_transactional() || h.last_offset() < prev_dirty {
                    return Ok(());
                }
                let body = compact::parse_body(h, data)?;
                for r in body.records {
                    if let (Some(k), true) = (r.key, r.offset >= prev_dirty) {
                        map.insert(k, r.offset);
                    }
                }
                Ok(())
            })?;
        }

        // 2. Rewrite segments that change into `.log.cleaned` files.
        let delete_horizon = opts.now_ms.saturating_sub(opts.delete_retention_ms.max(0));
        let mut rewritten: Vec<(i64, PathBuf)> = Vec::new();
        let result = (|| -> Result<()> {
            for s in &segs {
                let cleaned = self.path(s.base, CLEANED_EXT);
                let mut out: Vec<u8> = Vec::new();
                let mut changed = false;
                let mut removed = 0u64;
                let mut tombstones = 0u64;
                for_each_batch(s, &mut throttle, &mut stats, |h, data| {
                    if h.is_control() || h.is_transactional() || h.records_count == 0 {
                        out.extend_from_slice(data);
                        return Ok(());
                    }
                    let body = compact::parse_body(h, data)?;
                    let mut keep = Vec::with_capacity(body.records.len());
                    for (i, r) in body.records.iter().enumerate() {
                        let Some(k) = &r.key else {
                            keep.push(i);
                            continue;
                        };
                        if map.get(k).is_some_and(|latest| r.offset < *latest) {
                            removed += 1;
                            continue;
                        }
                        let expired = r.tombstone
                            && r.offset < prev_dirty
                            && ckpt
                                .cleaned_at(r.offset)
                                .is_some_and(|t| t <= delete_horizon);
                        if expired {
                            removed += 1;
                            tombstones += 1;
                            continue;
                        }
                        keep.push(i);
                    }
                    if keep.len() == body.records.len() {
                        out.extend_from_slice(data);
                        return Ok(());
                    }
                    changed = true;
                    let producers_last = h.producer_id >= 0
                        && producer_last.get(&h.producer_id) == Some(&h.last_offset());
                    if !keep.is_empty() || producers_last {
                        out.extend_from_slice(&compact::rebuild(data, &body, &keep)?);
                    }
                    Ok(())
                })?;
                if !changed {
                    continue;
                }
                let io = |e| StorageError::io(&cleaned, e);
                let f = self.backend.open(&cleaned, true).map_err(io)?;
                f.set_len(0).map_err(io)?;
                f.write_all_at(&out, 0).map_err(io)?;
                f.sync().map_err(io)?;
                throttle.add(out.len() as u64);
                stats.bytes_written += out.len() as u64;
                stats.records_removed += removed;
                stats.tombstones_removed += tombstones;
                stats.segments_cleaned += 1;
                rewritten.push((s.base, cleaned));
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.remove_cleaned(&segs);
            return Err(e);
        }

        // 3. Checkpoint, then swap.
        ckpt.record_pass(end, opts.now_ms);
        let mut w = self.lock_writer();
        if let Err(e) = w.check_writable() {
            self.remove_cleaned(&segs);
            return Err(e);
        }
        if rewritten.is_empty() {
            self.write_cleaner_checkpoint(&ckpt)?;
            return Ok(stats);
        }
        if let Err(e) = self.swap_in(&rewritten, &ckpt) {
            let reason = format!("compaction swap failed: {e}");
            warn!(dir = %self.dir.display(), %reason, "taking log offline");
            w.offline = Some(reason);
            return Err(e);
        }
        drop(w);
        debug!(dir = %self.dir.display(), ?stats, end, "cleaned log");
        Ok(stats)
    }

    /// Best-effort removal of the `.log.cleaned` files of an abandoned pass.
    fn remove_cleaned(&self, segs: &[SegInfo]) {
        for s in segs {
            let p = self.path(s.base, CLEANED_EXT);
            if self.backend.exists(&p) {
                if let Err(e) = self.backend.remove_file(&p) {
                    warn!(path = %p.display(), error = %e, "cannot remove abandoned cleaned segment");
                }
            }
        }
    }

    /// Steps 3 and 4 of the swap protocol.
    fn swap_in(&self, rewritten: &[(i64, PathBuf)], ckpt: &CleanerCheckpoint) -> Result<()> {
        self.write_file_atomic(PENDING_CHECKPOINT_FILE, ckpt.serialize().as_bytes())?;
        let mut swaps = Vec::with_capacity(rewritten.len());
        for (base, cleaned) in rewritten {
            let swap = self.path(*base, SWAP_EXT);
            self.backend
                .rename(cleaned, &swap)
                .map_err(|e| StorageError::io(&swap, e))?;
            swaps.push((*base, swap));
        }
        self.backend
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        // Commit point passed: no `.cleaned` file is left. Publish the checkpoint (it
        // covers the offset gaps the new segments bring).
        self.commit_pending_checkpoint()?;
        let cfg = self.cfg();
        for (base, swap) in swaps {
            let path = self.path(base, "log");
            {
                // A reader may still hold the old segment: its handle must keep seeing the
                // old contents after the rename.
                let v = self.read_view();
                if let Some(old) = v.by_base(base).and_then(|i| v.segments.get(i)) {
                    old.log
                        .ensure_open()
                        .map_err(|e| StorageError::io(&old.path, e))?;
                }
            }
            self.backend
                .rename(&swap, &path)
                .map_err(|e| StorageError::io(&path, e))?;
            let file = self.open_file(&path, false)?;
            let len = file.len().map_err(|e| StorageError::io(&path, e))?;
            let mut seg = Segment::new(base, file, path);
            super::scan_into(&mut seg, &cfg, len)?;
            for (ext, bytes) in [
                ("index", seg.index_bytes(0)),
                ("timeindex", seg.time_bytes(0)),
            ] {
                let p = self.path(base, ext);
                let io = |e| StorageError::io(&p, e);
                let f = self.backend.open(&p, true).map_err(io)?;
                f.set_len(0).map_err(io)?;
                f.write_all_at(&bytes, 0).map_err(io)?;
                f.sync().map_err(io)?;
            }
            seg.index_written = seg.index.len();
            seg.time_written = seg.time_index.len();
            let mut v = self.write_view();
            if let Some(old) = v.by_base(base).and_then(|i| v.segments.get_mut(i)) {
                seg.created_ms = old.created_ms;
                *old = seg;
            }
        }
        self.backend
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))
    }
}

/// Calls `f` with the header and bytes of every batch of `s`, counting bytes read.
fn for_each_batch(
    s: &SegInfo,
    throttle: &mut Throttle,
    stats: &mut CleanStats,
    mut f: impl FnMut(&crate::batch::BatchHeader, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut sc = Scanner::new(&*s.file, 0, s.size);
    loop {
        match sc
            .next(|_| false)
            .map_err(|e| StorageError::io(&s.path, e))?
        {
            Item::End => return Ok(()),
            Item::Bad { pos, reason } => {
                return Err(StorageError::Corrupt {
                    file: s.path.clone(),
                    position: pos,
                    reason,
                })
            }
            Item::Batch { pos, header } => {
                let len = header.total_len();
                let mut buf = vec![0u8; len];
                let n = s
                    .file
                    .read_full_at(&mut buf, pos)
                    .map_err(|e| StorageError::io(&s.path, e))?;
                if n < len {
                    return Err(StorageError::Corrupt {
                        file: s.path.clone(),
                        position: pos,
                        reason: format!("short read: {n} of {len} bytes"),
                    });
                }
                throttle.add(len as u64);
                stats.bytes_read += len as u64;
                f(&header, &buf)?;
            }
        }
    }
}
