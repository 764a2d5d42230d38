//! Segmented, offset-indexed commit log for Kafka record batches (one [`Log`] per partition).
//!
//! The log stores Kafka record batches (magic v2) exactly as the producer sent them, after
//! patching the broker-assigned `baseOffset` and `partitionLeaderEpoch` header fields (which
//! the batch CRC does not cover). Records are never re-encoded. All I/O is synchronous and
//! goes through a [`Backend`] so tests can run in memory and inject faults.
//!
//! # On-disk format
//!
//! A partition directory holds (all integers big-endian unless noted):
//!
//! * `{base_offset:020}.log` — a segment: a plain concatenation of v2 record batches, in
//!   offset order, each exactly as described in [`batch`] (61-byte header + records). The
//!   file name is the segment's base offset. Offsets are dense (each batch starts at the
//!   previous batch's last offset + 1) except below the cleaner checkpoint, where compaction
//!   leaves gaps: it drops batches and records but never renumbers, and a compacted batch
//!   keeps its `lastOffsetDelta` with fewer records (see [`batch::validate_stored`]); a
//!   compacted segment may even be empty. No other framing: the file size is the sum of the
//!   batch sizes.
//! * `{base_offset:020}.index` — sparse offset index: 8-byte entries
//!   `[relative_offset: u32][position: u32]`, where `relative_offset = batch.base_offset -
//!   segment_base` and `position` is the byte position of that batch in the `.log` file.
//!   An entry is added for a batch when at least `index_interval_bytes` bytes of batches
//!   precede it since the previous entry (so, unless the interval is 0, the batch at
//!   position 0 has none; lookups default to position 0). Entries are strictly increasing in
//!   both fields. At most `segment_index_bytes / 8` entries; the segment rolls when full.
//! * `{base_offset:020}.timeindex` — sparse time index: 12-byte entries
//!   `[timestamp: i64][relative_offset: u32]`, written together with an offset index entry.
//!   Entry `(T, r)` means: every record with offset `< segment_base + r` has timestamp
//!   `<= T` (T is the largest batch `maxTimestamp` seen before that batch). Timestamps are
//!   strictly increasing (an entry is skipped if T did not grow).
//! * `recovery-point` — text `"0\n{offset}\n"`: every batch with offsets below `offset` is
//!   known to be durable (fsynced). Written (via temp file + rename) by [`Log::flush`],
//!   [`Log::maybe_flush`] and [`Log::close`].
//! * `clean-shutdown` — marker written by [`Log::close`] after a full flush, removed on
//!   open. Its content is a snapshot of the derived state (binary, big-endian, ends with a
//!   CRC-32C): magic `"SLSNAP01"`, `u32` segment count, per segment `base i64, size u64,
//!   next_offset i64, first_batch_offset i64 (-1 = none), has_max_ts u8, max_ts i64,
//!   max_ts_offset i64, bytes_since_index u64, created_ms i64 (i64::MIN = none),
//!   index_entries u64, time_entries u64`; `u32` producer count, per producer
//!   `producer_id i64, epoch i16, n u8` then `n` times `first_seq i32, last_seq i32,
//!   base_offset i64, last_offset i64`; finally `crc32c u32` of all preceding bytes.
//! * `leader-epoch-checkpoint` — text, Kafka's format: `"0\n{count}\n"` then one line
//!   `"{epoch} {start_offset}\n"` per epoch, epochs and start offsets increasing.
//! * `log-start-offset` — optional text `"0\n{offset}\n"`; raises the log start offset above
//!   the first segment's base offset. Written (atomically) by [`Log::enforce_retention`] and
//!   [`Log::delete_records_before`] *before* they delete any segment file, so a crash in
//!   between reopens with the right start (leftover segments wholly below it are deleted by
//!   the next retention pass).
//! * `cleaner-offset-checkpoint` — text `"0\n{first_dirty}\n{n}\n"` then `n` lines
//!   `"{end_offset} {cleaned_at_ms}\n"`: compaction state (first offset not yet cleaned, and
//!   when each range entered the cleaned section, for `delete.retention.ms`). While a pass
//!   swaps segments its new version sits in `cleaner-offset-checkpoint.pending`.
//! * `{base_offset:020}.log.cleaned`, `{base_offset:020}.log.swap` — a rewritten segment
//!   being written / complete and waiting to replace `{base_offset:020}.log` (the crash-safe
//!   swap protocol is documented in the `log::clean` module).
//! * `*.tmp` — temporaries of the atomic writes above; deleted on open.
//!
//! Index files are derived data: they are kept in memory, written lazily (on flush, roll
//! and close), and rebuilt on open whenever they do not match the segment contents.
//!
//! Segment and index files are opened on first use ([`LazyFile`]): an open log that is
//! neither read nor written holds no file descriptor, so a broker can host many thousands
//! of partitions. [`Log::open_deferred`] and [`Log::begin_deferred_sync`] postpone the fsyncs
//! of small-file writes to [`Log::end_deferred_sync`], so a caller changing many logs at once
//! can run those on many threads (an empty log needs none).
//!
//! # Recovery
//!
//! After a clean shutdown, [`Log::open`] loads the snapshot in `clean-shutdown` and the
//! index files without reading any segment, provided everything matches exactly (segment
//! list, `.log` sizes, index entry counts and ordering, CRC, a valid epoch checkpoint).
//! Otherwise it scans the headers of every batch of every segment (buffered positional
//! reads, no record decoding) to rebuild the in-memory indexes, the idempotent-producer state
//! and the leader epoch cache:
//!
//! * First an interrupted compaction swap is finished (no `.log.cleaned` left: every
//!   `.log.swap` replaces its `.log`, the pending checkpoint is published) or rolled back
//!   (`.log.cleaned` present: every `.cleaned`/`.swap`/pending file is deleted).
//! * Offsets must be dense: each batch starts at the previous batch's last offset + 1, and
//!   each segment's base offset equals the previous segment's end, except that gaps ending
//!   at or below the cleaner checkpoint's `first_dirty` are accepted (compaction).
//! * Which batches are fully validated (length, magic, CRC-32C, offset deltas): after a
//!   clean shutdown only batches ending at or after the recovery point; otherwise, like
//!   Kafka, every batch of the segment containing the recovery point and of all later
//!   segments. Other (trusted) batches only get their header checked.
//! * The first invalid or partial batch (or broken segment chain) at or after the recovery
//!   point marks a torn tail: the segment is truncated at that batch's position and every
//!   later segment is deleted.
//! * An invalid or partial batch *before* the recovery point means flushed data was lost or
//!   damaged: open fails with [`StorageError::Corrupt`] and nothing is cut.
//! * Index files that do not match the rebuilt in-memory index (missing, short, stale) are
//!   rewritten; matching ones are left alone.
//! * The log start offset is the first segment's base offset, raised to `log-start-offset`
//!   if that is larger. An empty directory starts at 0.
//! * The leader epoch cache is loaded from `leader-epoch-checkpoint` and extended with any
//!   larger `partitionLeaderEpoch` found in the batches (so a missing file is rebuilt);
//!   entries starting beyond the log end are dropped.
//! * Durability: `flush` fsyncs the active segment, rolled-but-unsynced segments and their
//!   index files, then (for explicit [`Log::flush`], [`Log::maybe_flush`] and
//!   [`Log::close`]) atomically rewrites `recovery-point`. Flushes triggered by
//!   `flush_messages`/`flush_ms` inside [`Log::append`] only fsync; the recovery point file
//!   then lags, which only costs extra validation on the next open.
//!
//! # Concurrency
//!
//! Appends, truncation and flushes are serialized by an internal mutex. Maintenance
//! (retention, DeleteRecords, compaction, truncation) is serialized by a second mutex taken
//! before it; a compaction pass holds the writer mutex and the segment-list write lock only
//! to swap rewritten segments in, so appends and reads continue during a pass and a reader
//! that already picked a segment keeps reading its old file. Reads take a short
//! read lock to look up the segment and index position, then copy bytes with positional
//! reads without any lock, so they never wait for an append's disk write. Appended batches
//! become visible to readers only after they were written completely.

