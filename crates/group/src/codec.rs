//! Records of the `__consumer_offsets` topic, in Kafka's own key/value schemas, and the parts of
//! the consumer embedded protocol (subscription / assignment) the coordinator reads.
//!
//! Keys start with an int16 version: 0 or 1 for `OffsetCommitKey` (group, topic, partition),
//! 2 for `GroupMetadataKey` (group). Values start with an int16 version: `OffsetCommitValue`
//! v0-4 and `GroupMetadataValue` v0-4 are read (v4 is the first flexible version); we write v3
//! of both, which is what Kafka writes for classic groups. A record with a null value is a
//! tombstone.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The buffer ended early.
    #[error("record truncated")]
    Truncated,
    /// A version this codec does not know.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Key, OffsetCommitValue, GroupMetadataValue.
        what: &'static str,
        /// The version found.
        version: i16,
    },
    /// A negative length where null is not allowed, or invalid UTF-8.
    #[error("malformed field: {0}")]
    Malformed(&'static str),
}

/// Committed offset of one partition (the value of an `OffsetCommitKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    /// The committed offset.
    pub offset: i64,
    /// Leader epoch of the committed offset, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: String,
    /// When the commit happened (ms since the epoch).
    pub commit_timestamp: i64,
    /// Explicit expiry (only in v1 values), -1 otherwise.
    pub expire_timestamp: i64,
}

/// One member in a `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    /// Member id.
    pub member_id: String,
    /// Static instance id (KIP-345).
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout (ms).
    pub rebalance_timeout: i32,
    /// Session timeout (ms).
    pub session_timeout: i32,
    /// Protocol metadata of the selected protocol.
    pub subscription: Bytes,
    /// Assignment from the last SyncGroup.
    pub assignment: Bytes,
}

/// The state of a classic group after a rebalance (the value of a `GroupMetadataKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// Protocol type ("consumer", "connect", ...).
    pub protocol_type: String,
    /// Generation id.
    pub generation: i32,
    /// Selected protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the group entered its current state (ms), -1 if unknown.
    pub current_state_timestamp: i64,
    /// Members.
    pub members: Vec<MemberMetadata>,
}

/// A decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    /// A committed offset, or its deletion (`value: None`).
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// `None` is a tombstone.
        value: Option<OffsetCommitValue>,
    },
    /// Group metadata, or the group's deletion (`value: None`).
    Group {
        /// Group id.
        group: String,
        /// `None` is a tombstone.
        value: Option<GroupMetadataValue>,
    },
}

impl OffsetsRecord {
    /// The group this record belongs to.
    pub fn group(&self) -> &str {
        match self {
            OffsetsRecord::Offset { group, .. } | OffsetsRecord::Group { group, .. } => group,
        }
    }

    /// Encodes the record key.
    pub fn encode_key(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                b.put_i16(1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            OffsetsRecord::Group { group, .. } => {
                b.put_i16(2);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    /// Encodes the record value (`None` for a tombstone).
    pub fn encode_value(&self) -> Option<Bytes> {
        let mut b = BytesMut::new();
        match self {
            OffsetsRecord::Offset { value, .. } => {
                let v = value.as_ref()?;
                b.put_i16(3);
                b.put_i64(v.offset);
                b.put_i32(v.leader_epoch);
                put_str(&mut b, &v.metadata);
                b.put_i64(v.commit_timestamp);
            }
            OffsetsRecord::Group { value, .. } => {
                let v = value.as_ref()?;
                b.put_i16(3);
                put_str(&mut b, &v.protocol_type);
                b.put_i32(v.generation);
                put_opt_str(&mut b, v.protocol.as_deref());
                put_opt_str(&mut b, v.leader.as_deref());
                b.put_i64(v.current_state_timestamp);
                b.put_i32(i32::try_from(v.members.len()).unwrap_or(i32::MAX));
                for m in &v.members {
                    put_str(&mut b, &m.member_id);
                    put_opt_str(&mut b, m.group_instance_id.as_deref());
                    put_str(&mut b, &m.client_id);
                    put_str(&mut b, &m.client_host);
                    b.put_i32(m.rebalance_timeout);
                    b.put_i32(m.session_timeout);
                    put_bytes(&mut b, &m.subscription);
                    put_bytes(&mut b, &m.assignment);
                }
            }
        }
        Some(b.freeze())
    }

    /// Decodes a record from its key and value. `Ok(None)` for keys of record types this
    /// coordinator does not use (e.g. KIP-848 consumer-group records), which replay skips.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<OffsetsRecord>, CodecError> {
        let mut k = Reader::new(key);
        let kv = k.i16()?;
        match kv {
            0 | 1 => {
                let group = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(Some(OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                }))
            }
            2 => {
                let group = k.string()?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(Some(OffsetsRecord::Group { group, value }))
            }
            _ => Ok(None),
        }
    }
}

fn decode_offset_value(buf: &[u8]) -> Result<OffsetCommitValue, CodecError> {
    let mut r = Reader::new(buf);
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(CodecError::UnsupportedVersion {
            what: "OffsetCommitValue",
            version,
        });
    }
    r.flexible = version >= 4;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp = r.i64()?;
    let expire_timestamp = if version == 1 { r.i64()? } else { -1 };
    r.skip_tags()?;
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        expire_timestamp,
    })
}

