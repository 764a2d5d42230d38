//! Kafka wire framing and request/response dispatch on top of the `kafka-protocol` crate.
//!
//! This crate knows bytes on the wire and nothing else: it never touches storage, sockets it did
//! not get handed, or broker state. It offers:
//!
//! * [`frame`]: reading one length-prefixed frame from an async reader, refusing bad lengths
//!   *before* allocating, and writing one back;
//! * [`api`]: the table of APIs and versions this broker advertises, built from the request types'
//!   own `VERSIONS` constants so we never advertise a version the decoders can't read;
//! * [`decode_request`] / [`encode_response`]: header + body codecs, including the KIP-511 answer to
//!   an ApiVersions request whose version we do not support.

pub mod api;
pub mod chunked;
pub mod frame;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

pub use kafka_protocol;

/// Errors that end a connection (Kafka closes the socket in all of these cases) or that the
/// caller answers specially.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Frame too short to even hold an API key, version and correlation id.
    #[error("frame of {0} bytes is too short for a request header")]
    ShortFrame(usize),
    /// API key not known to Kafka at all.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// A known API that this broker does not implement.
    #[error("API {0:?} is not supported by this broker")]
    UnsupportedApi(ApiKey),
    /// A supported API at a version outside our range (not ApiVersions).
    #[error("API {api:?} version {version} is not supported (supported {min}..={max})")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
        /// Lowest supported.
        min: i16,
        /// Highest supported.
        max: i16,
    },
    /// ApiVersions at a version we do not support: answer per KIP-511, don't close.
    #[error("ApiVersions version {version} is not supported")]
    UnsupportedApiVersions {
        /// Correlation id to echo.
        correlation_id: i32,
        /// The version asked for.
        version: i16,
    },
    /// The header could not be decoded.
    #[error("malformed request header: {0}")]
    BadHeader(String),
    /// The body could not be decoded.
    #[error("malformed {api:?} v{version} request body from client {client_id:?}: {reason}")]
    BadBody {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// The client id from the (valid) request header.
        client_id: Option<String>,
        /// What went wrong.
        reason: String,
    },
    /// Our own encoder refused a response (a bug: logged, connection closed).
    #[error("could not encode {api:?} v{version} response: {reason}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// What went wrong.
        reason: String,
    },
}

/// A decoded request: its header and typed body.
#[derive(Debug)]
pub struct Request {
    /// The request header (api key, version, correlation id, client id).
    pub header: RequestHeader,
    /// The API this request is for.
    pub api_key: ApiKey,
    /// The typed body.
    pub body: RequestKind,
}

/// Decodes one request frame (without its length prefix).
///
/// Checks the API key and version against [`api::supported`] before touching the body, so an
/// unsupported request is refused without decoding it.
pub fn decode_request(mut frame: Bytes) -> Result<Request, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::ShortFrame(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| ProtocolError::UnknownApiKey(raw_key))?;
    let range = api::supported(api_key).ok_or(ProtocolError::UnsupportedApi(api_key))?;
    if version < range.min || version > range.max {
        if api_key == ApiKey::ApiVersions {
            return Err(ProtocolError::UnsupportedApiVersions {
                correlation_id,
                version,
            });
        }
        return Err(ProtocolError::UnsupportedVersion {
            api: api_key,
            version,
            min: range.min,
            max: range.max,
        });
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| ProtocolError::BadHeader(e.to_string()))?;
    let body =
        RequestKind::decode(api_key, &mut frame, version).map_err(|e| ProtocolError::BadBody {
            api: api_key,
            version,
            client_id: header.client_id.as_ref().map(|c| c.to_string()),
            reason: e.to_string(),
        })?;
    Ok(Request {
        header,
        api_key,
        body,
    })
}

