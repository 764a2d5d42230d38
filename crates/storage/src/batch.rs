//! Kafka record batch (magic v2) header parsing, validation and in-place patching.
//!
//! Everything here is a pure function over byte slices. None of the functions panic on
//! malformed input: short or inconsistent buffers produce a [`BatchError`].
//!
//! Layout of a v2 batch (all integers big-endian):
//!
//! | bytes   | field                  | notes                                   |
//! |---------|------------------------|-----------------------------------------|
//! | 0..8    | baseOffset i64         | assigned by the broker                  |
//! | 8..12   | batchLength i32        | bytes after this field                  |
//! | 12..16  | partitionLeaderEpoch   | assigned by the broker                  |
//! | 16      | magic i8               | always 2                                |
//! | 17..21  | crc u32                | CRC-32C of bytes 21..end                |
//! | 21..23  | attributes i16         | bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control |
//! | 23..27  | lastOffsetDelta i32    |                                         |
//! | 27..35  | baseTimestamp i64      |                                         |
//! | 35..43  | maxTimestamp i64       |                                         |
//! | 43..51  | producerId i64         |                                         |
//! | 51..53  | producerEpoch i16      |                                         |
//! | 53..57  | baseSequence i32       |                                         |
//! | 57..61  | recordsCount i32       |                                         |
//! | 61..    | records                | possibly compressed                     |
//!
//! Because the CRC starts at `attributes`, the broker can patch `baseOffset` and
//! `partitionLeaderEpoch` without recomputing it.

use std::ops::Range;

use bytes::Bytes;

/// Size of the fixed v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes preceding `batchLength`'s coverage: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
/// The only supported record batch format version.
pub const MAGIC_V2: i8 = 2;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORDS_COUNT: usize = 57;
/// Smallest possible encoded record (7 one-byte varints/fields).
const MIN_RECORD_LEN: usize = 7;
/// Largest record count [`records`] will decode (guards against absurd allocations).
pub const MAX_DECODE_RECORDS: i32 = 1 << 22;
/// First byte covered by the CRC.
pub const CRC_START: usize = OFF_ATTRIBUTES;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Errors from parsing or validating a record batch.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The buffer ends before the batch (or its header) does.
    #[error("record batch truncated")]
    Truncated,
    /// The magic byte is not 2.
    #[error("unsupported record batch magic {0}")]
    BadMagic(i8),
    /// The stored CRC does not match the CRC computed over the batch.
    #[error("record batch CRC mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    BadCrc {
        /// CRC stored in the header.
        expected: u32,
        /// CRC computed over the bytes.
        actual: u32,
    },
    /// A structurally invalid header or record.
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// The records could not be decompressed or decoded.
    #[error("cannot decode records: {0}")]
    Decompress(String),
}

/// The fixed 61-byte header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length of the batch after the `batch_length` field.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version (always 2 once parsed).
    pub magic: i8,
    /// CRC-32C over bytes `21..`.
    pub crc: u32,
    /// Attribute bits.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the log append time).
    pub max_timestamp: i64,
    /// Producer id, -1 for non-idempotent producers.
    pub producer_id: i64,
    /// Producer epoch, -1 for non-idempotent producers.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

#[inline]
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    i64::from_be_bytes(a)
}
#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    i32::from_be_bytes(a)
}
#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    i16::from_be_bytes(a)
}

