//! Leader epoch cache (KIP-101/279/320): `(epoch, start_offset)` pairs, both increasing.

/// In-memory leader epoch cache; persisted by the log as `leader-epoch-checkpoint`.
#[derive(Debug, Clone, Default)]
pub(crate) struct EpochCache {
    entries: Vec<(i32, i64)>,
    /// Changed since last persisted.
    pub(crate) dirty: bool,
}

impl EpochCache {
    /// An empty cache that still needs to be persisted.
    pub(crate) fn new_dirty() -> Self {
        EpochCache {
            entries: Vec::new(),
            dirty: true,
        }
    }

    pub(crate) fn latest(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest epoch.
    /// Negative epochs (no leader epoch) are ignored.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) {
        if epoch < 0 {
            return;
        }
        match self.entries.last() {
            Some(&(e, _)) if epoch <= e => {}
            _ => {
                // Keep start offsets monotonic: drop entries that start after this one.
                while self.entries.last().is_some_and(|l| l.1 > start_offset) {
                    self.entries.pop();
                }
                self.entries.push((epoch, start_offset));
                self.dirty = true;
            }
        }
    }

    /// Removes entries whose start offset is `>= end` (`inclusive == true`) or `> end`.
    pub(crate) fn truncate_from_end(&mut self, end: i64, inclusive: bool) {
        let before = self.entries.len();
        self.entries
            .retain(|&(_, s)| if inclusive { s < end } else { s <= end });
        if self.entries.len() != before {
            self.dirty = true;
        }
    }

    /// Kafka's `endOffsetFor`: for the requested epoch, the largest known epoch `<=`
    /// requested and the start offset of the next larger epoch (or `log_end` for the latest).
    /// A requested epoch below the first known epoch yields `(requested, first start)`;
    /// one above the latest known epoch, or an empty cache, yields `None`.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
        let latest = self.entries.last()?;
        if requested == latest.0 {
            return Some((requested, log_end));
        }
        let higher_idx = self.entries.partition_point(|e| e.0 <= requested);
        let higher = self.entries.get(higher_idx)?;
        if higher_idx == 0 {
            return Some((requested, higher.1));
        }
        let floor = self.entries.get(higher_idx - 1)?;
        Some((floor.0, higher.1))
    }

    pub(crate) fn serialize(&self) -> Vec<u8> {
        let mut s = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {o}\n"));
        }
        s.into_bytes()
    }

    /// Parses the checkpoint text; `None` if malformed.
    pub(crate) fn parse(data: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(data).ok()?;
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let n: usize = lines.next()?.trim().parse().ok()?;
        let mut entries = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let mut it = lines.next()?.split_whitespace();
            let e: i32 = it.next()?.parse().ok()?;
            let o: i64 = it.next()?.parse().ok()?;
            if let Some(&(pe, po)) = entries.last() {
                if e <= pe || o < po {
                    return None;
                }
            }
            entries.push((e, o));
        }
        Some(EpochCache {
            entries,
            dirty: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        let mut c = EpochCache::default();
        assert_eq!(c.end_offset_for(0, 10), None);
        c.assign(1, 0);
        c.assign(1, 5);
        c.assign(3, 10);
        c.assign(2, 12); // older epoch ignored
        c.assign(6, 20);
        assert_eq!(c.entries(), &[(1, 0), (3, 10), (6, 20)]);
        assert_eq!(c.end_offset_for(6, 30), Some((6, 30)));
        assert_eq!(c.end_offset_for(1, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(2, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(0, 30), Some((0, 0)));
        assert_eq!(c.end_offset_for(7, 30), None);
        c.truncate_from_end(10, true);
        assert_eq!(c.entries(), &[(1, 0)]);
    }

    #[test]
    fn roundtrip() {
        let mut c = EpochCache::default();
        c.assign(2, 0);
        c.assign(5, 100);
        let p = EpochCache::parse(&c.serialize()).unwrap();
        assert_eq!(p.entries(), c.entries());
        assert!(EpochCache::parse(b"0\n2\n1 5\n").is_none());
        assert!(EpochCache::parse(b"0\n2\n3 5\n1 6\n").is_none());
        assert!(EpochCache::parse(b"garbage").is_none());
    }
}
