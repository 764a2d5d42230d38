//! Fetch responses encoded without copying their record bytes.
//!
//! The crate's encoder writes a response into one buffer, so every record byte a Fetch
//! returns would be copied once more after it was read from the log. [`encode_fetch_response`]
//! instead gives the encoder a buffer that recognises the records fields by address: when the
//! encoder writes exactly the bytes of one of them, the buffer keeps that field's `Bytes` (a
//! reference count) as a chunk of its own instead of copying it. Everything else (headers,
//! lengths, offsets) is encoded as usual, so the bytes on the wire are the same as
//! [`crate::encode_response`]'s, only in several pieces.

use std::collections::HashMap;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

use crate::ProtocolError;

/// Records fields shorter than this are copied: a chunk of their own costs more than that.
pub const SHARE_MIN: usize = 512;

/// Encodes a Fetch response (with its length prefix) as chunks to write back to back. Records
/// of at least [`SHARE_MIN`] bytes are not copied.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    body: &FetchResponse,
) -> Result<Vec<Bytes>, ProtocolError> {
    let err = |e: anyhow::Error| ProtocolError::Encode {
        api: ApiKey::Fetch,
        version,
        reason: e.to_string(),
    };
    let shared: HashMap<usize, Bytes> = body
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.as_ref())
        .filter(|r| r.len() >= SHARE_MIN)
        .map(|r| (r.as_ptr() as usize, r.clone()))
        .collect();
    let mut buf = ChunkedBuf {
        done: Vec::with_capacity(2 * shared.len() + 2),
        inline: BytesMut::with_capacity(256),
        base: 0,
        shared,
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, ApiKey::Fetch.response_header_version(version))
        .map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    let mut chunks = buf.finish();
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let len = i32::try_from(total).map_err(|_| ProtocolError::Encode {
        api: ApiKey::Fetch,
        version,
        reason: format!("response of {total} bytes is too large for a frame"),
    })?;
    chunks.insert(0, Bytes::copy_from_slice(&len.to_be_bytes()));
    Ok(chunks)
}

/// A `ByteBufMut` that copies what it is given into `inline`, except a slice that is exactly
/// one of `shared` (same address and length): that one ends the current inline chunk and is
/// kept as the `Bytes` it is.
struct ChunkedBuf {
    /// Finished chunks, in order.
    done: Vec<Bytes>,
    /// The chunk being written.
    inline: BytesMut,
    /// Bytes in `done`, i.e. the offset where `inline` starts.
    base: usize,
    /// Shareable fields by address.
    shared: HashMap<usize, Bytes>,
}

impl ChunkedBuf {
    fn finish(mut self) -> Vec<Bytes> {
        if !self.inline.is_empty() {
            self.done.push(self.inline.freeze());
        }
        self.done
    }

    fn share(&mut self, src: &[u8]) -> bool {
        if src.len() < SHARE_MIN {
            return false;
        }
        let Some(b) = self.shared.get(&(src.as_ptr() as usize)) else {
            return false;
        };
        if b.len() != src.len() {
            return false;
        }
        let b = b.clone();
        if !self.inline.is_empty() {
            let head = self.inline.split().freeze();
            self.base += head.len();
            self.done.push(head);
        }
        self.base += b.len();
        self.done.push(b);
        true
    }
}

// SAFETY: every method delegates to `BytesMut`'s own implementation on `inline`, so the
// trait's contract (what `chunk_mut` returns is writable, `advance_mut` only past initialised
// bytes) is BytesMut's.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        self.inline.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise (cnt bytes of `chunk_mut` initialised) is passed on.
        unsafe { self.inline.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.inline.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if !self.share(src) {
            self.inline.put_slice(src);
        }
    }
}

/// Offsets count from the start of the response. The message encoders never seek or read back
/// (only record-batch encoding does, which does not run here); both are supported within the
/// chunk being written, and anything before it is out of reach.
impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.base + self.inline.len()
    }

    fn seek(&mut self, offset: usize) {
        let to = offset.saturating_sub(self.base);
        self.inline.resize(to, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.base);
        let end = r.end.saturating_sub(self.base);
        &mut self.inline[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(sizes: &[usize]) -> FetchResponse {
        let mut t = FetchableTopicResponse::default();
        t.topic = TopicName(StrBytes::from_static_str("t"));
        for (i, n) in sizes.iter().enumerate() {
            let mut p = PartitionData::default();
            p.partition_index = i as i32;
            p.high_watermark = 7 * i as i64;
            p.records = Some(Bytes::from((0..*n).map(|x| x as u8).collect::<Vec<u8>>()));
            t.partitions.push(p);
        }
        let mut r = FetchResponse::default();
        r.responses = vec![t];
        r
    }

    #[test]
    fn chunks_are_the_plain_encoding_in_pieces_without_copying_records() {
        for version in [4i16, 11, 12, 13, 16, 17] {
            let mut r = response(&[10_000, 3, 0, SHARE_MIN, 70_000]);
            if version >= 13 {
                for t in &mut r.responses {
                    t.topic = TopicName::default();
                }
            }
            let plain =
                crate::encode_response(ApiKey::Fetch, version, 42, &ResponseKind::Fetch(r.clone()))
                    .expect("plain");
            let chunks = encode_fetch_response(version, 42, &r).expect("chunked");
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, plain.to_vec(), "version {version}");
            // The three large records fields are chunks of their own, sharing memory.
            let records: Vec<&Bytes> = r.responses[0]
                .partitions
                .iter()
                .filter_map(|p| p.records.as_ref())
                .filter(|b| b.len() >= SHARE_MIN)
                .collect();
            for rec in records {
                assert!(
                    chunks
                        .iter()
                        .any(|c| c.as_ptr() == rec.as_ptr() && c.len() == rec.len()),
                    "records of {} bytes were copied (version {version})",
                    rec.len()
                );
            }
        }
    }
}
