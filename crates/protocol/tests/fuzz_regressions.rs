//! Regression tests for inputs found by the fuzz targets in `fuzz/` (see `scripts/fuzz`) and
//! by the bad-input soak test (`tests/soak`).
//!
//! The huge-count cases were fixed by bounding kafka-protocol's pre-allocation
//! (vendor/kafka-protocol/SLUICE-PATCH.md).

use std::path::PathBuf;

use bytes::{BufMut, Bytes, BytesMut};
use sluice_protocol::{decode_request, ProtocolError};

/// A request frame (no length prefix) with a v1 request header (client id null) and `body`.
fn frame_v1_header(api_key: i16, version: i16, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(1);
    b.put_i16(-1);
    b.put_slice(body);
    b.freeze()
}

/// Every frame recorded from real clients (confluent-kafka, kafka-python) by
/// `tests/soak/record_frames.py` decodes, and its truncations fail cleanly.
#[test]
fn recorded_client_frames_decode() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/soak/frames");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let req = decode_request(Bytes::from(data.clone()))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(req.api_key as i16, i16::from_be_bytes([data[0], data[1]]));
        for cut in [8, data.len() / 2, data.len() - 1] {
            assert!(decode_request(Bytes::copy_from_slice(&data[..cut])).is_err());
        }
        n += 1;
    }
    assert!(n >= 10, "only {n} recorded frames in {}", dir.display());
}

/// An array count larger than the rest of the frame, but small enough that the up-front
/// allocation succeeds, is a clean body error.
#[test]
fn moderate_array_count_lie_is_a_body_error() {
    // Metadata v4: topics array (i32 count) then allow_auto_topic_creation.
    let f = frame_v1_header(3, 4, &1_000_000i32.to_be_bytes());
    assert!(matches!(
        decode_request(f),
        Err(ProtocolError::BadBody { version: 4, .. })
    ));
}

/// Found by `request_header` and the soak test: a 16-byte Metadata v4 request whose topics
/// array claims `i32::MAX` entries. kafka-protocol 0.18's `Array::decode` calls
/// `Vec::with_capacity(count)` before reading an element (~150 GB of `MetadataRequestTopic`),
/// the allocation fails and the process aborts (SIGABRT): one unauthenticated request kills
/// the broker. Expected: `BadBody`.
#[test]

fn metadata_huge_topic_array_count_is_refused() {
    let f = frame_v1_header(3, 4, &i32::MAX.to_be_bytes());
    assert!(matches!(
        decode_request(f),
        Err(ProtocolError::BadBody { .. })
    ));
}

/// Found by `request_body`: CreateTopics v5 (flexible) with a compact-array topic count of
/// `u32::MAX` (unsigned varint `ff ff ff ff 0f`): `CompactArray::decode` asks for ~400 GB.
#[test]

fn create_topics_huge_compact_array_count_is_refused() {
    let mut b = BytesMut::new();
    b.put_i16(19);
    b.put_i16(5);
    b.put_i32(1);
    b.put_i16(-1); // client id
    b.put_u8(0); // header tagged fields
    b.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // topics: compact count u32::MAX
    assert!(matches!(
        decode_request(b.freeze()),
        Err(ProtocolError::BadBody { .. })
    ));
}
