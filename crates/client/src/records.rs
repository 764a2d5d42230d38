//! Record batches: encoding what we produce and decoding what we fetch (v2 batches, via
//! `kafka_protocol::records`).

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

/// Compression codec of a produced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy (Kafka's xerial framing).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// All codecs, in Kafka's attribute order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn to_protocol(self) -> kafka_protocol::records::Compression {
        use kafka_protocol::records::Compression as C;
        match self {
            Compression::None => C::None,
            Compression::Gzip => C::Gzip,
            Compression::Snappy => C::Snappy,
            Compression::Lz4 => C::Lz4,
            Compression::Zstd => C::Zstd,
        }
    }

    /// The lowercase name used by Kafka's `compression.type`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown compression '{s}' (expected none, gzip, snappy, lz4 or zstd)")
            })
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProduceRecord {
    /// Optional key.
    pub key: Option<Bytes>,
    /// Value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation timestamp in ms since the epoch; `None` means "now".
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    /// A record with just a value.
    pub fn value(value: impl Into<Bytes>) -> ProduceRecord {
        ProduceRecord {
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Approximate encoded size, for batching decisions.
    pub fn approx_size(&self) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 4)
            .sum();
        self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + h + 16
    }
}

/// Whether a consumed record's timestamp was set by the producer or the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    /// Set by the producer (`CreateTime`).
    Create,
    /// Set by the broker on append (`LogAppendTime`).
    LogAppend,
}

/// A record read back from a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedRecord {
    /// Absolute offset.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp: i64,
    /// What the timestamp means.
    pub timestamp_kind: TimestampKind,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Encodes `records` as one v2 record batch (offsets 0..n, no producer id) with `compression`.
/// `now_ms` fills in records without a timestamp.
pub fn encode_batch(
    records: &[ProduceRecord],
    compression: Compression,
    now_ms: i64,
) -> Result<Bytes, String> {
    if records.is_empty() {
        return Err("cannot encode an empty batch".into());
    }
    let converted: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let offset = i as i64;
            let mut headers = IndexMap::new();
            for (k, v) in &r.headers {
                headers.insert(StrBytes::from_string(k.clone()), v.clone());
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: TimestampType::Creation,
                offset,
                // The encoder groups records into one batch only while offset - sequence stays
                // constant; keeping base sequence at NO_SEQUENCE (-1) needs -1 + i here.
                sequence: NO_SEQUENCE.wrapping_add(i as i32),
                timestamp: r.timestamp.unwrap_or(now_ms),
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: compression.to_protocol(),
    };
    RecordBatchEncoder::encode(&mut buf, converted.iter(), &options)
        .map_err(|e| format!("encoding record batch ({compression}): {e}"))?;
    Ok(buf.freeze())
}

/// Records decoded from a fetch response's `records` field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedRecords {
    /// Data records in offset order (control records are skipped).
    pub records: Vec<ConsumedRecord>,
    /// The offset after the last complete batch, if there was one. A consumer continues
    /// from here even when every record in the batches was filtered out.
    pub next_offset: Option<i64>,
}

/// Size of the v2 batch header fields up to and including the batch length.
const BATCH_LENGTH_END: usize = 12;
/// Offset of `lastOffsetDelta` inside a batch (baseOffset 8, length 4, epoch 4, magic 1,
/// crc 4, attributes 2).
const LAST_OFFSET_DELTA_AT: usize = 23;
/// Offset of the magic byte.
const MAGIC_AT: usize = 16;
/// Offset of `maxTimestamp` inside a batch (after `firstTimestamp` at 27).
const MAX_TIMESTAMP_AT: usize = 35;