fn decode_group_value(buf: &[u8]) -> Result<GroupMetadataValue, CodecError> {
    let mut r = Reader::new(buf);
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(CodecError::UnsupportedVersion {
            what: "GroupMetadataValue",
            version,
        });
    }
    r.flexible = version >= 4;
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.opt_string()?;
    let leader = r.opt_string()?;
    let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let n = r.array_len()?;
    let mut members = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 { r.opt_string()? } else { None };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        r.skip_tags()?;
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout: if rebalance_timeout < 0 {
                session_timeout
            } else {
                rebalance_timeout
            },
            session_timeout,
            subscription,
            assignment,
        });
    }
    r.skip_tags()?;
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

fn put_str(b: &mut BytesMut, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    b.put_i16(len);
    b.put_slice(s.as_bytes().get(..len as usize).unwrap_or_default());
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
    b.put_slice(v);
}

/// A bounds-checked big-endian reader for classic (and, with `flexible`, compact) fields.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    flexible: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            flexible: false,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated);
        }
        let (a, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(a)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, CodecError> {
        let a = self.take(2)?;
        Ok(i16::from_be_bytes([a[0], a[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, CodecError> {
        let a = self.take(4)?;
        Ok(i32::from_be_bytes([a[0], a[1], a[2], a[3]]))
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        let a = self.take(8)?;
        let mut x = [0u8; 8];
        x.copy_from_slice(a);
        Ok(i64::from_be_bytes(x))
    }

    fn uvarint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Malformed("varint too long"))
    }

    /// Length of a string/bytes/array field; `None` means null.
    fn len(&mut self, wide: bool) -> Result<Option<usize>, CodecError> {
        if self.flexible {
            let n = self.uvarint()?;
            if n == 0 {
                return Ok(None);
            }
            return usize::try_from(n - 1)
                .map(Some)
                .map_err(|_| CodecError::Malformed("length"));
        }
        let n = if wide {
            self.i32()?
        } else {
            i32::from(self.i16()?)
        };
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(n as usize))
    }

    fn opt_string(&mut self) -> Result<Option<String>, CodecError> {
        match self.len(false)? {
            None => Ok(None),
            Some(n) => {
                let raw = self.take(n)?;
                String::from_utf8(raw.to_vec())
                    .map(Some)
                    .map_err(|_| CodecError::Malformed("string is not UTF-8"))
            }
        }
    }

    pub(crate) fn string(&mut self) -> Result<String, CodecError> {
        self.opt_string()?
            .ok_or(CodecError::Malformed("null string"))
    }

    fn opt_bytes(&mut self) -> Result<Option<Bytes>, CodecError> {
        match self.len(true)? {
            None => Ok(None),
            Some(n) => Ok(Some(Bytes::copy_from_slice(self.take(n)?))),
        }
    }

    fn bytes(&mut self) -> Result<Bytes, CodecError> {
        Ok(self.opt_bytes()?.unwrap_or_default())
    }

    pub(crate) fn array_len(&mut self) -> Result<usize, CodecError> {
        let n = self.len(true)?.unwrap_or(0);
        // Every element takes at least one byte: refuse absurd counts before allocating.
        if n > self.buf.len() {
            return Err(CodecError::Truncated);
        }
        Ok(n)
    }

    fn skip_tags(&mut self) -> Result<(), CodecError> {
        if !self.flexible {
            return Ok(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size =
                usize::try_from(self.uvarint()?).map_err(|_| CodecError::Malformed("tag size"))?;
            self.take(size)?;
        }
        Ok(())
    }
}

/// Topic-partitions of a consumer-protocol assignment (`ConsumerProtocolAssignment` v0-3),
/// sorted by topic. Errors for bytes that are not a consumer assignment.
pub fn decode_consumer_assignment(buf: &[u8]) -> Result<Vec<(String, Vec<i32>)>, CodecError> {
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader::new(buf);
    let _version = r.i16()?;
    let n = r.array_len()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let topic = r.string()?;
        let m = r.array_len()?;
        let mut parts = Vec::with_capacity(m);
        for _ in 0..m {
            parts.push(r.i32()?);
        }
        parts.sort_unstable();
        out.push((topic, parts));
    }
    out.sort();
    Ok(out)
}

/// Topics of a consumer-protocol subscription (`ConsumerProtocolSubscription` v0-3).
pub fn decode_consumer_subscription(buf: &[u8]) -> Result<Vec<String>, CodecError> {
    let mut r = Reader::new(buf);
    let _version = r.i16()?;
    let n = r.array_len()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.string()?);
    }
    Ok(out)
}

