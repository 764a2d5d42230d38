//! Arbitrary bytes as a leader's fetch answer, through `Log::append_as_follower` on an
//! in-memory log: it must refuse or append without panicking, and what it accepts must read
//! back byte for byte.
//!
//! Byte 0 selects a mode as in `record_batch`: odd = the first batch's `batchLength` may be
//! fixed (bit 1) and every CRC is recomputed, so the stored-batch checks see fuzzed headers.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{fix_crcs, fix_length};
use sluice_storage::{Log, LogConfig, MemoryBackend};

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
