//! Arbitrary bytes as a connection's read side: `read_frame` is called until it fails, with a
//! small maximum chosen by the first byte. Every frame returned must be non-empty, within the
//! maximum and an exact slice of the input; the total consumed never exceeds the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body lives in sluice_fuzz::targets so that `cargo test` replays the corpus through it.
fuzz_target!(|data: &[u8]| sluice_fuzz::targets::frame(data));