/// Reads the `batchLength` field of a batch starting at `buf[0]` and returns the total
/// batch size (`batchLength + 12`), or `None` if fewer than 12 bytes are available or the
/// length is negative. Nothing else is checked.
pub fn peek_total_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(buf, OFF_LENGTH);
    usize::try_from(len).ok().map(|l| l + LOG_OVERHEAD)
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (which may contain more than one batch).
    ///
    /// Checks that at least [`HEADER_LEN`] bytes are present, the magic is 2 and
    /// `batch_length` covers at least the header. Does not check the CRC.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated);
        }
        let magic = buf[OFF_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        let batch_length = be_i32(buf, OFF_LENGTH);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Invalid(format!(
                "batch length {batch_length} is smaller than the header"
            )));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, OFF_BASE_OFFSET),
            batch_length,
            partition_leader_epoch: be_i32(buf, OFF_LEADER_EPOCH),
            magic,
            crc: be_i32(buf, OFF_CRC) as u32,
            attributes: be_i16(buf, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(buf, OFF_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, OFF_BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, OFF_MAX_TIMESTAMP),
            producer_id: be_i64(buf, OFF_PRODUCER_ID),
            producer_epoch: be_i16(buf, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(buf, OFF_BASE_SEQUENCE),
            records_count: be_i32(buf, OFF_RECORDS_COUNT),
        })
    }

    /// Total size of the batch in bytes, including offset and length fields.
    pub fn total_len(&self) -> usize {
        // batch_length >= 49 is guaranteed by `parse`.
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD
    }

    /// Offset of the last record (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        // Saturating: a header read from a damaged file must not overflow here; stored
        // batches are checked for this range before they are used.
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset following this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    /// Whether the batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether the timestamps are log-append times (`max_timestamp` holds the append time).
    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }

    /// Sequence number of the last record, wrapping from `i32::MAX` to 0 like Kafka.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// Adds `delta` to a producer sequence number with Kafka's wrap-around to 0 after `i32::MAX`.
pub fn increment_sequence(seq: i32, delta: i32) -> i32 {
    if seq > i32::MAX - delta {
        delta - (i32::MAX - seq) - 1
    } else {
        seq + delta
    }
}

/// Validates exactly one batch occupying all of `buf`: header, length, magic 2, CRC-32C,
/// non-negative record count and `last_offset_delta == records_count - 1` when non-empty.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(buf)?;
    let total = h.total_len();
    if buf.len() < total {
        return Err(BatchError::Truncated);
    }
    if buf.len() > total {
        return Err(BatchError::Invalid(format!(
            "buffer holds {} bytes but batch length says {total}",
            buf.len()
        )));
    }
    let actual = crc32c::crc32c(&buf[CRC_START..]);
    if actual != h.crc {
        return Err(BatchError::BadCrc {
            expected: h.crc,
            actual,
        });
    }
    if h.records_count < 0 {
        return Err(BatchError::Invalid(format!(
            "negative record count {}",
            h.records_count
        )));
    }
    if h.last_offset_delta < 0 {
        return Err(BatchError::Invalid(format!(
            "negative last offset delta {}",
            h.last_offset_delta
        )));
    }
    // Without decompressing we can only bound uncompressed batches: every record takes at
    // least 7 bytes (length, attributes, timestamp delta, offset delta, key length, value
    // length, header count).
    if h.compression() == 0 && (h.records_count as usize) * MIN_RECORD_LEN > total - HEADER_LEN {
        return Err(BatchError::Invalid(format!(
            "{} records cannot fit in {} bytes",
            h.records_count,
            total - HEADER_LEN
        )));
    }
    if h.records_count > 0 && h.last_offset_delta != h.records_count - 1 {
        return Err(BatchError::Invalid(format!(
            "last offset delta {} does not match record count {}",
            h.last_offset_delta, h.records_count
        )));
    }
    Ok(h)
}

