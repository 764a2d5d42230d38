//! Builds a valid v2 batch with kafka-protocol's `RecordBatchEncoder` (records, codec and
//! producer fields chosen by the fuzzer), checks that storage accepts it and decodes the same
//! records, then applies byte flips / truncation / appended garbage and checks that
//! `split` / `validate` / `records` refuse or agree without panicking. With `fix_crc` the
//! mutated batch gets a correct CRC so corrupted compressed payloads reach the decompressors.
#![no_main]

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{check_batches, fix_crcs, fix_length};
use sluice_storage::batch;

#[derive(Debug, Arbitrary)]
struct Rec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    ts_delta: u16,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

#[derive(Debug, Arbitrary)]
enum Mutation {
    Flip { at: u16, mask: u8 },
    Set { at: u16, byte: u8 },
    Truncate { len: u16 },
    Append(Vec<u8>),
    Duplicate,
}

#[derive(Debug, Arbitrary)]
struct Input {
    codec: u8,
    base_offset: i64,
    base_ts: i64,
    idempotent: Option<(i64, i16, i32)>,
    records: Vec<Rec>,
    mutations: Vec<Mutation>,
    fix_len: bool,
    fix_crc: bool,
}

fn build(input: &Input) -> Option<Vec<u8>> {
    let compression = match input.codec % 5 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::Zstd,
    };
    let (pid, epoch, seq) = input.idempotent.unwrap_or((-1, -1, -1));
    let base_offset = input.base_offset.rem_euclid(1 << 48);
    let mut ts = input.base_ts.clamp(-(1 << 50), 1 << 50);
    let recs: Vec<Record> = input
        .records
        .iter()
        .take(64)
        .enumerate()
        .map(|(i, r)| {
            ts = ts.saturating_add(i64::from(r.ts_delta));
            let mut headers = IndexMap::new();
            for (k, v) in r.headers.iter().take(4) {
                headers.insert(StrBytes::from_string(k.clone()), v.clone().map(Bytes::from));
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: base_offset + i as i64,
                sequence: seq.wrapping_add(i as i32),
                timestamp: ts,
                key: r.key.clone().map(Bytes::from),
                value: r.value.clone().map(Bytes::from),
                headers,
            }
        })
        .collect();
    if recs.is_empty() {
        return None;
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .ok()?;
    Some(buf.to_vec())
}

fuzz_target!(|input: Input| {
    let Some(mut buf) = build(&input) else {
        return;
    };
    // The untouched batch must be accepted and decode to the same number of records.
    let h = batch::validate(&buf).expect("storage refuses a batch kafka-protocol encoded");
    let n = input.records.len().min(64);
    assert_eq!(h.records_count as usize, n);
    let recs = batch::records(&buf).expect("storage cannot decode kafka-protocol's batch");
    assert_eq!(recs.len(), n);
    for (r, orig) in recs.iter().zip(input.records.iter()) {
        assert_eq!(r.key.as_deref(), orig.key.as_deref());
        assert_eq!(r.value_is_null, orig.value.is_none());
    }
    assert_eq!(check_batches(&buf), n);

    for m in input.mutations.iter().take(8) {
        match m {
            Mutation::Flip { at, mask } => {
                if !buf.is_empty() {
                    let i = *at as usize % buf.len();
                    buf[i] ^= mask;
                }
            }
            Mutation::Set { at, byte } => {
                if !buf.is_empty() {
                    let i = *at as usize % buf.len();
                    buf[i] = *byte;
                }
            }
            Mutation::Truncate { len } => {
                let l = *len as usize % (buf.len() + 1);
                buf.truncate(l);
            }
            Mutation::Append(extra) => buf.extend_from_slice(extra),
            Mutation::Duplicate => {
                let copy = buf.clone();
                buf.extend_from_slice(&copy);
            }
        }
    }
    if input.fix_len {
        fix_length(&mut buf);
    }
    if input.fix_crc {
        fix_crcs(&mut buf);
    }
    check_batches(&buf);
});
