//! Arbitrary bytes as one request frame (length prefix already stripped), exactly what the
//! broker hands to `decode_request` after `read_frame`. Must never panic or abort; a decoded
//! request must be a supported api/version and the errors must match the header bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body lives in sluice_fuzz::targets so that `cargo test` replays the corpus through it.
fuzz_target!(|data: &[u8]| sluice_fuzz::targets::request_header(data));
