//! Idempotent producer state: per producer id, the epoch and the last 5 batches' sequences.

use std::collections::{HashMap, VecDeque};

use crate::batch::{increment_sequence, BatchHeader};
use crate::StorageError;

/// Number of recent batches remembered per producer for duplicate detection (Kafka: 5).
pub(crate) const MAX_CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
}

impl ProducerEntry {
    fn push(&mut self, m: BatchMeta) {
        self.batches.push_back(m);
        while self.batches.len() > MAX_CACHED_BATCHES {
            self.batches.pop_front();
        }
    }
}

/// Outcome of checking one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Append the batch.
    Append,
    /// Already in the log at these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Default)]
pub(crate) struct ProducerStates {
    map: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    /// All producer entries (for the clean-shutdown snapshot).
    pub(crate) fn entries(&self) -> Vec<(i64, ProducerEntry)> {
        self.map.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    pub(crate) fn from_entries(entries: Vec<(i64, ProducerEntry)>) -> Self {
        ProducerStates {
            map: entries.into_iter().collect(),
        }
    }

    /// Checks batch `h` (to be written at `base_offset` if appended) against the state,
    /// staging the updated entry in `pending` (which overlays `self`).
    pub(crate) fn check(
        &self,
        pending: &mut HashMap<i64, ProducerEntry>,
        h: &BatchHeader,
        base_offset: i64,
    ) -> Result<Check, StorageError> {
        let pid = h.producer_id;
        if pid < 0 {
            return Ok(Check::Append);
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset,
            last_offset: base_offset + i64::from(h.last_offset_delta),
        };
        let cur = pending.get(&pid).or_else(|| self.map.get(&pid));
        let Some(cur) = cur else {
            let mut e = ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            };
            if !h.is_control() {
                e.push(meta);
            }
            pending.insert(pid, e);
            return Ok(Check::Append);
        };
        if h.producer_epoch < cur.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id: pid,
                current: cur.epoch,
                found: h.producer_epoch,
            });
        }
        if h.is_control() {
            let mut e = cur.clone();
            if h.producer_epoch > e.epoch {
                e.epoch = h.producer_epoch;
                e.batches.clear();
            }
            pending.insert(pid, e);
            return Ok(Check::Append);
        }
        if h.producer_epoch > cur.epoch {
            if h.base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id: pid,
                    expected: 0,
                    found: h.base_sequence,
                });
            }
            let mut e = ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            };
            e.push(meta);
            pending.insert(pid, e);
            return Ok(Check::Append);
        }
        if let Some(d) = cur
            .batches
            .iter()
            .find(|b| b.first_seq == meta.first_seq && b.last_seq == meta.last_seq)
        {
            return Ok(Check::Duplicate {
                base_offset: d.base_offset,
                last_offset: d.last_offset,
            });
        }
        if let Some(last) = cur.batches.back() {
            let expected = increment_sequence(last.last_seq, 1);
            if h.base_sequence != expected {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id: pid,
                    expected,
                    found: h.base_sequence,
                });
            }
        }
        let mut e = cur.clone();
        e.push(meta);
        pending.insert(pid, e);
        Ok(Check::Append)
    }

    /// Last offset of each producer's latest data batch.
    pub(crate) fn last_batch_offsets(&self) -> HashMap<i64, i64> {
        self.map
            .iter()
            .filter_map(|(pid, e)| e.batches.back().map(|b| (*pid, b.last_offset)))
            .collect()
    }

    /// Applies staged entries.
    pub(crate) fn commit(&mut self, pending: HashMap<i64, ProducerEntry>) {
        self.map.extend(pending);
    }

    /// Replays a batch already in the log (recovery): no checks.
    pub(crate) fn replay(&mut self, h: &BatchHeader) {
        let pid = h.producer_id;
        if pid < 0 {
            return;
        }
        let e = self.map.entry(pid).or_insert_with(|| ProducerEntry {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
        });
        if h.producer_epoch > e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        if !h.is_control() {
            e.push(BatchMeta {
                first_seq: h.base_sequence,
                last_seq: h.last_sequence(),
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
            });
        }
    }
}