/// Validates one batch read back from a log segment. Like [`validate`], but compaction may
/// have removed records from the batch while keeping its `lastOffsetDelta` (so the offsets
/// of the kept records and the producer's sequence range stay the same), so this only
/// requires `0 <= recordsCount <= lastOffsetDelta + 1`.
pub fn validate_stored(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(buf)?;
    let total = h.total_len();
    if buf.len() != total {
        return Err(if buf.len() < total {
            BatchError::Truncated
        } else {
            BatchError::Invalid(format!(
                "buffer holds {} bytes but batch length says {total}",
                buf.len()
            ))
        });
    }
    let actual = crc32c::crc32c(&buf[CRC_START..]);
    if actual != h.crc {
        return Err(BatchError::BadCrc {
            expected: h.crc,
            actual,
        });
    }
    if h.records_count < 0 || h.last_offset_delta < 0 {
        return Err(BatchError::Invalid(format!(
            "negative record count {} or last offset delta {}",
            h.records_count, h.last_offset_delta
        )));
    }
    if i64::from(h.records_count) > i64::from(h.last_offset_delta) + 1 {
        return Err(BatchError::Invalid(format!(
            "{} records do not fit in last offset delta {}",
            h.records_count, h.last_offset_delta
        )));
    }
    if h.base_offset < 0
        || h.base_offset
            .checked_add(i64::from(h.last_offset_delta) + 1)
            .is_none()
    {
        return Err(BatchError::Invalid(format!(
            "base offset {} with last offset delta {} is out of range",
            h.base_offset, h.last_offset_delta
        )));
    }
    if h.compression() == 0 && (h.records_count as usize) * MIN_RECORD_LEN > total - HEADER_LEN {
        return Err(BatchError::Invalid(format!(
            "{} records cannot fit in {} bytes",
            h.records_count,
            total - HEADER_LEN
        )));
    }
    Ok(h)
}

/// Splits and validates several concatenated batches. A trailing partial batch is an error.
pub fn split(buf: &[u8]) -> Result<Vec<(BatchHeader, Range<usize>)>, BatchError> {
    split_with(buf, validate)
}

/// Record batches as received from a producer, checked once by [`Checked::new`] (framing,
/// magic 2, CRC-32C, offset deltas, as [`split`]), with each batch's header and range. The
/// log appends them without checking them again and without copying them: only the 16-byte
/// prefix that carries `baseOffset` and `partitionLeaderEpoch` is rewritten on the way to
/// the file.
#[derive(Debug, Clone)]
pub struct Checked {
    data: Bytes,
    parts: Vec<(BatchHeader, Range<usize>)>,
}

impl Checked {
    /// Checks every batch in `data`.
    pub fn new(data: Bytes) -> Result<Checked, BatchError> {
        let parts = split(&data)?;
        Ok(Checked { data, parts })
    }

    /// The bytes as received.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Each batch's header and its range in [`Checked::data`].
    pub fn parts(&self) -> &[(BatchHeader, Range<usize>)] {
        &self.parts
    }

    /// The batch's bytes after the prefix the log rewrites (offset, length, leader epoch).
    pub(crate) fn after_prefix(&self, range: &Range<usize>) -> Option<&[u8]> {
        self.data.get(range.start + PREFIX_LEN..range.end)
    }
}

/// Bytes at the start of a batch that the log rewrites when it assigns offsets:
/// `baseOffset`, `batchLength` (kept) and `partitionLeaderEpoch`. None is covered by the CRC.
pub(crate) const PREFIX_LEN: usize = OFF_MAGIC;

/// The rewritten prefix of a batch whose first `PREFIX_LEN` bytes are `original`.
pub(crate) fn patched_prefix(
    original: &[u8],
    base_offset: i64,
    leader_epoch: i32,
) -> [u8; PREFIX_LEN] {
    let mut p = [0u8; PREFIX_LEN];
    if let (Some(dst), Some(src)) = (
        p.get_mut(OFF_LENGTH..OFF_LEADER_EPOCH),
        original.get(OFF_LENGTH..OFF_LEADER_EPOCH),
    ) {
        dst.copy_from_slice(src);
    }
    set_base_offset(&mut p, base_offset);
    set_partition_leader_epoch(&mut p, leader_epoch);
    p
}

/// Like [`split`], validating each batch as a stored one ([`validate_stored`]: compaction may
/// have thinned it), for batches read from another replica's log.
pub fn split_stored(buf: &[u8]) -> Result<Vec<(BatchHeader, Range<usize>)>, BatchError> {
    split_with(buf, validate_stored)
}

