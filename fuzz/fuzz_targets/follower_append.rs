//! Arbitrary bytes as a leader's fetch answer, through `Log::append_as_follower` on an
//! in-memory log: it must refuse or append without panicking, and what it accepts must read
//! back byte for byte.
//!
//! The input becomes batch bytes through `sluice_fuzz::batches_from` (as in `record_batch`),
//! so the stored-batch checks behind the CRC see fuzzed headers.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body lives in sluice_fuzz::targets so that `cargo test` replays the corpus through it.
fuzz_target!(|data: &[u8]| sluice_fuzz::targets::follower_append(data));
