//! Arbitrary bytes as a connection's read side: `read_frame` is called until it fails, with a
//! small maximum chosen by the first byte. Every frame returned must be non-empty, within the
//! maximum and an exact slice of the input; the total consumed never exceeds the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_protocol::frame::{read_frame, FrameError};

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let max = 1 + (m as usize) * 4;
    RT.with(|rt| {
        rt.block_on(async {
            let mut reader: &[u8] = rest;
            let mut consumed = 0usize;
            // Bounded: each successful frame consumes at least 5 bytes.
            loop {
                let before = reader.len();
                match read_frame(&mut reader, max).await {
                    Ok(frame) => {
                        assert!(!frame.is_empty() && frame.len() <= max);
                        let start = consumed + 4;
                        assert_eq!(&frame[..], &rest[start..start + frame.len()]);
                        consumed += 4 + frame.len();
                        assert_eq!(before - reader.len(), 4 + frame.len());
                    }
                    Err(FrameError::Closed) => {
                        assert!(before < 4);
                        break;
                    }
                    Err(FrameError::InvalidLength(l)) => {
                        assert!(l <= 0);
                        break;
                    }
                    Err(FrameError::TooLarge { len, max: m2 }) => {
                        assert!(len as usize > max && m2 == max);
                        break;
                    }
                    Err(FrameError::Io(_)) => break,
                }
            }
            assert!(consumed <= rest.len());
        })
    });
});
