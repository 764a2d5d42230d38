//! The follower's side of replication: appending batches exactly as the partition leader
//! stored them (offsets and leader epochs already stamped), and starting over at the leader's
//! log start when the follower has fallen below it.

use super::{Log, Result, EPOCH_CHECKPOINT_FILE};
use crate::batch::{self, BatchError, BatchHeader};
use crate::{AppendInfo, StorageError};

/// Batches read from a leader's log with their positions in the buffer.
fn split_stored(buf: &[u8]) -> std::result::Result<Vec<(BatchHeader, u64)>, BatchError> {
    Ok(batch::split_stored(buf)?
        .into_iter()
        .map(|(h, r)| (h, r.start as u64))
        .collect())
}

impl Log {
    /// Appends batches fetched from the partition leader, byte for byte: their base offsets
    /// and partition leader epochs are kept, never re-assigned, so offsets are the same on
    /// every replica. Each batch must start at or after the log end (a gap is allowed: the
    /// leader's compaction may have removed whole batches) and leader epochs must not go
    /// down. Producer state and the leader-epoch cache follow the batches, so a follower that
    /// becomes leader answers an idempotent retry with the original offsets.
    ///
    /// An empty buffer is a no-op. Nothing is written when any batch is refused.
    pub fn append_as_follower(&self, batches: &[u8]) -> Result<AppendInfo> {
        let parts = split_stored(batches)?;
        let mut w = self.lock_writer();
        w.check_writable()?;
        let (log_start, log_end) = {
            let v = self.read_view();
            (v.log_start, v.log_end)
        };
        let Some((first, _)) = parts.first() else {
            return Ok(AppendInfo {
                base_offset: log_end,
                last_offset: log_end - 1,
                max_timestamp: -1,
                record_count: 0,
                duplicate: false,
                log_start_offset: log_start,
            });
        };
        let base_offset = first.base_offset;
        let mut next = log_end;
        let mut epoch = w.epochs.latest().unwrap_or(-1);
        let mut max_timestamp = i64::MIN;
        let mut record_count = 0i64;
        for (h, _) in &parts {
            if h.base_offset < next {
                return Err(StorageError::InvalidRecord(format!(
                    "replicated batch at offset {} is below the log end {next}",
                    h.base_offset
                )));
            }
            if h.partition_leader_epoch < epoch {
                return Err(StorageError::InvalidRecord(format!(
                    "replicated batch at offset {} has leader epoch {}, older than {epoch}",
                    h.base_offset, h.partition_leader_epoch
                )));
            }
            epoch = h.partition_leader_epoch;
            next = h.next_offset();
            max_timestamp = max_timestamp.max(h.max_timestamp);
            record_count += i64::from(h.records_count);
        }
        self.write_batches_locked(&mut w, &[batches], &parts, next)?;
        for (h, _) in &parts {
            w.producers.replay(h);
            w.epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        if w.epochs.dirty {
            self.write_file_atomic(EPOCH_CHECKPOINT_FILE, &w.epochs.serialize())?;
            w.epochs.dirty = false;
        }
        self.apply_flush_policy(&mut w, record_count)?;
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            max_timestamp,
            record_count,
            duplicate: false,
            log_start_offset: log_start,
        })
    }

    /// Empties the log and restarts it at `offset` (a follower whose log end fell below the
    /// leader's log start). No-op when the log already starts at `offset` and is empty.
    pub fn reset_to(&self, offset: i64) -> Result<()> {
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
        if log_start == offset && log_end == offset {
            return Ok(());
        }
        self.lower_recovery_point(&mut w, offset.min(log_end))?;
        self.truncate_fully_locked(&mut w, offset)?;
        // Epochs of the discarded data say nothing about the leader's log: start over.
        w.epochs.truncate_from_end(i64::MIN, true);
        self.write_file_atomic(EPOCH_CHECKPOINT_FILE, &w.epochs.serialize())?;
        w.epochs.dirty = false;
        self.write_offset_file(super::RECOVERY_POINT_FILE, offset)?;
        w.persisted_recovery_point = Some(offset);
        w.recovery_point = offset;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use bytes::BytesMut;

    use crate::batch::test_util::{idem, simple};
    use crate::{Log, LogConfig, MemoryBackend};

    fn open(b: &Arc<MemoryBackend>, dir: &str) -> Log {
        Log::open(b.clone(), Path::new(dir), LogConfig::default()).expect("open")
    }

    fn leader_bytes(l: &Log) -> Vec<u8> {
        l.read(0, usize::MAX, i64::MAX).expect("read").data.to_vec()
    }

    #[test]
    fn follower_copies_the_leaders_batches_byte_for_byte() {
        let b = Arc::new(MemoryBackend::new());
        let leader = open(&b, "/l");
        leader
            .append(BytesMut::from(&simple(3, 1, 10)[..]), 0)
            .unwrap();
        leader.assign_epoch(2).unwrap();
        leader
            .append(BytesMut::from(&simple(2, 2, 10)[..]), 2)
            .unwrap();
        let f = open(&b, "/f");
        let bytes = leader_bytes(&leader);
        let info = f.append_as_follower(&bytes).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 4));
        assert_eq!(f.log_end_offset(), 5);
        assert_eq!(leader_bytes(&f), bytes);
        assert_eq!(f.latest_epoch(), Some(2));
        assert_eq!(f.end_offset_for_epoch(0).unwrap(), Some((0, 3)));
        // Survives a reopen.
        f.close().unwrap();
        let f = open(&b, "/f");
        assert_eq!(leader_bytes(&f), bytes);
        assert_eq!(f.end_offset_for_epoch(0).unwrap(), Some((0, 3)));
    }

    #[test]
    fn follower_refuses_overlap_and_older_epochs_and_writes_nothing() {
        let b = Arc::new(MemoryBackend::new());
        let leader = open(&b, "/l");
        leader
            .append(BytesMut::from(&simple(2, 1, 10)[..]), 3)
            .unwrap();
        let bytes = leader_bytes(&leader);
        let f = open(&b, "/f");
        f.append_as_follower(&bytes).unwrap();
        assert!(f.append_as_follower(&bytes).is_err(), "overlap refused");
        let old = open(&b, "/o");
        old.append(BytesMut::from(&simple(1, 1, 10)[..]), 1)
            .unwrap();
        let mut stale = leader_bytes(&old);
        crate::batch::set_base_offset(&mut stale, 2);
        assert!(f.append_as_follower(&stale).is_err(), "older epoch refused");
        assert_eq!(f.log_end_offset(), 2);
        // A corrupt batch is refused (CRC).
        let mut bad = bytes.clone();
        crate::batch::set_base_offset(&mut bad, 2);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(f.append_as_follower(&bad).is_err());
        assert_eq!(f.log_end_offset(), 2);
        assert!(f.append_as_follower(&[]).is_ok());
    }

    #[test]
    fn follower_rebuilds_idempotent_producer_state() {
        let b = Arc::new(MemoryBackend::new());
        let leader = open(&b, "/l");
        leader
            .append(BytesMut::from(&idem(7, 0, 0, 2)[..]), 0)
            .unwrap();
        let f = open(&b, "/f");
        f.append_as_follower(&leader_bytes(&leader)).unwrap();
        // The follower, promoted, answers the retry with the original offsets.
        let retry = f.append(BytesMut::from(&idem(7, 0, 0, 2)[..]), 1).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (0, 1));
    }

    #[test]
    fn truncate_then_follow_the_new_leader() {
        let b = Arc::new(MemoryBackend::new());
        let f = open(&b, "/f");
        f.append(BytesMut::from(&simple(2, 1, 10)[..]), 0).unwrap();
        f.append(BytesMut::from(&simple(2, 1, 10)[..]), 1).unwrap();
        f.truncate_to(2).unwrap();
        assert_eq!(f.latest_epoch(), Some(0));
        let leader = open(&b, "/l");
        leader
            .append(BytesMut::from(&simple(2, 1, 10)[..]), 0)
            .unwrap();
        leader
            .append(BytesMut::from(&simple(3, 1, 10)[..]), 2)
            .unwrap();
        let all = leader_bytes(&leader);
        let tail = leader.read(2, usize::MAX, i64::MAX).unwrap().data;
        f.append_as_follower(&tail).unwrap();
        assert_eq!(leader_bytes(&f), all);
        assert_eq!(f.end_offset_for_epoch(1).unwrap(), Some((0, 2)));
    }

    #[test]
    fn truncate_at_the_log_end_drops_an_epoch_without_batches() {
        // A deposed leader: epoch 1 holds batches, epoch 3 was assigned at the log end on
        // election and nothing was appended in it before the next leader took over.
        let b = Arc::new(MemoryBackend::new());
        let f = open(&b, "/f");
        f.append(BytesMut::from(&simple(2, 1, 10)[..]), 1).unwrap();
        f.assign_epoch(3).unwrap();
        assert_eq!(f.latest_epoch(), Some(3));
        // The new leader answers the fetch (last fetched epoch 3) with diverging epoch
        // (1, 2): the truncation offset is the log end, which removes no batch but must
        // remove epoch 3, or the next fetch diverges the same way again, forever.
        f.truncate_to(2).unwrap();
        assert_eq!(f.log_end_offset(), 2);
        assert_eq!(f.latest_epoch(), Some(1));
        f.close().unwrap();
        let f = open(&b, "/f");
        assert_eq!(f.latest_epoch(), Some(1), "persisted");
        // An empty log (an idle partition the follower once led) loses it too.
        let e = open(&b, "/e");
        e.assign_epoch(2).unwrap();
        e.truncate_to(0).unwrap();
        assert_eq!(e.latest_epoch(), None);
        // Epochs whose batches stay are kept.
        let k = open(&b, "/k");
        k.append(BytesMut::from(&simple(2, 1, 10)[..]), 4).unwrap();
        k.truncate_to(5).unwrap();
        assert_eq!(k.latest_epoch(), Some(4));
    }

    #[test]
    fn reset_to_restarts_the_log_at_the_leaders_start() {
        let b = Arc::new(MemoryBackend::new());
        let f = open(&b, "/f");
        f.append(BytesMut::from(&simple(2, 1, 10)[..]), 0).unwrap();
        f.reset_to(10).unwrap();
        assert_eq!((f.log_start_offset(), f.log_end_offset()), (10, 10));
        let leader = open(&b, "/l");
        leader
            .append(BytesMut::from(&simple(12, 1, 10)[..]), 0)
            .unwrap();
        let mut tail = simple(1, 1, 10);
        crate::batch::set_base_offset(&mut tail, 10);
        crate::batch::set_partition_leader_epoch(&mut tail, 0);
        assert_eq!(f.latest_epoch(), None);
        f.append_as_follower(&tail).unwrap();
        assert_eq!(f.latest_epoch(), Some(0));
        assert_eq!(f.log_end_offset(), 11);
        f.close().unwrap();
        let f = open(&b, "/f");
        assert_eq!((f.log_start_offset(), f.log_end_offset()), (10, 11));
    }
}