pub mod backend;
pub mod batch;
mod compact;
mod epoch;
mod log;
mod producer;
mod scan;
mod snapshot;
pub mod volatile;

#[cfg(test)]
mod proptests;

use std::io;
use std::path::PathBuf;

pub use backend::{Backend, BackendFile, FileBackend, LazyFile, MemoryBackend};
pub use log::Log;
pub use volatile::VolatileBackend;

/// Per-log configuration (names follow Kafka's topic configs).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll the active segment when an append would make it exceed this size
    /// (`segment.bytes`, default 1 GiB). Capped at `u32::MAX` because index positions are u32.
    pub segment_bytes: u64,
    /// Roll the active segment on the next append once it is older than this
    /// (`segment.ms`, default 7 days). Age is measured from its first append.
    pub segment_ms: Option<u64>,
    /// Add a sparse index entry every this many bytes (`index.interval.bytes`, default 4096).
    pub index_interval_bytes: u32,
    /// Maximum index file size; the segment rolls when the index is full
    /// (`segment.index.bytes`, default 10 MiB).
    pub segment_index_bytes: u32,
    /// fsync after this many messages were appended since the last fsync
    /// (`flush.messages`); `Some(1)` syncs every append, `None` leaves it to the OS.
    pub flush_messages: Option<u64>,
    /// fsync when the last fsync is older than this (`flush.ms`); checked on append and by
    /// [`Log::maybe_flush`].
    pub flush_ms: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 60 * 60 * 1000),
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            flush_messages: None,
            flush_ms: None,
        }
    }
}

