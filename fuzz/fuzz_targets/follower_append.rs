//! Arbitrary bytes as a leader's fetch answer, through `Log::append_as_follower` on an
//! in-memory log: it must refuse or append without panicking, and what it accepts must read
//! back byte for byte.
//!
//! The input becomes batch bytes through `sluice_fuzz::batches_from` (as in `record_batch`),
//! so the stored-batch checks behind the CRC see fuzzed headers.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::batches_from;
use sluice_storage::{Log, LogConfig, MemoryBackend};

fuzz_target!(|data: &[u8]| {
    let Some(buf) = batches_from(data) else {
        return;
    };
    let backend = Arc::new(MemoryBackend::new());
    let Ok(log) = Log::open(backend, Path::new("/f"), LogConfig::default()) else {
        return;
    };
    if let Ok(info) = log.append_as_follower(&buf) {
        if info.record_count > 0 {
            let back = log.read(0, usize::MAX, i64::MAX).expect("read what was appended");
            assert_eq!(&back.data[..], &buf[..], "a follower keeps the leader's bytes");
        }
    }
});
