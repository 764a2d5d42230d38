//! Structure-aware request fuzzing: byte 0 picks an API from `api::SUPPORTED`, byte 1 a
//! version inside its range, byte 2 header options; a valid header is built and the rest
//! of the input is the body. Decoding must not panic or abort and must refuse only the body;
//! re-encoding a decoded body must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body lives in sluice_fuzz::targets so that `cargo test` replays the corpus through it.
fuzz_target!(|data: &[u8]| sluice_fuzz::targets::request_body(data));
