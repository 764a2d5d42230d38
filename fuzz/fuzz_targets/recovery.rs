//! Arbitrary partition directories through `Log::open` (recovery) on a `MemoryBackend`.
//!
//! Input layout (see `sluice_fuzz::RecoveryInput::parse`): a flags byte, optional
//! recovery-point / log-start-offset values, optional `.index` / `.timeindex` /
//! `leader-epoch-checkpoint` contents and an optional second segment, then the bytes of
//! `00000000000000000000.log`. With the `fix_crc` flag every batch-shaped piece of each segment
//! gets a correct CRC so recovery's offset/chain logic is reached.
//!
//! Invariants: `Log::open` returns Ok or Err, never panics. On Ok, reading every offset from
//! log start to log end returns whole batches, contiguous in offsets; every batch that recovery
//! had to validate passes `batch::validate`; after `close()` the directory opens again with the
//! same log start/end offsets.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The body lives in sluice_fuzz::targets so that `cargo test` replays the corpus through it.
fuzz_target!(|data: &[u8]| sluice_fuzz::targets::recovery(data));
