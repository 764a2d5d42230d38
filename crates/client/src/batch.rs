//! Fast v2 record batches for load generation: [`BatchBuilder`] writes records straight into
//! the batch buffer (no intermediate record structs), and [`walk_batches`] counts the records
//! of fetched batches and hands each record's key and value to a callback without building
//! [`ConsumedRecord`](crate::ConsumedRecord)s. The general encoder/decoder is in `records.rs`.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use crate::records::Compression;

/// Size of a v2 batch header (baseOffset .. recordCount).
pub const BATCH_HEADER_LEN: usize = 61;
const LENGTH_AT: usize = 8;
const EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// The idempotent producer fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    /// Producer id from InitProducerId.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record.
    pub base_sequence: i32,
}

fn put_varint(buf: &mut BytesMut, v: i32) {
    put_varlong(buf, i64::from(v));
}

fn put_varlong(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    let bits = 64 - z.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

/// Builds one v2 record batch, record by record (offsets 0.., no headers).
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty batch whose buffer has room for `capacity` bytes of records.
    pub fn new(capacity: usize) -> BatchBuilder {
        let mut buf = BytesMut::with_capacity(BATCH_HEADER_LEN + capacity);
        buf.put_bytes(0, BATCH_HEADER_LEN);
        BatchBuilder {
            buf,
            count: 0,
            base_timestamp: -1,
            max_timestamp: -1,
        }
    }

    /// Records appended so far.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// The batch's uncompressed size so far, header included.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record with creation time `timestamp_ms`.
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: &[u8]) {
        if self.count == 0 {
            self.base_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let ts_delta = timestamp_ms - self.base_timestamp;
        let key_len = key.map_or(-1, |k| k.len() as i64);
        let value_len = value.len() as i64;
        let body_len = 1
            + varint_len(ts_delta)
            + varint_len(i64::from(self.count))
            + varint_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value_len)
            + value.len()
            + 1;
        self.buf.reserve(body_len + 5);
        put_varlong(&mut self.buf, body_len as i64);
        self.buf.put_u8(0); // attributes
        put_varlong(&mut self.buf, ts_delta);
        put_varint(&mut self.buf, self.count);
        put_varlong(&mut self.buf, key_len);
        if let Some(k) = key {
            self.buf.put_slice(k);
        }
        put_varlong(&mut self.buf, value_len);
        self.buf.put_slice(value);
        put_varint(&mut self.buf, 0); // headers
        self.count += 1;
    }

    /// Finishes the batch: compresses the records section with `compression`, fills the
    /// header (idempotent fields from `producer`, else none) and the CRC.
    pub fn finish(
        self,
        compression: Compression,
        producer: Option<ProducerFields>,
    ) -> Result<Bytes, String> {
        if self.count == 0 {
            return Err("cannot finish an empty batch".into());
        }
        let mut buf = match compression {
            Compression::None => self.buf,
            codec => {
                let records = &self.buf[BATCH_HEADER_LEN..];
                let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + records.len() / 2 + 64);
                out.put_bytes(0, BATCH_HEADER_LEN);
                let fill = |b: &mut BytesMut| {
                    b.put_slice(records);
                    Ok(())
                };
                let done = match codec {
                    Compression::Gzip => Gzip::compress(&mut out, fill),
                    Compression::Snappy => Snappy::compress(&mut out, fill),
                    Compression::Lz4 => Lz4::compress(&mut out, fill),
                    Compression::Zstd => <Zstd as Compressor<BytesMut>>::compress(&mut out, fill),
                    Compression::None => Ok(()),
                };
                done.map_err(|e| format!("compressing a batch with {codec}: {e}"))?;
                out
            }
        };
        let length = i32::try_from(buf.len() - 12).map_err(|_| "batch too large".to_string())?;
        let attributes: i16 = match compression {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        };
        let p = producer.unwrap_or(ProducerFields {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        });
        let h = &mut buf[..BATCH_HEADER_LEN];
        h[0..8].copy_from_slice(&0i64.to_be_bytes());
        h[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        h[EPOCH_AT..EPOCH_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        h[MAGIC_AT] = 2;
        h[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        h[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&(self.count - 1).to_be_bytes());
        h[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&p.producer_id.to_be_bytes());
        h[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
            .copy_from_slice(&p.producer_epoch.to_be_bytes());
        h[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&p.base_sequence.to_be_bytes());
        h[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(buf.freeze())
    }
}

/// What [`walk_batches`] found in a fetched `records` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkSummary {
    /// The offset after the last complete batch, if there was one.
    pub next_offset: Option<i64>,
    /// Data records handed to the callback (offsets at or after `from`).
    pub records: u64,
    /// Complete batches seen.
    pub batches: u64,
}

fn get_varlong(data: &[u8], at: &mut usize) -> Result<i64, String> {
    let mut z: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(&b) = data.get(*at) else {
            return Err("truncated varint".into());
        };
        *at += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err("varint too long".into());
        }
    }
    Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
}