fn split_with(
    buf: &[u8],
    check: fn(&[u8]) -> Result<BatchHeader, BatchError>,
) -> Result<Vec<(BatchHeader, Range<usize>)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let total = peek_total_len(rest).ok_or(BatchError::Truncated)?;
        if total < HEADER_LEN {
            // Let `parse` produce the precise error (bad magic or too short).
            BatchHeader::parse(rest)?;
            return Err(BatchError::Invalid(format!(
                "batch length {total} too small"
            )));
        }
        let end = pos.checked_add(total).ok_or(BatchError::Truncated)?;
        let one = buf.get(pos..end).ok_or(BatchError::Truncated)?;
        let h = check(one)?;
        out.push((h, pos..end));
        pos = end;
    }
    Ok(out)
}

/// Overwrites `baseOffset` (not covered by the CRC). No-op on a buffer shorter than 8 bytes.
pub fn set_base_offset(buf: &mut [u8], off: i64) {
    if let Some(s) = buf.get_mut(OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8) {
        s.copy_from_slice(&off.to_be_bytes());
    }
}

/// Overwrites `partitionLeaderEpoch` (not covered by the CRC). No-op on a short buffer.
pub fn set_partition_leader_epoch(buf: &mut [u8], e: i32) {
    if let Some(s) = buf.get_mut(OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4) {
        s.copy_from_slice(&e.to_be_bytes());
    }
}

