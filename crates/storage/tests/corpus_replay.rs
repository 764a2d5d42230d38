//! CI smoke pass for the `record_batch` / `record_batch_mutate` fuzz targets without cargo-fuzz:
//! every committed corpus input (fuzz/corpus/) goes through the batch parser and record decoder
//! (all codecs). A panic or abort on any of them fails this test.

use std::path::PathBuf;

use sluice_storage::batch;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.path().is_file() {
                out.push(std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn record_batch_corpora_parse_without_panic() {
    let mut n = 0;
    for target in ["record_batch", "record_batch_mutate"] {
        for data in corpus(target) {
            // The targets use the first byte as a mode switch; parse both with and without it.
            for buf in [&data[..], data.get(1..).unwrap_or(&[])] {
                if let Ok(batches) = batch::split(buf) {
                    for (_, range) in batches {
                        let one = &buf[range];
                        let _ = batch::validate(one);
                        let _ = batch::records(one);
                    }
                }
                let _ = batch::validate(buf);
                let _ = batch::records(buf);
                n += 1;
            }
        }
    }
    assert!(n > 100, "corpus missing: {n} inputs");
}
