//! Arbitrary bytes through `batch::split`, `batch::validate` and `batch::records`.
//!
//! Byte 0 selects a mode: even = the rest is used as is; odd = the `batchLength` of the first
//! batch is set to cover the buffer (bit 1) and every batch's CRC is recomputed, so that the
//! record decoder and all four decompressors (attributes bits 0-2) see fuzzed input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{check_batches, fix_crcs, fix_length};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    if mode & 1 == 1 {
        if mode & 2 == 2 {
            fix_length(&mut buf);
        }
        fix_crcs(&mut buf);
    }
    check_batches(&buf);
});