/// Marks the batch as using log-append time: sets attribute bit 3, sets `maxTimestamp` to
/// `ts` and recomputes the CRC. No-op on a buffer shorter than the header.
pub fn set_log_append_time(buf: &mut [u8], ts: i64) {
    if buf.len() < HEADER_LEN {
        return;
    }
    let attrs = be_i16(buf, OFF_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE;
    buf[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    buf[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&ts.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Record-level facts extracted from a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    /// Absolute offset of the record.
    pub offset: i64,
    /// Record timestamp (the batch's `maxTimestamp` for log-append-time batches).
    pub timestamp: i64,
    /// Record key, if any.
    pub key: Option<Bytes>,
    /// Whether the value is null (a tombstone).
    pub value_is_null: bool,
}

/// Decodes the records of one batch (decompressing if needed) and returns per-record facts.
///
/// Refuses batches claiming more than [`MAX_DECODE_RECORDS`] records.
/// Accepts batches compacted by the log cleaner (see [`validate_stored`]).
pub fn records(buf: &[u8]) -> Result<Vec<RecordInfo>, BatchError> {
    let h = validate_stored(buf)?;
    records_of(buf, &h)
}

/// [`records`] of a batch already checked (its header `h` came from [`Checked::new`]), so its
/// CRC is not computed again.
pub fn records_checked(buf: &[u8], h: &BatchHeader) -> Result<Vec<RecordInfo>, BatchError> {
    records_of(buf, h)
}

fn records_of(buf: &[u8], h: &BatchHeader) -> Result<Vec<RecordInfo>, BatchError> {
    if h.records_count > MAX_DECODE_RECORDS {
        return Err(BatchError::Invalid(format!(
            "refusing to decode {} records",
            h.records_count
        )));
    }
    let mut cursor: &[u8] = buf;
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut cursor).map_err(|e| {
        if h.compression() == 0 {
            BatchError::Invalid(e.to_string())
        } else {
            BatchError::Decompress(e.to_string())
        }
    })?;
    let log_append = h.timestamp_type_log_append();
    Ok(set
        .records
        .into_iter()
        .map(|r| RecordInfo {
            offset: r.offset,
            timestamp: if log_append {
                h.max_timestamp
            } else {
                r.timestamp
            },
            key: r.key,
            value_is_null: r.value.is_none(),
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Batch builders for tests.
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    /// A test record: (timestamp, key, value).
    pub type Rec<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>);

    /// Minimal hand-written uncompressed batch builder: `records` are (timestamp, key, value).
    pub fn hand_batch(base_offset: i64, producer: (i64, i16, i32), records: &[Rec<'_>]) -> Vec<u8> {
        let base_ts = records.first().map(|r| r.0).unwrap_or(0);
        let max_ts = records.iter().map(|r| r.0).max().unwrap_or(-1);
        let mut body = Vec::new();
        for (i, (ts, k, v)) in records.iter().enumerate() {
            let mut rec = vec![0u8];
            put_varint(&mut rec, ts - base_ts);
            put_varint(&mut rec, i as i64);
            match k {
                Some(k) => {
                    put_varint(&mut rec, k.len() as i64);
                    rec.extend_from_slice(k);
                }
                None => put_varint(&mut rec, -1),
            }
            match v {
                Some(v) => {
                    put_varint(&mut rec, v.len() as i64);
                    rec.extend_from_slice(v);
                }
                None => put_varint(&mut rec, -1),
            }
            put_varint(&mut rec, 0);
            put_varint(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let mut b = Vec::with_capacity(61 + body.len());
        b.extend_from_slice(&base_offset.to_be_bytes());
        b.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&((records.len() as i32) - 1).to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&producer.0.to_be_bytes());
        b.extend_from_slice(&producer.1.to_be_bytes());
        b.extend_from_slice(&producer.2.to_be_bytes());
        b.extend_from_slice(&(records.len() as i32).to_be_bytes());
        b.extend_from_slice(&body);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Simple uncompressed, non-idempotent batch with `n` records of `value_len` bytes.
    pub fn simple(n: usize, ts: i64, value_len: usize) -> Vec<u8> {
        let val = vec![b'v'; value_len];
        let recs: Vec<Rec<'_>> = (0..n)
            .map(|i| (ts + i as i64, None, Some(val.as_slice())))
            .collect();
        hand_batch(0, (-1, -1, -1), &recs)
    }

    /// Idempotent batch with `n` records.
    pub fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
        let recs: Vec<Rec<'_>> = (0..n)
            .map(|i| (1000 + i as i64, None, Some(&b"x"[..])))
            .collect();
        hand_batch(0, (pid, epoch, seq), &recs)
    }

    /// Batch encoded by kafka-protocol's encoder.
    pub fn encoded(compression: Compression, timestamps: &[i64], keyed: bool) -> Vec<u8> {
        let recs: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp: *ts,
                key: keyed.then(|| Bytes::from(format!("key-{i}"))),
                value: if i % 3 == 2 {
                    None
                } else {
                    Some(Bytes::from(vec![b'a' + (i % 26) as u8; 100]))
                },
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use kafka_protocol::records::Compression;

    #[test]
    fn parse_hand_built_header() {
        let b = hand_batch(
            42,
            (7, 3, 11),
            &[(100, Some(b"k"), Some(b"v")), (105, None, None)],
        );
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.magic, 2);
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.last_offset(), 43);
        assert_eq!(h.base_timestamp, 100);
        assert_eq!(h.max_timestamp, 105);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.producer_epoch, 3);
        assert_eq!(h.base_sequence, 11);
        assert_eq!(h.last_sequence(), 12);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.compression(), 0);
        assert!(!h.is_control() && !h.is_transactional() && !h.timestamp_type_log_append());
    }

    #[test]
    fn stored_batch_with_an_offset_range_past_i64_is_refused() {
        // A damaged segment: the base offset is near i64::MAX, so base + delta overflows.
        let b = hand_batch(
            i64::MAX - 1,
            (-1, -1, -1),
            &[
                (1, None, Some(b"a")),
                (2, None, Some(b"b")),
                (3, None, None),
            ],
        );
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(
            h.last_offset(),
            i64::MAX,
            "saturates instead of overflowing"
        );
        assert_eq!(h.next_offset(), i64::MAX);
        assert!(matches!(validate_stored(&b), Err(BatchError::Invalid(_))));
        let neg = hand_batch(-5, (-1, -1, -1), &[(1, None, Some(b"a"))]);
        assert!(matches!(validate_stored(&neg), Err(BatchError::Invalid(_))));
    }

    #[test]
    fn records_of_hand_batch() {
        let b = hand_batch(
            10,
            (-1, -1, -1),
            &[(100, Some(b"k"), Some(b"v")), (99, None, None)],
        );
        let r = records(&b).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].offset, 10);
        assert_eq!(r[0].timestamp, 100);
        assert_eq!(r[0].key.as_deref(), Some(&b"k"[..]));
        assert!(!r[0].value_is_null);
        assert_eq!(r[1].offset, 11);
        assert_eq!(r[1].timestamp, 99);
        assert!(r[1].key.is_none());
        assert!(r[1].value_is_null);
    }

    #[test]
    fn encoder_batches_all_codecs() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let ts = [5, 3, 9, 1, 7];
            let mut b = encoded(c, &ts, true);
            let h = validate(&b).unwrap();
            assert_eq!(h.compression(), c as u8);
            assert_eq!(h.records_count, 5);
            assert_eq!(h.max_timestamp, 9);
            set_base_offset(&mut b, 1000);
            set_partition_leader_epoch(&mut b, 4);
            let h = validate(&b).expect("crc must not cover patched fields");
            assert_eq!(h.base_offset, 1000);
            assert_eq!(h.partition_leader_epoch, 4);
            let r = records(&b).unwrap();
            let offs: Vec<i64> = r.iter().map(|r| r.offset).collect();
            assert_eq!(offs, vec![1000, 1001, 1002, 1003, 1004]);
            let tss: Vec<i64> = r.iter().map(|r| r.timestamp).collect();
            assert_eq!(tss, ts.to_vec());
            assert_eq!(r[1].key.as_deref(), Some(&b"key-1"[..]));
            assert!(r[2].value_is_null);
        }
    }

    #[test]
    fn log_append_time_patch() {
        let mut b = encoded(Compression::Lz4, &[1, 2, 3], false);
        set_log_append_time(&mut b, 777);
        let h = validate(&b).unwrap();
        assert!(h.timestamp_type_log_append());
        assert_eq!(h.max_timestamp, 777);
        assert!(records(&b).unwrap().iter().all(|r| r.timestamp == 777));
    }

    #[test]
    fn bad_crc_detected() {
        let mut b = simple(3, 10, 20);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(validate(&b), Err(BatchError::BadCrc { .. })));
        // Header fields covered by CRC too.
        let mut b = simple(3, 10, 20);
        b[40] ^= 1;
        assert!(matches!(validate(&b), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn bad_magic_and_lengths() {
        let mut b = simple(1, 10, 5);
        b[16] = 1;
        assert!(matches!(validate(&b), Err(BatchError::BadMagic(1))));
        let b = simple(1, 10, 5);
        assert!(matches!(validate(&b[..30]), Err(BatchError::Truncated)));
        assert!(matches!(
            validate(&b[..b.len() - 1]),
            Err(BatchError::Truncated)
        ));
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(validate(&longer), Err(BatchError::Invalid(_))));
        let mut neg = b.clone();
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(validate(&neg).is_err());
        assert!(split(&neg).is_err());
    }

    #[test]
    fn record_count_must_fit() {
        let mut b = simple(3, 10, 0);
        let huge = i32::MAX;
        b[57..61].copy_from_slice(&huge.to_be_bytes());
        b[23..27].copy_from_slice(&(huge - 1).to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(validate(&b), Err(BatchError::Invalid(_))));
        assert!(records(&b).is_err());
    }

    #[test]
    fn offset_delta_mismatch() {
        let mut b = simple(3, 10, 5);
        b[23..27].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(validate(&b), Err(BatchError::Invalid(_))));
    }

    #[test]
    fn split_several_and_partial() {
        let a = simple(2, 1, 10);
        let b = encoded(Compression::Snappy, &[1, 2, 3], true);
        let c = simple(1, 9, 300);
        let mut all = Vec::new();
        all.extend_from_slice(&a);
        all.extend_from_slice(&b);
        all.extend_from_slice(&c);
        let parts = split(&all).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].1, 0..a.len());
        assert_eq!(parts[1].1, a.len()..a.len() + b.len());
        assert_eq!(parts[2].1.end, all.len());
        assert_eq!(parts[1].0.records_count, 3);
        assert!(split(&[]).unwrap().is_empty());
        for cut in [1, 11, 12, 60, c.len() - 1] {
            let t = &all[..all.len() - cut];
            assert!(matches!(split(t), Err(BatchError::Truncated)), "cut {cut}");
        }
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 2), 7);
    }
}
