//! The simulation's in-memory partition log: entries (offset = index, leader epoch,
//! value) and a leader epoch cache (epoch → start offset), with Kafka's
//! `endOffsetForEpoch`.

/// One record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The leader epoch it was appended in.
    pub(crate) epoch: i32,
    /// Its payload (unique per client write).
    pub(crate) value: u64,
}

/// A replica's log.
#[derive(Debug, Clone, Default)]
pub(crate) struct Log {
    /// `entries[o]` is the record at offset `o`.
    pub(crate) entries: Vec<Entry>,
    /// `(epoch, start offset)`, both increasing.
    pub(crate) epochs: Vec<(i32, i64)>,
}

impl Log {
    /// Log end offset.
    pub(crate) fn end(&self) -> i64 {
        self.entries.len() as i64
    }

    /// The record at `offset`.
    pub(crate) fn get(&self, offset: i64) -> Option<Entry> {
        usize::try_from(offset)
            .ok()
            .and_then(|o| self.entries.get(o).copied())
    }

    /// The latest epoch of the cache (what a follower sends as last fetched epoch).
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|(e, _)| *e)
    }

    /// Records that `epoch` starts at `start` if it is newer than the latest one.
    pub(crate) fn assign(&mut self, epoch: i32, start: i64) {
        if self.latest_epoch().is_none_or(|l| l < epoch) {
            self.epochs.push((epoch, start));
        }
    }

    /// Appends a record keeping its epoch.
    pub(crate) fn append(&mut self, e: Entry) {
        self.assign(e.epoch, self.end());
        self.entries.push(e);
    }

    /// Removes everything at and above `offset` (and the epochs starting there).
    pub(crate) fn truncate(&mut self, offset: i64) {
        if offset >= self.end() {
            return;
        }
        let keep = usize::try_from(offset.max(0)).unwrap_or(0);
        self.entries.truncate(keep);
        self.epochs.retain(|(_, start)| *start < offset.max(0));
    }

    /// Kafka's `endOffsetForEpoch`: the largest epoch `<= epoch` and the offset where it
    /// ends (the next epoch's start, or the log end); `None` without such an epoch.
    pub(crate) fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let (latest, _) = *self.epochs.last()?;
        if latest == epoch {
            return Some((latest, self.end()));
        }
        let idx = self.epochs.iter().rposition(|(e, _)| *e <= epoch)?;
        let end = self
            .epochs
            .get(idx + 1)
            .map_or(self.end(), |(_, start)| *start);
        Some((self.epochs[idx].0, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(epochs: &[i32]) -> Log {
        let mut l = Log::default();
        for (i, e) in epochs.iter().enumerate() {
            l.append(Entry {
                epoch: *e,
                value: i as u64,
            });
        }
        l
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let l = log(&[0, 0, 2, 2, 2, 5]);
        assert_eq!(l.end_offset_for_epoch(5), Some((5, 6)));
        assert_eq!(l.end_offset_for_epoch(0), Some((0, 2)));
        assert_eq!(l.end_offset_for_epoch(1), Some((0, 2)));
        assert_eq!(l.end_offset_for_epoch(3), Some((2, 5)));
        assert_eq!(l.end_offset_for_epoch(9), Some((5, 6)));
        assert_eq!(log(&[3]).end_offset_for_epoch(1), None);
        assert_eq!(Log::default().end_offset_for_epoch(1), None);
    }

    #[test]
    fn truncate_drops_epochs_starting_there() {
        let mut l = log(&[0, 0, 2, 2, 5]);
        l.truncate(2);
        assert_eq!(l.end(), 2);
        assert_eq!(l.epochs, vec![(0, 0)]);
        l.assign(7, 2);
        assert_eq!(l.end_offset_for_epoch(7), Some((7, 2)));
        l.truncate(5);
        assert_eq!(l.epochs, vec![(0, 0), (7, 2)]);
    }
}
