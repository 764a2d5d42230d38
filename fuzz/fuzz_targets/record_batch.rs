//! Arbitrary bytes through `batch::split`, `batch::validate` and `batch::records`.
//!
//! Byte 0 selects a mode: even = the rest is used as is; odd = the `batchLength` of the first
//! batch is set to cover the buffer (bit 1) and every batch's CRC is recomputed, so that the
//! record decoder and all four decompressors (attributes bits 0-2) see fuzzed input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{batches_from, check_batches};

fuzz_target!(|data: &[u8]| {
    if let Some(buf) = batches_from(data) {
        check_batches(&buf);
    }
});
