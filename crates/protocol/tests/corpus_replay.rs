//! Every committed fuzz corpus (fuzz/corpus/<target>/), replayed in `cargo test` through the
//! fuzz targets' own bodies: `fuzz/src/lib.rs` is compiled into this test as a module, and each
//! `fuzz/fuzz_targets/*.rs` is a one-line wrapper around a function of its `targets` module. So
//! the test command checks, on every input ever kept, the invariants the fuzzer checks (a panic
//! or abort fails the test and names the input), without cargo-fuzz or a nightly toolchain.
//!
//! `record_batch_mutate` takes structured (`arbitrary`) input; its corpus goes through the
//! batch parser in crates/storage/tests/corpus_replay.rs. The `follower_append` target has no
//! corpus of its own: it reads the same input format as `record_batch`, so it replays that one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

#[allow(dead_code, clippy::all)]
#[path = "../../../fuzz/src/lib.rs"]
mod sluice_fuzz;

use sluice_fuzz::targets;

/// (file name, contents) of every input of `fuzz/corpus/<target>/`, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Runs `body` on every input of `target`'s corpus (at least `min` of them); fails naming
/// every input that panicked.
fn replay(target: &str, corpus_of: &str, min: usize, body: fn(&[u8])) {
    let inputs = corpus(corpus_of);
    assert!(
        inputs.len() >= min,
        "fuzz/corpus/{corpus_of}: {} inputs, expected at least {min}",
        inputs.len()
    );
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let failed: Vec<String> = inputs
        .iter()
        .filter_map(|(name, data)| {
            let r = catch_unwind(AssertUnwindSafe(|| body(data)));
            r.err().map(|e| {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("fuzz/corpus/{corpus_of}/{name}: {msg}")
            })
        })
        .collect();
    std::panic::set_hook(quiet);
    assert!(
        failed.is_empty(),
        "{} of {} inputs fail the {target} target:\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
}

#[test]
fn request_header_corpus() {
    replay(
        "request_header",
        "request_header",
        100,
        targets::request_header,
    );
}

#[test]
fn request_body_corpus() {
    replay("request_body", "request_body", 100, targets::request_body);
}

#[test]
fn frame_corpus() {
    replay("frame", "frame", 20, targets::frame);
}

#[test]
fn record_batch_corpus() {
    replay("record_batch", "record_batch", 100, targets::record_batch);
}

#[test]
fn follower_append_over_record_batch_corpus() {
    replay(
        "follower_append",
        "record_batch",
        100,
        targets::follower_append,
    );
}

#[test]
fn recovery_corpus() {
    replay("recovery", "recovery", 100, targets::recovery);
}

/// Every corpus directory is replayed by a test (here or in the storage crate): a new fuzz
/// target's corpus cannot be left out silently.
#[test]
fn every_corpus_is_replayed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let replayed = [
        "frame",
        "record_batch",
        "record_batch_mutate", // crates/storage/tests/corpus_replay.rs
        "recovery",
        "request_body",
        "request_header",
    ];
    assert_eq!(names, replayed, "a fuzz corpus without a replay test");
}