/// Encodes a response with its length prefix, ready to write to the socket.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, ProtocolError> {
    let err = |e: anyhow::Error| ProtocolError::Encode {
        api: api_key,
        version,
        reason: e.to_string(),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header.encode(&mut buf, header_version).map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The KIP-511 answer to an ApiVersions request at a version we don't support: response header
/// v0, an ApiVersionsResponse v0 body with error 35 (UNSUPPORTED_VERSION) and the api_keys entry
/// for ApiVersions itself, so the client retries with a version we do support.
pub fn unsupported_api_versions_response(correlation_id: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(32);
    let range = api::supported(ApiKey::ApiVersions)
        .unwrap_or(kafka_protocol::protocol::VersionRange { min: 0, max: 0 });
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    buf.put_i16(35); // UNSUPPORTED_VERSION
    buf.put_i32(1); // api_keys array length (v0: non-compact)
    buf.put_i16(ApiKey::ApiVersions as i16);
    buf.put_i16(range.min);
    buf.put_i16(range.max);
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// Builds the full ApiVersions response body for the supported table.
pub fn api_versions_body() -> ApiVersionsResponse {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    let keys = api::SUPPORTED
        .iter()
        .map(|(k, r)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(r.min)
                .with_max_version(r.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(keys)
}

/// Reads the response header version for an API (helper for clients in tests).
pub fn response_header_version<R: HeaderVersion>(version: i16) -> i16 {
    R::header_version(version)
}

/// Peeks the correlation id of a raw frame (for error logging when decoding fails).
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    let mut b = frame.get(4..8)?;
    Some(b.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn frame_for<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, req: &R) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        header.encode(&mut buf, R::header_version(version)).unwrap();
        req.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_supported_request() {
        let f = frame_for(ApiKey::Metadata, 12, &MetadataRequest::default());
        let r = decode_request(f).unwrap();
        assert_eq!(r.api_key, ApiKey::Metadata);
        assert_eq!(r.header.correlation_id, 7);
        assert!(matches!(r.body, RequestKind::Metadata(_)));
    }

    #[test]
    fn unsupported_api_versions_is_special() {
        let mut f = BytesMut::new();
        f.put_i16(18);
        f.put_i16(99);
        f.put_i32(42);
        f.put_i16(-1);
        match decode_request(f.freeze()) {
            Err(ProtocolError::UnsupportedApiVersions {
                correlation_id: 42,
                version: 99,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        let resp = unsupported_api_versions_response(42);
        // length, correlation id, error code 35, one entry for key 18
        assert_eq!(&resp[4..8], &42i32.to_be_bytes());
        assert_eq!(&resp[8..10], &35i16.to_be_bytes());
        assert_eq!(&resp[14..16], &18i16.to_be_bytes());
        assert_eq!(
            resp.len() - 4,
            i32::from_be_bytes([resp[0], resp[1], resp[2], resp[3]]) as usize
        );
    }

    #[test]
    fn unsupported_version_of_other_api_is_an_error() {
        let f = frame_for(ApiKey::Metadata, 12, &MetadataRequest::default());
        let mut raw = BytesMut::from(&f[..]);
        raw[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(raw.freeze()),
            Err(ProtocolError::UnsupportedVersion { version: 99, .. })
        ));
    }

    #[test]
    fn unknown_key_and_short_frames() {
        let mut f = BytesMut::new();
        f.put_i16(9999);
        f.put_i16(0);
        f.put_i32(1);
        assert!(matches!(
            decode_request(f.freeze()),
            Err(ProtocolError::UnknownApiKey(9999))
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0])),
            Err(ProtocolError::ShortFrame(3))
        ));
    }

    #[test]
    fn garbage_body_is_bad_body_not_panic() {
        let f = frame_for(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let truncated = f.slice(0..f.len() - 1);
        assert!(decode_request(truncated).is_err());
    }

    #[test]
    fn response_roundtrip_length_prefix() {
        let body = ResponseKind::ApiVersions(api_versions_body());
        let bytes = encode_response(ApiKey::ApiVersions, 3, 5, &body).unwrap();
        let len = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert_eq!(len, bytes.len() - 4);
        let mut rest = bytes.slice(4..);
        let hdr = ResponseHeader::decode(&mut rest, 0).unwrap();
        assert_eq!(hdr.correlation_id, 5);
        let decoded = ApiVersionsResponse::decode(&mut rest, 3).unwrap();
        assert!(decoded.api_keys.iter().any(|k| k.api_key == 0));
    }
}
