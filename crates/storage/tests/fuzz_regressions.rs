//! Regression tests for inputs found by the `record_batch` / `record_batch_mutate` /
//! `recovery` fuzz targets (`fuzz/`, `scripts/fuzz`).
//!
//! The huge-count cases were fixed by bounding kafka-protocol's pre-allocation
//! (vendor/kafka-protocol/SLUICE-PATCH.md).

use sluice_storage::batch;

/// A v2 batch header (61 bytes) with the given record count followed by `records`, with a
/// correct length field and CRC.
fn batch_with(records_count: i32, attributes: i16, records: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes()); // batch length
    b.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&(records_count.max(1) - 1).to_be_bytes()); // last offset delta
    b.extend_from_slice(&0i64.to_be_bytes()); // base timestamp
    b.extend_from_slice(&0i64.to_be_bytes()); // max timestamp
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&records_count.to_be_bytes());
    b.extend_from_slice(records);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &byte in data {
        c ^= u32::from(byte);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A record count slightly above what the bytes hold is a clean error from `records`.
#[test]
fn records_count_lie_is_an_error() {
    // One record: length 6, attributes 0, ts delta 0, offset delta 0, key -1, value -1, 0 headers.
    let one = [0x0c, 0, 0, 0, 1, 1, 0];
    let b = batch_with(1, 0, &one);
    assert_eq!(batch::records(&b).unwrap().len(), 1);
    let lie = batch_with(1000, 0, &one);
    assert!(batch::records(&lie).is_err());
    // The same lie in a gzip batch (count not bounded by the compressed size) also fails.
    let gz = batch_with(1000, 1, &one);
    assert!(batch::validate(&gz).is_ok());
    assert!(batch::records(&gz).is_err());
}

/// Found by `record_batch`: a batch with a valid CRC whose `recordsCount` is `i32::MAX`.
/// `batch::records` hands it to kafka-protocol 0.18's `RecordBatchDecoder`, which calls
/// `records.reserve(record_count)` (~2^31 * size_of::<Record>() bytes) before decoding a
/// record; the allocation fails and the process aborts. `records` is used by the broker when
/// it must re-encode a produced batch (topic `compression.type` differs from the producer's),
/// so a 70-byte Produce killed the broker. Fixed in storage (caea6ea: uncompressed counts are
/// bounded by the batch size, `records` refuses more than `MAX_DECODE_RECORDS`).
#[test]
fn records_with_huge_record_count_is_refused() {
    for attributes in [0, 1, 2, 3, 4] {
        let b = batch_with(i32::MAX, attributes, &[0x0c, 0, 0, 0, 1, 1, 0]);
        assert!(batch::records(&b).is_err(), "codec {attributes}");
    }
}

/// Found by `record_batch`: one record whose header count is `i32::MAX` (varint
/// `fe ff ff ff 0f`): kafka-protocol's `Record::decode_new` calls
/// `IndexMap::with_capacity(num_headers)` first. Expected: an error.
#[test]
fn record_with_huge_header_count_is_refused() {
    // length 10, attributes, ts delta, offset delta, key -1, value -1, headers i32::MAX
    let rec = [0x14, 0, 0, 0, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f];
    let b = batch_with(1, 0, &rec);
    assert!(batch::validate(&b).is_ok());
    assert!(batch::records(&b).is_err());
}