/// Decodes all complete batches in `data`. A trailing partial batch (brokers may cut the last
/// one at `max_bytes`) is ignored.
pub fn decode_batches(mut data: Bytes) -> Result<DecodedRecords, String> {
    let mut out = DecodedRecords::default();
    while data.len() >= BATCH_LENGTH_END {
        let base_offset = (&data[0..8]).get_i64();
        let length = (&data[8..12]).get_i32();
        let Ok(length) = usize::try_from(length) else {
            return Err(format!(
                "negative batch length {length} at offset {base_offset}"
            ));
        };
        let total = BATCH_LENGTH_END + length;
        if data.len() < total {
            break; // partial batch at the end
        }
        let mut batch = data.split_to(total);
        if batch.len() < MAX_TIMESTAMP_AT + 8 {
            return Err(format!(
                "batch at offset {base_offset} is too short ({total} bytes)"
            ));
        }
        let magic = batch[MAGIC_AT];
        let last_delta = (&batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]).get_i32();
        let max_timestamp = (&batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]).get_i64();
        out.next_offset = Some(base_offset + i64::from(last_delta) + 1);
        if magic != 2 {
            return Err(format!(
                "batch at offset {base_offset} uses message format v{magic}; only v2 is supported"
            ));
        }
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| format!("decoding batch at offset {base_offset}: {e}"))?;
        for r in set.records {
            if r.control {
                continue;
            }
            // With LogAppendTime every record's timestamp is the batch's max timestamp (the
            // broker rewrites only the batch header).
            let (timestamp, timestamp_kind) = match r.timestamp_type {
                TimestampType::Creation => (r.timestamp, TimestampKind::Create),
                TimestampType::LogAppend => (max_timestamp, TimestampKind::LogAppend),
            };
            out.records.push(ConsumedRecord {
                offset: r.offset,
                timestamp,
                timestamp_kind,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v))
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// Rewrites the base offset of an encoded batch (used by tests to simulate broker-assigned
/// offsets; the base offset is outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if batch.len() >= 8 {
        batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<ProduceRecord> {
        vec![
            ProduceRecord {
                key: Some(Bytes::from_static(b"k1")),
                value: Some(Bytes::from_static(b"hello")),
                headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
                timestamp: Some(1_700_000_000_000),
            },
            ProduceRecord {
                key: None,
                value: None,
                headers: vec![],
                timestamp: None,
            },
            ProduceRecord::value("third"),
        ]
    }

    #[test]
    fn roundtrip_every_compression() {
        for c in Compression::ALL {
            let bytes = encode_batch(&sample(), c, 1_700_000_000_123).unwrap();
            let mut raw = bytes.to_vec();
            set_base_offset(&mut raw, 40);
            let decoded = decode_batches(Bytes::from(raw)).unwrap();
            assert_eq!(decoded.next_offset, Some(43), "{c}");
            let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![40, 41, 42], "{c}");
            assert_eq!(decoded.records[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(decoded.records[0].value.as_deref(), Some(&b"hello"[..]));
            assert_eq!(
                decoded.records[0].headers,
                vec![("h".to_string(), Some(Bytes::from_static(b"v")))]
            );
            assert_eq!(decoded.records[0].timestamp, 1_700_000_000_000);
            assert_eq!(decoded.records[1].value, None);
            assert_eq!(decoded.records[1].timestamp, 1_700_000_000_123);
            assert_eq!(decoded.records[2].value.as_deref(), Some(&b"third"[..]));
        }
    }

    #[test]
    fn compression_attribute_is_set() {
        for (i, c) in Compression::ALL.into_iter().enumerate() {
            let bytes = encode_batch(&sample(), c, 0).unwrap();
            // attributes are at byte 21..23; low 3 bits are the codec
            let attrs = i16::from_be_bytes([bytes[21], bytes[22]]);
            assert_eq!((attrs & 7) as usize, i, "{c}");
        }
    }

    #[test]
    fn partial_trailing_batch_is_ignored() {
        let a = encode_batch(&sample(), Compression::None, 0).unwrap();
        let mut b = encode_batch(&[ProduceRecord::value("x")], Compression::None, 0)
            .unwrap()
            .to_vec();
        set_base_offset(&mut b, 3);
        let mut data = a.to_vec();
        data.extend_from_slice(&b[..b.len() - 5]);
        let decoded = decode_batches(Bytes::from(data)).unwrap();
        assert_eq!(decoded.records.len(), 3);
        assert_eq!(decoded.next_offset, Some(3));
        // Fewer than 12 bytes of a header is also just "partial".
        let decoded = decode_batches(Bytes::from_static(&[0, 0, 0])).unwrap();
        assert_eq!(decoded, DecodedRecords::default());
    }

    #[test]
    fn corrupt_batch_is_an_error() {
        let mut data = encode_batch(&sample(), Compression::None, 0)
            .unwrap()
            .to_vec();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        let err = decode_batches(Bytes::from(data)).unwrap_err();
        assert!(err.contains("Cyclic redundancy check failed"), "{err}");
    }

    #[test]
    fn log_append_time_uses_batch_max_timestamp() {
        let mut raw = encode_batch(&sample(), Compression::None, 5)
            .unwrap()
            .to_vec();
        // Broker-style rewrite: set the LogAppendTime attribute bit and maxTimestamp, re-CRC.
        let attrs = i16::from_be_bytes([raw[21], raw[22]]) | (1 << 3);
        raw[21..23].copy_from_slice(&attrs.to_be_bytes());
        raw[35..43].copy_from_slice(&1_800_000_000_000i64.to_be_bytes());
        let crc = crc32c::crc32c(&raw[21..]);
        raw[17..21].copy_from_slice(&crc.to_be_bytes());
        let decoded = decode_batches(Bytes::from(raw)).unwrap();
        assert_eq!(decoded.records.len(), 3);
        for r in &decoded.records {
            assert_eq!(r.timestamp_kind, TimestampKind::LogAppend);
            assert_eq!(r.timestamp, 1_800_000_000_000);
        }
    }

    #[test]
    fn compression_parses() {
        assert_eq!("ZSTD".parse::<Compression>().unwrap(), Compression::Zstd);
        assert_eq!("none".parse::<Compression>().unwrap(), Compression::None);
        assert!("brotli".parse::<Compression>().is_err());
        assert!(encode_batch(&[], Compression::None, 0).is_err());
    }
}
