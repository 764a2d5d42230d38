//! Clean-shutdown snapshot: per-segment metadata and producer state, so that opening a
//! cleanly closed log needs no segment scan.
//!
//! Layout (big-endian): `"SLSNAP01"`, `u32` segment count, per segment
//! `base i64, size u64, next_offset i64, first_batch_offset i64 (-1 none),
//! has_max_ts u8, max_ts i64, max_ts_offset i64, bytes_since_index u64,
//! created_ms i64 (i64::MIN none), index_entries u64, time_entries u64`; then `u32` producer
//! count, per producer `pid i64, epoch i16, n u8` and `n` times
//! `first_seq i32, last_seq i32, base_offset i64, last_offset i64`; then a CRC-32C `u32`
//! of everything before it.

use std::collections::VecDeque;

use crate::producer::{BatchMeta, ProducerEntry};

const MAGIC: &[u8; 8] = b"SLSNAP01";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegMeta {
    pub base: i64,
    pub size: u64,
    pub next_offset: i64,
    pub first_batch_offset: Option<i64>,
    pub max_ts: Option<(i64, i64)>,
    pub bytes_since_index: u64,
    pub created_ms: Option<i64>,
    pub index_entries: u64,
    pub time_entries: u64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub segments: Vec<SegMeta>,
    pub producers: Vec<(i64, ProducerEntry)>,
}

struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    fn i64(&mut self) -> Option<i64> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_be_bytes)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
}

impl Snapshot {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(64 + self.segments.len() * 80 + self.producers.len() * 64);
        o.extend_from_slice(MAGIC);
        o.extend_from_slice(&(self.segments.len() as u32).to_be_bytes());
        for s in &self.segments {
            o.extend_from_slice(&s.base.to_be_bytes());
            o.extend_from_slice(&s.size.to_be_bytes());
            o.extend_from_slice(&s.next_offset.to_be_bytes());
            o.extend_from_slice(&s.first_batch_offset.unwrap_or(-1).to_be_bytes());
            let (has, ts, off) = s.max_ts.map_or((0u8, 0, 0), |(t, o)| (1, t, o));
            o.push(has);
            o.extend_from_slice(&ts.to_be_bytes());
            o.extend_from_slice(&off.to_be_bytes());
            o.extend_from_slice(&s.bytes_since_index.to_be_bytes());
            o.extend_from_slice(&s.created_ms.unwrap_or(i64::MIN).to_be_bytes());
            o.extend_from_slice(&s.index_entries.to_be_bytes());
            o.extend_from_slice(&s.time_entries.to_be_bytes());
        }
        o.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            o.extend_from_slice(&pid.to_be_bytes());
            o.extend_from_slice(&e.epoch.to_be_bytes());
            o.push(e.batches.len().min(255) as u8);
            for b in e.batches.iter().take(255) {
                o.extend_from_slice(&b.first_seq.to_be_bytes());
                o.extend_from_slice(&b.last_seq.to_be_bytes());
                o.extend_from_slice(&b.base_offset.to_be_bytes());
                o.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&o);
        o.extend_from_slice(&crc.to_be_bytes());
        o
    }

    /// Decodes a snapshot; `None` if it is malformed or its CRC does not match.
    pub(crate) fn decode(data: &[u8]) -> Option<Self> {
        let (body, crc) = data.split_at_checked(data.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let mut r = Rd(body);
        if &r.take::<8>()? != MAGIC {
            return None;
        }
        let n = r.u32()? as usize;
        let mut segments = Vec::with_capacity(n.min(body.len() / 80));
        for _ in 0..n {
            let base = r.i64()?;
            let size = r.u64()?;
            let next_offset = r.i64()?;
            let first = r.i64()?;
            let has = r.u8()?;
            let ts = r.i64()?;
            let off = r.i64()?;
            let bytes_since_index = r.u64()?;
            let created = r.i64()?;
            let index_entries = r.u64()?;
            let time_entries = r.u64()?;
            segments.push(SegMeta {
                base,
                size,
                next_offset,
                first_batch_offset: (first >= 0).then_some(first),
                max_ts: (has == 1).then_some((ts, off)),
                bytes_since_index,
                created_ms: (created != i64::MIN).then_some(created),
                index_entries,
                time_entries,
            });
        }
        let n = r.u32()? as usize;
        let mut producers = Vec::with_capacity(n.min(body.len() / 11));
        for _ in 0..n {
            let pid = r.i64()?;
            let epoch = r.i16()?;
            let k = r.u8()?;
            let mut batches = VecDeque::with_capacity(usize::from(k));
            for _ in 0..k {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            producers.push((pid, ProducerEntry { epoch, batches }));
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(Snapshot {
            segments,
            producers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let s = Snapshot {
            segments: vec![SegMeta {
                base: 10,
                size: 1234,
                next_offset: 99,
                first_batch_offset: Some(10),
                max_ts: Some((777, 42)),
                bytes_since_index: 17,
                created_ms: None,
                index_entries: 3,
                time_entries: 2,
            }],
            producers: vec![(
                5,
                ProducerEntry {
                    epoch: 2,
                    batches: VecDeque::from(vec![BatchMeta {
                        first_seq: 0,
                        last_seq: 4,
                        base_offset: 10,
                        last_offset: 14,
                    }]),
                },
            )],
        };
        let enc = s.encode();
        let d = Snapshot::decode(&enc).unwrap();
        assert_eq!(d.segments, s.segments);
        assert_eq!(d.producers.len(), 1);
        assert_eq!(d.producers[0].1.batches, s.producers[0].1.batches);
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 1;
            assert!(Snapshot::decode(&bad).is_none(), "flip at {i}");
        }
        assert!(Snapshot::decode(&enc[..enc.len() - 1]).is_none());
        assert!(Snapshot::decode(b"").is_none());
    }
}
