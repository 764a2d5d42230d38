//! Arbitrary bytes as one request frame (length prefix already stripped), exactly what the
//! broker hands to `decode_request` after `read_frame`. Must never panic or abort; a decoded
//! request must be a supported api/version and the errors must match the header bytes.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use libfuzzer_sys::fuzz_target;
use sluice_protocol::{api, decode_request, ProtocolError};

fuzz_target!(|data: &[u8]| {
    let res = decode_request(Bytes::copy_from_slice(data));
    match res {
        Ok(req) => {
            let range = api::supported(req.api_key).expect("decoded an unsupported api");
            let v = req.header.request_api_version;
            assert!(v >= range.min && v <= range.max);
            assert_eq!(req.header.request_api_key, req.api_key as i16);
        }
        Err(ProtocolError::ShortFrame(n)) => assert!(n < 8 && n == data.len()),
        Err(ProtocolError::UnknownApiKey(k)) => assert!(ApiKey::try_from(k).is_err()),
        Err(ProtocolError::UnsupportedApi(k)) => assert!(api::supported(k).is_none()),
        Err(ProtocolError::UnsupportedApiVersions { correlation_id, .. }) => {
            assert_eq!(
                Some(correlation_id),
                sluice_protocol::peek_correlation_id(data)
            );
            let resp = sluice_protocol::unsupported_api_versions_response(correlation_id);
            assert!(resp.len() > 8);
        }
        Err(_) => {}
    }
});