/// Encodes a `ConsumerProtocolAssignment` v0 (used by tests and tools).
pub fn encode_consumer_assignment(parts: &[(&str, &[i32])]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(parts.len() as i32);
    for (t, ps) in parts {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in *ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1); // user data: null
    b.freeze()
}

/// Encodes a `ConsumerProtocolSubscription` v0 (used by tests and tools).
pub fn encode_consumer_subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        put_str(&mut b, t);
    }
    b.put_i32(-1);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_record() -> OffsetsRecord {
        OffsetsRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(OffsetCommitValue {
                offset: 42,
                leader_epoch: 7,
                metadata: "meta".into(),
                commit_timestamp: 1_700_000_000_000,
                expire_timestamp: -1,
            }),
        }
    }

    #[test]
    fn offset_key_and_value_bytes_match_kafka_layout() {
        let r = offset_record();
        let key = r.encode_key();
        assert_eq!(
            &key[..],
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3][..],
            "int16 version 1, group, topic, int32 partition"
        );
        let value = r.encode_value().unwrap();
        assert_eq!(&value[..2], &[0, 3]);
        assert_eq!(value.len(), 2 + 8 + 4 + 2 + 4 + 8);
        let back = OffsetsRecord::decode(&key, Some(&value)).unwrap().unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn tombstones_round_trip() {
        let r = OffsetsRecord::Group {
            group: "grp".into(),
            value: None,
        };
        assert!(r.encode_value().is_none());
        let key = r.encode_key();
        assert_eq!(&key[..2], &[0, 2]);
        assert_eq!(OffsetsRecord::decode(&key, None).unwrap().unwrap(), r);
    }

    #[test]
    fn group_value_round_trips() {
        let r = OffsetsRecord::Group {
            group: "grp".into(),
            value: Some(GroupMetadataValue {
                protocol_type: "consumer".into(),
                generation: 5,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                current_state_timestamp: 99,
                members: vec![MemberMetadata {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout: 300_000,
                    session_timeout: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        };
        let back = OffsetsRecord::decode(&r.encode_key(), r.encode_value().as_deref())
            .unwrap()
            .unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn reads_older_and_flexible_offset_values() {
        // v1: offset, metadata, commit ts, expire ts.
        let mut v1 = BytesMut::new();
        v1.put_i16(1);
        v1.put_i64(10);
        put_str(&mut v1, "m");
        v1.put_i64(5);
        v1.put_i64(6);
        let got = decode_offset_value(&v1).unwrap();
        assert_eq!(
            (got.offset, got.leader_epoch, got.expire_timestamp),
            (10, -1, 6)
        );
        // v4: compact string + one tagged field that must be skipped.
        let mut v4 = BytesMut::new();
        v4.put_i16(4);
        v4.put_i64(11);
        v4.put_i32(2);
        v4.put_u8(2); // "m" as compact string (len+1)
        v4.put_u8(b'm');
        v4.put_i64(8);
        v4.put_u8(1); // one tag
        v4.put_u8(0); // tag 0
        v4.put_u8(2); // size 2
        v4.put_slice(&[9, 9]);
        let got = decode_offset_value(&v4).unwrap();
        assert_eq!(
            (got.offset, got.leader_epoch, got.metadata.as_str()),
            (11, 2, "m")
        );
        assert_eq!(got.commit_timestamp, 8);
    }

    #[test]
    fn truncated_and_unknown_inputs_are_errors_not_panics() {
        let r = offset_record();
        let value = r.encode_value().unwrap();
        for cut in 0..value.len() {
            assert!(decode_offset_value(&value[..cut]).is_err(), "cut at {cut}");
        }
        let key = r.encode_key();
        for cut in 0..key.len() {
            assert!(OffsetsRecord::decode(&key[..cut], None).is_err());
        }
        assert_eq!(OffsetsRecord::decode(&[0, 9, 0, 0], None).unwrap(), None);
        let mut bad = BytesMut::new();
        bad.put_i16(9);
        assert!(matches!(
            decode_group_value(&bad),
            Err(CodecError::UnsupportedVersion { version: 9, .. })
        ));
        // An absurd array count is refused before allocating.
        let mut huge = BytesMut::new();
        huge.put_i16(0);
        huge.put_i32(i32::MAX);
        assert!(decode_consumer_assignment(&huge).is_err());
    }

    #[test]
    fn consumer_protocol_round_trip() {
        let a = encode_consumer_assignment(&[("b", &[2, 0]), ("a", &[1])]);
        assert_eq!(
            decode_consumer_assignment(&a).unwrap(),
            vec![("a".to_string(), vec![1]), ("b".to_string(), vec![0, 2])]
        );
        let s = encode_consumer_subscription(&["x", "y"]);
        assert_eq!(decode_consumer_subscription(&s).unwrap(), vec!["x", "y"]);
        assert!(decode_consumer_assignment(&[]).unwrap().is_empty());
    }
}
