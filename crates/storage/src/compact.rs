//! Record-level surgery for log compaction: decompress a batch, find each record's offset,
//! key and whether it is a tombstone, and rebuild the batch with a subset of its records.
//!
//! A rebuilt batch keeps the original header (base offset, base timestamp, max timestamp,
//! attributes, producer id/epoch, base sequence, leader epoch and `lastOffsetDelta`), so the
//! offset and timestamp deltas of the kept records stay valid and their bytes are copied
//! verbatim (headers included): only `batchLength`, `recordsCount` and the CRC change, and
//! the records are recompressed with the batch's codec. A batch left without records has
//! an empty, uncompressed body (Kafka keeps such batches to preserve producer state).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use crate::batch::{BatchError, BatchHeader, CRC_START, HEADER_LEN, MAX_DECODE_RECORDS};

/// One record inside a (decompressed) batch body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawRecord {
    /// Byte range of the whole record (length prefix included) in the body.
    pub range: Range<usize>,
    /// Absolute offset.
    pub offset: i64,
    /// Key (`None` for a null key).
    pub key: Option<Bytes>,
    /// The value is null (a tombstone).
    pub tombstone: bool,
}

/// The decompressed records of a batch.
pub(crate) struct Body {
    pub data: Bytes,
    pub records: Vec<RawRecord>,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| BatchError::Invalid("record varint truncated".into()))?;
        *pos += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(BatchError::Invalid("record varint too long".into()))
}

fn codec_err(e: impl std::fmt::Display) -> BatchError {
    BatchError::Decompress(e.to_string())
}

/// Decompresses the records section of a batch with codec `codec`.
fn decompress(codec: u8, body: &[u8]) -> Result<Bytes, BatchError> {
    let mut src = Bytes::copy_from_slice(body);
    match codec {
        0 => Ok(src),
        1 => <Gzip as Decompressor<Bytes>>::decompress(&mut src, |b| Ok(b.clone())),
        2 => <Snappy as Decompressor<Bytes>>::decompress(&mut src, |b| Ok(b.clone())),
        3 => <Lz4 as Decompressor<Bytes>>::decompress(&mut src, |b| Ok(b.clone())),
        4 => <Zstd as Decompressor<Bytes>>::decompress(&mut src, |b| Ok(b.clone())),
        c => {
            return Err(BatchError::Invalid(format!(
                "unknown compression codec {c}"
            )))
        }
    }
    .map_err(codec_err)
}

/// Compresses `raw` records with codec `codec`.
fn compress(codec: u8, raw: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut out = BytesMut::new();
    match codec {
        0 => return Ok(raw.to_vec()),
        1 => <Gzip as Compressor<BytesMut>>::compress(&mut out, |t| {
            t.extend_from_slice(raw);
            Ok(())
        }),
        2 => <Snappy as Compressor<BytesMut>>::compress(&mut out, |t| {
            t.extend_from_slice(raw);
            Ok(())
        }),
        3 => <Lz4 as Compressor<BytesMut>>::compress(&mut out, |t| {
            t.extend_from_slice(raw);
            Ok(())
        }),
        4 => <Zstd as Compressor<BytesMut>>::compress(&mut out, |t| {
            t.extend_from_slice(raw);
            Ok(())
        }),
        c => {
            return Err(BatchError::Invalid(format!(
                "unknown compression codec {c}"
            )))
        }
    }
    .map_err(codec_err)?;
    Ok(out.to_vec())
}

/// Decodes the records of the (stored, CRC-checked) batch `buf` with header `h`.
pub(crate) fn parse_body(h: &BatchHeader, buf: &[u8]) -> Result<Body, BatchError> {
    if h.records_count > MAX_DECODE_RECORDS {
        return Err(BatchError::Invalid(format!(
            "refusing to decode {} records",
            h.records_count
        )));
    }
    let body = buf
        .get(HEADER_LEN..h.total_len())
        .ok_or(BatchError::Truncated)?;
    let data = if h.records_count == 0 && body.is_empty() {
        Bytes::new()
    } else {
        decompress(h.compression(), body)?
    };
    let mut records =
        Vec::with_capacity(usize::try_from(h.records_count).unwrap_or(0).min(1 << 16));
    let mut pos = 0usize;
    for _ in 0..h.records_count {
        let start = pos;
        let len = varint(&data, &mut pos)?;
        let len = usize::try_from(len)
            .map_err(|_| BatchError::Invalid(format!("negative record length {len}")))?;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= data.len())
            .ok_or_else(|| BatchError::Invalid("record extends past the batch".into()))?;
        let rec = data.get(pos..end).ok_or(BatchError::Truncated)?;
        let mut p = 1usize; // attributes
        varint(rec, &mut p)?; // timestamp delta
        let offset_delta = varint(rec, &mut p)?;
        let key_len = varint(rec, &mut p)?;
        let key = if key_len < 0 {
            None
        } else {
            let kl = usize::try_from(key_len).unwrap_or(usize::MAX);
            let k = rec
                .get(p..p.saturating_add(kl))
                .ok_or_else(|| BatchError::Invalid("record key truncated".into()))?;
            p += kl;
            Some(data.slice_ref(k))
        };
        let value_len = varint(rec, &mut p)?;
        records.push(RawRecord {
            range: start..end,
            offset: h.base_offset + offset_delta,
            key,
            tombstone: value_len < 0,
        });
        pos = end;
    }
    Ok(Body { data, records })
}