fn get_slice<'a>(data: &'a [u8], at: &mut usize, len: i64) -> Result<Option<&'a [u8]>, String> {
    if len < 0 {
        return Ok(None);
    }
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| at.checked_add(l))
        .filter(|&e| e <= data.len())
        .ok_or_else(|| "record field runs past the batch".to_string())?;
    let s = &data[*at..end];
    *at = end;
    Ok(Some(s))
}

/// The offset after the last complete batch in a fetched `records` field, reading only the
/// batch headers (to ask for the next fetch before the records are looked at).
pub fn next_offset_after(data: &[u8]) -> Option<i64> {
    let mut at = 0usize;
    let mut next = None;
    while data.len() - at >= BATCH_HEADER_LEN {
        let h = &data[at..];
        let base = i64::from_be_bytes(h[0..8].try_into().ok()?);
        let length = i32::from_be_bytes(h[LENGTH_AT..LENGTH_AT + 4].try_into().ok()?);
        let total = usize::try_from(length).ok()?.checked_add(12)?;
        if total < BATCH_HEADER_LEN || h.len() < total {
            break;
        }
        let delta = i32::from_be_bytes(
            h[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .ok()?,
        );
        next = Some(base + i64::from(delta) + 1);
        at += total;
    }
    next
}

/// Calls `f(offset, key, value)` for each record of a decompressed records section.
fn walk_records(
    data: &[u8],
    count: i32,
    base_offset: i64,
    from: i64,
    f: &mut impl FnMut(i64, Option<&[u8]>, Option<&[u8]>),
) -> Result<u64, String> {
    let mut at = 0;
    let mut seen = 0;
    for _ in 0..count {
        let len = get_varlong(data, &mut at)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|&e| e <= data.len())
            .ok_or_else(|| "record runs past the batch".to_string())?;
        let rec = &data[..end];
        at += 1; // attributes
        get_varlong(rec, &mut at)?; // timestamp delta
        let offset = base_offset + get_varlong(rec, &mut at)?;
        let key_len = get_varlong(rec, &mut at)?;
        let key = get_slice(rec, &mut at, key_len)?;
        let value_len = get_varlong(rec, &mut at)?;
        let value = get_slice(rec, &mut at, value_len)?;
        at = end; // headers are skipped
        if offset >= from {
            f(offset, key, value);
            seen += 1;
        }
    }
    Ok(seen)
}

