//! Structure-aware request fuzzing: byte 0 picks an API from `api::SUPPORTED`, byte 1 a
//! version inside its range, byte 2 header options; a valid header is built and the rest
//! of the input is the body. Decoding must not panic or abort and must refuse only the body;
//! re-encoding a decoded body must not panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_fuzz::request_frame;
use sluice_protocol::{api::SUPPORTED, decode_request, ProtocolError};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (api, range) = SUPPORTED[data[0] as usize % SUPPORTED.len()];
    let span = (range.max - range.min + 1) as usize;
    let version = range.min + (data[1] as usize % span) as i16;
    let client_id = data[2] & 1 == 1;
    let frame = request_frame(api, version, 0x5eed, client_id, &data[3..]);
    match decode_request(frame) {
        Ok(req) => {
            assert_eq!(req.api_key, api);
            assert_eq!(req.header.correlation_id, 0x5eed);
            assert_eq!(req.header.request_api_version, version);
            // Encoding a decoded request must not panic. (Whether it decodes back is not
            // checked: kafka-protocol's encoder is not an exact inverse for every fuzzed body,
            // e.g. DescribeConfigs v4 with odd tagged fields, and the broker never re-encodes
            // a request, so that asymmetry cannot reach a client.)
            let mut buf = BytesMut::new();
            let _ = req.body.encode(&mut buf, version);
        }
        Err(ProtocolError::BadBody {
            api: a, version: v, ..
        }) => {
            assert_eq!((a, v), (api, version));
        }
        Err(e) => panic!("valid header refused: {e}"),
    }
});