/// Rebuilds batch `orig` keeping only the records of `body` whose indexes are in `keep`
/// (ascending). The result has a valid CRC and the original header otherwise.
pub(crate) fn rebuild(orig: &[u8], body: &Body, keep: &[usize]) -> Result<Vec<u8>, BatchError> {
    let header = orig.get(..HEADER_LEN).ok_or(BatchError::Truncated)?;
    let h = BatchHeader::parse(orig)?;
    let mut raw = Vec::new();
    for &i in keep {
        let r = body
            .records
            .get(i)
            .ok_or_else(|| BatchError::Invalid("record index out of range".into()))?;
        raw.extend_from_slice(
            body.data
                .get(r.range.clone())
                .ok_or(BatchError::Truncated)?,
        );
    }
    let mut attrs = h.attributes;
    let payload = if keep.is_empty() {
        attrs &= !0x07;
        Vec::new()
    } else {
        compress(h.compression(), &raw)?
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&payload);
    let batch_len = i32::try_from(out.len() - 12)
        .map_err(|_| BatchError::Invalid("rebuilt batch too large".into()))?;
    let count =
        i32::try_from(keep.len()).map_err(|_| BatchError::Invalid("too many records".into()))?;
    out[8..12].copy_from_slice(&batch_len.to_be_bytes());
    out[21..23].copy_from_slice(&attrs.to_be_bytes());
    out[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_util::{encoded, hand_batch};
    use crate::batch::{self, validate_stored};
    use kafka_protocol::records::Compression;

    #[test]
    fn parse_and_rebuild_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut b = encoded(c, &[10, 11, 12, 13, 14], true);
            batch::set_base_offset(&mut b, 100);
            let h = batch::validate(&b).unwrap();
            let body = parse_body(&h, &b).unwrap();
            let offs: Vec<i64> = body.records.iter().map(|r| r.offset).collect();
            assert_eq!(offs, vec![100, 101, 102, 103, 104]);
            assert_eq!(body.records[1].key.as_deref(), Some(&b"key-1"[..]));
            assert!(body.records[2].tombstone && !body.records[1].tombstone);
            let out = rebuild(&b, &body, &[1, 3]).unwrap();
            let h2 = validate_stored(&out).unwrap();
            assert!(
                batch::validate(&out).is_err(),
                "delta no longer matches count"
            );
            assert_eq!(h2.compression(), c as u8);
            assert_eq!(h2.records_count, 2);
            assert_eq!(h2.last_offset_delta, 4);
            assert_eq!(h2.base_timestamp, h.base_timestamp);
            let recs = batch::records(&out).unwrap();
            assert_eq!(
                recs.iter()
                    .map(|r| (r.offset, r.timestamp))
                    .collect::<Vec<_>>(),
                vec![(101, 11), (103, 13)]
            );
            // Kept record bytes are identical to the originals.
            let body2 = parse_body(&h2, &out).unwrap();
            assert_eq!(
                &body2.data[body2.records[0].range.clone()],
                &body.data[body.records[1].range.clone()]
            );
            // Empty rebuild: no records, uncompressed, still a valid stored batch.
            let empty = rebuild(&b, &body, &[]).unwrap();
            let he = validate_stored(&empty).unwrap();
            assert_eq!((he.records_count, he.compression()), (0, 0));
            assert_eq!(he.last_offset(), h.last_offset());
            assert!(batch::records(&empty).unwrap().is_empty());
            assert!(parse_body(&he, &empty).unwrap().records.is_empty());
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let b = hand_batch(0, (-1, -1, -1), &[(1, Some(b"k"), Some(b"v"))]);
        let mut h = batch::validate(&b).unwrap();
        h.records_count = 2;
        assert!(parse_body(&h, &b).is_err());
        let mut cut = b.clone();
        cut.truncate(b.len() - 1);
        assert!(parse_body(&batch::BatchHeader::parse(&b).unwrap(), &cut).is_err());
    }
}
