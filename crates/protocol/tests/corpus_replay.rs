//! CI smoke pass for the fuzz targets without cargo-fuzz: every committed corpus input of the
//! `request_header` and `frame` targets (fuzz/corpus/) is replayed through the same entry
//! points the broker uses. A decoder panic or abort on any of them fails this test.

use std::path::PathBuf;

use bytes::Bytes;
use sluice_protocol::decode_request;
use sluice_protocol::frame::read_frame;

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
fn request_header_corpus_decodes_without_panic() {
    let inputs = corpus("request_header");
    assert!(
        inputs.len() > 100,
        "corpus missing: {} inputs",
        inputs.len()
    );
    let mut ok = 0;
    for data in &inputs {
        if decode_request(Bytes::copy_from_slice(data)).is_ok() {
            ok += 1;
        }
    }
    // The corpus holds real client frames too, so some decode.
    assert!(ok > 0, "no corpus input decoded");
}

#[tokio::test]
async fn frame_corpus_reads_without_panic() {
    let inputs = corpus("frame");
    assert!(!inputs.is_empty(), "corpus missing");
    for data in &inputs {
        let mut r: &[u8] = data;
        // Read until the input is exhausted or refused; bounded by the input length.
        for _ in 0..data.len() + 1 {
            if read_frame(&mut r, 1 << 16).await.is_err() {
                break;
            }
        }
    }
}