/// Result of [`Log::append`].
#[derive(Debug, Clone)]
pub struct AppendInfo {
    /// Offset assigned to the first record (for a duplicate: of the original append).
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Largest `maxTimestamp` of the appended batches.
    pub max_timestamp: i64,
    /// Number of records appended.
    pub record_count: i64,
    /// The append was a retry of batches already in the log; nothing was written.
    pub duplicate: bool,
    /// Log start offset after the append.
    pub log_start_offset: i64,
}

/// Result of [`Log::read`].
#[derive(Debug, Clone)]
pub struct ReadInfo {
    /// Whole record batches, as stored.
    pub data: bytes::Bytes,
    /// Log start offset at the time of the read.
    pub log_start_offset: i64,
    /// Log end offset at the time of the read.
    pub log_end_offset: i64,
}

/// Result of [`Log::enforce_retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes of the deleted segment files.
    pub bytes_deleted: u64,
    /// Log start offset afterwards.
    pub log_start_offset: i64,
}

/// Options of one compaction pass ([`Log::clean`]); names follow Kafka's configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanOptions {
    /// Current wall-clock time in milliseconds.
    pub now_ms: i64,
    /// How long a tombstone stays readable after it reached the cleaned section
    /// (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// Segments whose largest timestamp is newer than `now_ms - min_compaction_lag_ms` are
    /// not compacted yet (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
    /// I/O throttle in bytes per second (`log.cleaner.io.max.bytes.per.second`); the pass
    /// sleeps as needed. `None`: unthrottled.
    pub max_bytes_per_sec: Option<u64>,
}

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments rewritten.
    pub segments_cleaned: usize,
    /// Bytes read (building the key map and rewriting).
    pub bytes_read: u64,
    /// Bytes written to the rewritten segments.
    pub bytes_written: u64,
    /// Records removed (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Expired tombstones removed (included in `records_removed`).
    pub tombstones_removed: u64,
}

/// How much a compacted log would gain from cleaning ([`Log::cleanable_info`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanableInfo {
    /// `dirty bytes / (clean bytes + dirty bytes)` over the cleanable segments (0 when empty);
    /// compare with `min.cleanable.dirty.ratio`.
    pub dirty_ratio: f64,
    /// Bytes of the dirty (never cleaned), cleanable segments.
    pub cleanable_bytes: u64,
    /// Bytes of the already cleaned segments.
    pub clean_bytes: u64,
    /// First offset not yet cleaned (the cleaner checkpoint).
    pub first_dirty_offset: i64,
    /// End of the cleanable range: the active segment and segments newer than the
    /// compaction lag start here.
    pub first_uncleanable_offset: i64,
}

/// Errors returned by the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O error on `path` (ENOSPC included; see [`StorageError::is_no_space`]).
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A batch has a bad CRC or is malformed/truncated (Kafka `CORRUPT_MESSAGE`).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A batch is structurally invalid: bad magic, lengths, offset deltas (`INVALID_RECORD`).
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// The requested offset is outside `[log_start, log_end]`.
    #[error("offset {requested} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// Requested offset.
        requested: i64,
        /// Current log start offset.
        log_start: i64,
        /// Current log end offset.
        log_end: i64,
    },
    /// An idempotent producer's sequence number does not follow the last one.
    #[error(
        "out of order sequence for producer {producer_id}: expected {expected}, found {found}"
    )]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Expected base sequence.
        expected: i32,
        /// Base sequence in the batch.
        found: i32,
    },
    /// An idempotent producer's epoch is older than the current one (fenced).
    #[error("invalid producer epoch for producer {producer_id}: current {current}, found {found}")]
    InvalidProducerEpoch {
        /// Producer id.
        producer_id: i64,
        /// Current epoch of the producer.
        current: i16,
        /// Epoch in the batch.
        found: i16,
    },
    /// Flushed data (before the recovery point) is corrupt: the partition must go offline.
    #[error("corrupt log file {} at position {position}: {reason}", file.display())]
    Corrupt {
        /// Segment file.
        file: PathBuf,
        /// Byte position of the bad batch.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log refuses writes: it was closed, or an earlier fsync failed (data durability
    /// unknown; reopen to recover).
    #[error("log is offline: {0}")]
    Offline(String),
}

impl StorageError {
    /// Whether this is an I/O error caused by a full disk (ENOSPC).
    pub fn is_no_space(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28)
            }
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<batch::BatchError> for StorageError {
    fn from(e: batch::BatchError) -> Self {
        use batch::BatchError as B;
        match e {
            B::Truncated | B::BadCrc { .. } | B::Decompress(_) => {
                StorageError::CorruptBatch(e.to_string())
            }
            B::BadMagic(_) | B::Invalid(_) => StorageError::InvalidRecord(e.to_string()),
        }
    }
}