/// Walks the complete v2 batches in a fetched `records` field: checks each batch's CRC when
/// `check_crc`, skips control batches, decompresses, and calls `f(offset, key, value)` for
/// every data record at or after offset `from`. A trailing partial batch is ignored.
pub fn walk_batches(
    data: &Bytes,
    from: i64,
    check_crc: bool,
    mut f: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>),
) -> Result<WalkSummary, String> {
    let mut out = WalkSummary::default();
    let mut at = 0usize;
    while data.len() - at >= BATCH_HEADER_LEN {
        let h = &data[at..];
        let base_offset = i64::from_be_bytes(h[0..8].try_into().map_err(|_| "short header")?);
        let length = i32::from_be_bytes(
            h[LENGTH_AT..LENGTH_AT + 4]
                .try_into()
                .map_err(|_| "short header")?,
        );
        let total = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(12))
            .filter(|&t| t >= BATCH_HEADER_LEN)
            .ok_or_else(|| format!("bad batch length {length} at offset {base_offset}"))?;
        if h.len() < total {
            break;
        }
        let batch = &h[..total];
        if batch[MAGIC_AT] != 2 {
            return Err(format!(
                "batch at offset {base_offset} uses message format v{}",
                batch[MAGIC_AT]
            ));
        }
        let read_i32 =
            |i: usize| i32::from_be_bytes([batch[i], batch[i + 1], batch[i + 2], batch[i + 3]]);
        if check_crc {
            let crc = read_i32(CRC_AT) as u32;
            if crc32c::crc32c(&batch[ATTRIBUTES_AT..]) != crc {
                return Err(format!("CRC mismatch in the batch at offset {base_offset}"));
            }
        }
        let attributes = i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
        let last_delta = read_i32(LAST_OFFSET_DELTA_AT);
        let count = read_i32(RECORD_COUNT_AT);
        out.next_offset = Some(base_offset + i64::from(last_delta) + 1);
        out.batches += 1;
        let control = attributes & 0x20 != 0;
        if !control {
            let records = &batch[BATCH_HEADER_LEN..];
            let codec = attributes & 0x07;
            out.records += if codec == 0 {
                walk_records(records, count, base_offset, from, &mut f)?
            } else {
                let mut src = data.slice(at + BATCH_HEADER_LEN..at + total);
                let plain = match codec {
                    1 => Gzip::decompress(&mut src, |b: &mut Bytes| Ok(b.clone())),
                    2 => Snappy::decompress(&mut src, |b: &mut Bytes| Ok(b.clone())),
                    3 => Lz4::decompress(&mut src, |b: &mut Bytes| Ok(b.clone())),
                    4 => <Zstd as Decompressor<Bytes>>::decompress(&mut src, |b: &mut Bytes| {
                        Ok(b.clone())
                    }),
                    other => {
                        return Err(format!(
                            "unknown compression {other} in the batch at offset {base_offset}"
                        ))
                    }
                };
                let plain = plain
                    .map_err(|e| format!("decompressing the batch at offset {base_offset}: {e}"))?;
                walk_records(&plain, count, base_offset, from, &mut f)?
            };
        }
        at += total;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{decode_batches, set_base_offset};
    use bytes::BytesMut;

    fn build(compression: Compression, n: usize) -> Bytes {
        let mut b = BatchBuilder::new(1024);
        for i in 0..n {
            let key = format!("k{i}");
            let value = vec![b'a' + (i % 26) as u8; 100 + i];
            b.push(
                1_700_000_000_000 + i as i64,
                (i % 2 == 0).then_some(key.as_bytes()),
                &value,
            );
        }
        assert_eq!(b.count(), n as i32);
        b.finish(compression, None).unwrap()
    }

    #[test]
    fn built_batches_decode_with_the_general_decoder() {
        for c in Compression::ALL {
            let batch = build(c, 20);
            let decoded = decode_batches(batch.clone()).unwrap();
            assert_eq!(decoded.records.len(), 20, "{c}");
            assert_eq!(decoded.next_offset, Some(20));
            let r = &decoded.records[3];
            assert_eq!(r.offset, 3);
            assert_eq!(r.timestamp, 1_700_000_000_003);
            assert_eq!(r.key, None);
            assert_eq!(r.value.as_deref(), Some(&vec![b'd'; 103][..]));
            assert_eq!(decoded.records[4].key.as_deref(), Some(&b"k4"[..]));
        }
    }

    #[test]
    fn walker_counts_and_skips_records_before_from() {
        for c in Compression::ALL {
            let mut data = BytesMut::new();
            let mut first = BytesMut::from(&build(c, 10)[..]);
            set_base_offset(&mut first, 100);
            let mut second = BytesMut::from(&build(c, 5)[..]);
            set_base_offset(&mut second, 110);
            data.extend_from_slice(&first);
            data.extend_from_slice(&second);
            data.extend_from_slice(&second[..30]); // partial trailing batch
            let data = data.freeze();
            let mut offsets = Vec::new();
            let mut value_bytes = 0;
            let s = walk_batches(&data, 105, true, |o, _k, v| {
                offsets.push(o);
                value_bytes += v.map_or(0, <[u8]>::len);
            })
            .unwrap();
            assert_eq!(s.next_offset, Some(115), "{c}");
            assert_eq!(next_offset_after(&data), Some(115));
            assert_eq!(s.records, 10);
            assert_eq!(s.batches, 2);
            assert_eq!(offsets, (105..115).collect::<Vec<_>>());
            assert_eq!(
                value_bytes,
                (105..110).map(|i| i - 100 + 100).sum::<i64>() as usize
                    + (0..5).map(|i| 100 + i).sum::<usize>()
            );
        }
    }

    #[test]
    fn walker_detects_corruption() {
        let mut b = BytesMut::from(&build(Compression::None, 3)[..]);
        let last = b.len() - 3;
        b[last] ^= 0xff;
        let b = b.freeze();
        assert!(walk_batches(&b, 0, true, |_, _, _| {}).is_err());
        // Without the CRC check a value byte flip is not noticed.
        assert_eq!(walk_batches(&b, 0, false, |_, _, _| {}).unwrap().records, 3);
        let mut bad = BytesMut::from(&build(Compression::None, 3)[..]);
        bad[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(walk_batches(&bad.freeze(), 0, false, |_, _, _| {}).is_err());
    }

    #[test]
    fn idempotent_fields_are_written() {
        let mut b = BatchBuilder::new(64);
        b.push(5, None, b"x");
        let batch = b
            .finish(
                Compression::None,
                Some(ProducerFields {
                    producer_id: 42,
                    producer_epoch: 3,
                    base_sequence: 17,
                }),
            )
            .unwrap();
        assert_eq!(i64::from_be_bytes(batch[43..51].try_into().unwrap()), 42);
        assert_eq!(i16::from_be_bytes(batch[51..53].try_into().unwrap()), 3);
        assert_eq!(i32::from_be_bytes(batch[53..57].try_into().unwrap()), 17);
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(-1), 1);
        assert_eq!(varint_len(64), 2);
        assert_eq!(varint_len(i64::MAX), 10);
    }
}
