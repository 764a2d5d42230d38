//! Inputs shared by the benches: record batches built with kafka-protocol's encoder (as a
//! client would send them) and a seeded generator for reproducible "random" offsets.
#![allow(dead_code)] // each bench target uses a different subset

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One v2 record batch of `n` records with `value_len`-byte values (keys `key-<i>` when
/// `keyed`), base offset 0 and no producer id, as a producer sends it.
pub fn batch(n: usize, value_len: usize, keyed: bool, compression: Compression) -> Vec<u8> {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // offset - sequence must be the same for all records of one batch; base sequence -1
            // (no producer id).
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: keyed.then(|| Bytes::from(format!("key-{i:08}"))),
            // Not all one byte, so compression has something to do but still finds repeats.
            value: Some(Bytes::from(
                (0..value_len)
                    .map(|j| b'a' + ((i * 7 + j / 16) % 26) as u8)
                    .collect::<Vec<u8>>(),
            )),
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
    .expect("encode batch");
    buf.to_vec()
}

/// The 16-record batch of 1 KiB values used throughout (about 16.5 KiB, a producer's
/// default `batch.size` worth).
pub fn produce_batch() -> Vec<u8> {
    batch(16, 1024, false, Compression::None)
}

/// `count` copies of `one` back to back (a produce or fetch buffer of many batches).
pub fn repeat(one: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(one.len() * count);
    for _ in 0..count {
        out.extend_from_slice(one);
    }
    out
}

/// xorshift64*: a fixed sequence of pseudo-random numbers, so every run reads the same offsets.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}
