//! Arbitrary bytes through `batch::split`, `batch::validate` and `batch::records`.
//!
//! Byte 0 selects a mode: even = the rest is used as is; odd = the `batchLength` of the first
//! batch is set to cover the buffer (bit 1) and every batch's CRC is recomputed, so that the
//! record decoder and all four decompressors (attributes bits 0-2) see fuzzed input.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body lives in sluice_fuzz::targets so that `cargo test` replays the corpus through it.
fuzz_target!(|data: &[u8]| sluice_fuzz::targets::record_batch(data));
