//! One TCP connection to one broker: length-prefixed framing, request headers, correlation ids
//! and ApiVersions negotiation.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{ClientError, Result};

/// Largest response frame we accept (guards against garbage length prefixes).
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// Encodes one request frame: 4-byte big-endian length, header, body.
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> std::result::Result<BytesMut, String> {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_string(client_id.to_owned()));
    let header_version = R::header_version(version);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| format!("encoding request header: {e}"))?;
    req.encode(&mut buf, version)
        .map_err(|e| format!("encoding {} v{version}: {e}", api_name(R::KEY)))?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| "request too large".to_string())?;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Decodes a response frame body (without the length prefix) and checks its correlation id.
pub fn decode_response<R: Request>(
    mut body: Bytes,
    version: i16,
    expected_correlation_id: i32,
) -> std::result::Result<R::Response, String> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut body, header_version)
        .map_err(|e| format!("decoding response header: {e}"))?;
    if header.correlation_id != expected_correlation_id {
        return Err(format!(
            "correlation id mismatch: sent {expected_correlation_id}, got {}",
            header.correlation_id
        ));
    }
    let resp = R::Response::decode(&mut body, version)
        .map_err(|e| format!("decoding {} v{version} response: {e}", api_name(R::KEY)))?;
    Ok(resp)
}

/// Decodes an ApiVersions response body. A broker that does not support the requested version
/// answers UNSUPPORTED_VERSION with a v0 body, so a body that fails to decode (or reports that
/// error) at `version` is decoded again as v0.
pub fn decode_api_versions(
    mut body: Bytes,
    version: i16,
    expected_correlation_id: i32,
) -> std::result::Result<ApiVersionsResponse, String> {
    let header = ResponseHeader::decode(&mut body, 0)
        .map_err(|e| format!("decoding response header: {e}"))?;
    if header.correlation_id != expected_correlation_id {
        return Err(format!(
            "correlation id mismatch: sent {expected_correlation_id}, got {}",
            header.correlation_id
        ));
    }
    let first = ApiVersionsResponse::decode(&mut body.clone(), version);
    match first {
        Ok(resp) if resp.error_code != 35 || version == 0 => Ok(resp),
        other => match ApiVersionsResponse::decode(&mut body, 0) {
            Ok(v0) => Ok(v0),
            Err(e) => other.map_err(|_| format!("decoding ApiVersions response: {e}")),
        },
    }
}

/// A readable API name for a key ("Metadata").
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}").trim_end_matches("Key").to_string(),
        Err(_) => format!("api key {key}"),
    }
}

/// Picks the version to use: the highest both sides support.
pub fn negotiate(ours: (i16, i16), theirs: Option<(i16, i16)>) -> Option<i16> {
    let (their_min, their_max) = theirs?;
    let max = ours.1.min(their_max);
    let min = ours.0.max(their_min);
    (max >= min).then_some(max)
}

/// A connection to one broker, after ApiVersions negotiation.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: TcpStream,
    client_id: String,
    next_correlation_id: i32,
    /// True from the start of a request until its whole response was read: still true
    /// afterwards when the caller dropped the future midway (e.g. a `select!` that gave up on
    /// a long-poll fetch), so the stream holds a stale or partial frame.
    desynced: bool,
    versions: HashMap<i16, (i16, i16)>,
    request_timeout: Duration,
}

impl Connection {
    /// Opens a TCP connection to `addr` ("host:port") and negotiates API versions.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Connection> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ClientError::Connect {
                    addr: addr.to_owned(),
                    reason: format!("no answer within {} ms", connect_timeout.as_millis()),
                })
            }
            Ok(Err(e)) => {
                return Err(ClientError::Connect {
                    addr: addr.to_owned(),
                    reason: io_reason(&e),
                })
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            addr: addr.to_owned(),
            stream,
            client_id: client_id.to_owned(),
            next_correlation_id: 1,
            desynced: false,
            versions: HashMap::new(),
            request_timeout,
        };
        conn.negotiate_versions().await?;
        Ok(conn)
    }

    /// Whether a request on this connection was abandoned before its response was read
    /// (or failed): the stream may hold a stale frame, so the connection must be replaced.
    pub fn is_desynced(&self) -> bool {
        self.desynced
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's supported version range for `key`, if it advertises the API.
    pub fn broker_versions(&self, key: i16) -> Option<(i16, i16)> {
        self.versions.get(&key).copied()
    }

    async fn negotiate_versions(&mut self) -> Result<()> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("sluice-client");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let mut version = ApiVersionsRequest::VERSIONS.max;
        // A broker that does not support our ApiVersions version answers with
        // UNSUPPORTED_VERSION and its own range (in a v0 body); retry once with that.
        for _ in 0..2 {
            let id = self.write_request(&req, version).await?;
            let body = self
                .read_frame_body(ApiVersionsRequest::KEY, self.request_timeout)
                .await?;
            let resp = decode_api_versions(body, version, id).map_err(|message| {
                ClientError::Protocol {
                    addr: self.addr.clone(),
                    message,
                }
            })?;
            if resp.error_code == 35 {
                let theirs = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiVersionsRequest::KEY)
                    .map(|k| (k.min_version, k.max_version));
                match negotiate(
                    (
                        ApiVersionsRequest::VERSIONS.min,
                        ApiVersionsRequest::VERSIONS.max,
                    ),
                    theirs,
                ) {
                    Some(v) if v != version => {
                        version = v;
                        continue;
                    }
                    _ => {
                        return Err(ClientError::UnsupportedApi {
                            addr: self.addr.clone(),
                            api: "ApiVersions".into(),
                            ours: range_str(Some((
                                ApiVersionsRequest::VERSIONS.min,
                                ApiVersionsRequest::VERSIONS.max,
                            ))),
                            theirs: range_str(theirs),
                        })
                    }
                }
            }
            ClientError::check(resp.error_code, None, || {
                format!("ApiVersions with {}", self.addr)
            })?;
            self.versions = resp
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect();
            return Ok(());
        }
        Err(ClientError::Protocol {
            addr: self.addr.clone(),
            message: "ApiVersions negotiation did not converge".into(),
        })
    }

    /// The version we will use for request type `R` with this broker.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        version_for::<R>(&self.addr, self.broker_versions(R::KEY))
    }

    /// Sends `req` with the negotiated version and waits for its response.
    pub async fn send<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let version = self.version_for::<R>()?;
        self.send_versioned(req, version).await
    }

    /// Like [`Connection::send`], allowing extra time (e.g. a fetch's max wait) on top of the
    /// request timeout.
    pub async fn send_with_extra_time<R: Request>(
        &mut self,
        req: &R,
        extra: Duration,
    ) -> Result<R::Response> {
        let version = self.version_for::<R>()?;
        let id = self.write_request(req, version).await?;
        self.read_response::<R>(version, id, self.request_timeout + extra)
            .await
    }

    /// Sends `req` without waiting for a response (produce with acks=0).
    pub async fn send_oneway<R: Request>(&mut self, req: &R) -> Result<()> {
        let version = self.version_for::<R>()?;
        self.write_request(req, version).await?;
        // No response will come.
        self.desynced = false;
        Ok(())
    }

    /// Sends `req` at an explicit `version` and waits for the response.
    pub async fn send_versioned<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response> {
        self.send_versioned_with_extra_time(req, version, Duration::ZERO)
            .await
    }

    /// Like [`Connection::send_versioned`], allowing `extra` time on top of the request
    /// timeout (e.g. a JoinGroup that the coordinator parks for the rebalance timeout).
    pub async fn send_versioned_with_extra_time<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        extra: Duration,
    ) -> Result<R::Response> {
        let id = self.write_request(req, version).await?;
        self.read_response::<R>(version, id, self.request_timeout + extra)
            .await
    }

    async fn write_request<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        self.desynced = true;
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let frame = encode_request(req, version, id, &self.client_id).map_err(|message| {
            ClientError::Protocol {
                addr: self.addr.clone(),
                message,
            }
        })?;
        let write = self.stream.write_all(&frame);
        match tokio::time::timeout(self.request_timeout, write).await {
            Err(_) => Err(self.timeout(
                format!("sending {}", api_name(R::KEY)),
                self.request_timeout,
            )),
            Ok(Err(source)) => Err(ClientError::Io {
                addr: self.addr.clone(),
                source,
            }),
            Ok(Ok(())) => Ok(id),
        }
    }

    async fn read_response<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
        limit: Duration,
    ) -> Result<R::Response> {
        let body = self.read_frame_body(R::KEY, limit).await?;
        decode_response::<R>(body, version, correlation_id).map_err(|message| {
            ClientError::Protocol {
                addr: self.addr.clone(),
                message,
            }
        })
    }

    async fn read_frame_body(&mut self, key: i16, limit: Duration) -> Result<Bytes> {
        match tokio::time::timeout(limit, read_frame(&mut self.stream)).await {
            Err(_) => Err(self.timeout(format!("{} response", api_name(key)), limit)),
            Ok(Err(FrameError::Io(source))) => Err(ClientError::Io {
                addr: self.addr.clone(),
                source,
            }),
            Ok(Err(FrameError::TooLarge(n))) => Err(ClientError::Protocol {
                addr: self.addr.clone(),
                message: format!("response frame of {n} bytes is too large or negative"),
            }),
            Ok(Ok(body)) => {
                self.desynced = false;
                Ok(body)
            }
        }
    }

    /// Takes the negotiated connection apart for [`crate::Pipeline`]: the stream, the
    /// address, the client id, the next correlation id and the broker's version ranges.
    pub(crate) fn into_parts(self) -> ConnParts {
        ConnParts {
            stream: self.stream,
            addr: self.addr,
            client_id: self.client_id,
            next_correlation_id: self.next_correlation_id,
            versions: self.versions,
            request_timeout: self.request_timeout,
        }
    }

    fn timeout(&self, what: String, limit: Duration) -> ClientError {
        ClientError::Timeout {
            addr: self.addr.clone(),
            what,
            millis: limit.as_millis(),
        }
    }
}

/// A negotiated connection's pieces (see [`Connection::into_parts`]).
pub(crate) struct ConnParts {
    pub(crate) stream: TcpStream,
    pub(crate) addr: String,
    pub(crate) client_id: String,
    pub(crate) next_correlation_id: i32,
    pub(crate) versions: HashMap<i16, (i16, i16)>,
    pub(crate) request_timeout: Duration,
}

pub(crate) enum FrameError {
    Io(std::io::Error),
    TooLarge(i64),
}

pub(crate) async fn read_frame<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> std::result::Result<Bytes, FrameError> {
    let mut len_buf = [0u8; 4];
    stream
        .read_exact(&mut len_buf)
        .await
        .map_err(FrameError::Io)?;
    let len = (&len_buf[..]).get_i32();
    let len_usize = usize::try_from(len).map_err(|_| FrameError::TooLarge(len.into()))?;
    if len_usize > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len.into()));
    }
    let mut body = vec![0u8; len_usize];
    stream.read_exact(&mut body).await.map_err(FrameError::Io)?;
    Ok(Bytes::from(body))
}

/// The highest version of `R` both we and a broker at `addr` advertising `theirs` support,
/// or UnsupportedApi naming both ranges.
pub(crate) fn version_for<R: Request>(addr: &str, theirs: Option<(i16, i16)>) -> Result<i16> {
    let ours = (R::VERSIONS.min, R::VERSIONS.max);
    negotiate(ours, theirs).ok_or_else(|| ClientError::UnsupportedApi {
        addr: addr.to_string(),
        api: api_name(R::KEY),
        ours: range_str(Some(ours)),
        theirs: range_str(theirs),
    })
}

pub(crate) fn range_str(r: Option<(i16, i16)>) -> String {
    match r {
        Some((a, b)) => format!("{a}..={b}"),
        None => "none".into(),
    }
}

/// Turns an I/O error into a short lowercase reason ("connection refused").
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::TimedOut => "connection timed out".into(),
        ErrorKind::AddrNotAvailable => "address not available".into(),
        _ => {
            let s = e.to_string();
            // Drop the " (os error N)" suffix for readability.
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s.to_lowercase(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    #[test]
    fn request_frame_has_length_prefix_and_header() {
        let req = MetadataRequest::default().with_topics(None);
        let frame = encode_request(&req, 12, 42, "test-client").unwrap();
        let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(len as usize, frame.len() - 4);
        let mut body = Bytes::copy_from_slice(&frame[4..]);
        // Metadata v12 uses request header v2 (flexible).
        let header = RequestHeader::decode(&mut body, 2).unwrap();
        assert_eq!(header.request_api_key, 3);
        assert_eq!(header.request_api_version, 12);
        assert_eq!(header.correlation_id, 42);
        assert_eq!(header.client_id.as_deref(), Some("test-client"));
        let decoded = MetadataRequest::decode(&mut body, 12).unwrap();
        assert_eq!(decoded.topics, None);
        assert!(!body.has_remaining());
    }

    #[test]
    fn response_correlation_is_checked() {
        let mut resp = MetadataResponse::default();
        resp.throttle_time_ms = 7;
        let mut buf = BytesMut::new();
        let mut header = ResponseHeader::default();
        header.correlation_id = 9;
        header.encode(&mut buf, 1).unwrap();
        resp.encode(&mut buf, 12).unwrap();
        let bytes = buf.freeze();
        let ok = decode_response::<MetadataRequest>(bytes.clone(), 12, 9).unwrap();
        assert_eq!(ok.throttle_time_ms, 7);
        let err = decode_response::<MetadataRequest>(bytes, 12, 10).unwrap_err();
        assert!(err.contains("correlation id mismatch"), "{err}");
    }

    #[test]
    fn api_versions_falls_back_to_v0_body() {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        let mut resp = ApiVersionsResponse::default();
        resp.error_code = 35;
        let mut av = ApiVersion::default();
        av.api_key = 18;
        av.min_version = 0;
        av.max_version = 2;
        resp.api_keys = vec![av];
        let mut buf = BytesMut::new();
        let mut header = ResponseHeader::default();
        header.correlation_id = 1;
        header.encode(&mut buf, 0).unwrap();
        resp.encode(&mut buf, 0).unwrap();
        let decoded = decode_api_versions(buf.freeze(), 4, 1).unwrap();
        assert_eq!(decoded.error_code, 35);
        assert_eq!(decoded.api_keys.len(), 1);
        assert_eq!(decoded.api_keys[0].max_version, 2);

        // A normal v3 answer decodes as v3.
        let mut resp = ApiVersionsResponse::default();
        resp.api_keys = vec![ApiVersion::default().with_api_key(3).with_max_version(12)];
        resp.finalized_features_epoch = 7;
        let mut buf = BytesMut::new();
        header.encode(&mut buf, 0).unwrap();
        resp.encode(&mut buf, 3).unwrap();
        let decoded = decode_api_versions(buf.freeze(), 3, 1).unwrap();
        assert_eq!(decoded.error_code, 0);
        assert_eq!(decoded.api_keys[0].max_version, 12);
        assert_eq!(decoded.finalized_features_epoch, 7);
    }

    #[test]
    fn negotiation_picks_highest_common() {
        assert_eq!(negotiate((0, 13), Some((0, 12))), Some(12));
        assert_eq!(negotiate((4, 18), Some((0, 17))), Some(17));
        assert_eq!(negotiate((0, 5), Some((0, 9))), Some(5));
        assert_eq!(negotiate((3, 5), Some((0, 2))), None);
        assert_eq!(negotiate((3, 5), None), None);
    }

    #[test]
    fn api_names_are_readable() {
        assert_eq!(api_name(3), "Metadata");
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(-5), "api key -5");
    }

    /// A broker that answers ApiVersions (advertising Metadata) and then never answers.
    async fn silent_broker() -> String {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut len = [0u8; 4];
            sock.read_exact(&mut len).await.unwrap();
            let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
            sock.read_exact(&mut body).await.unwrap();
            let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            let mut out = BytesMut::new();
            out.put_i32(0);
            let mut header = ResponseHeader::default();
            header.correlation_id = correlation_id;
            header.encode(&mut out, 0).unwrap();
            let mut resp = ApiVersionsResponse::default();
            resp.api_keys = vec![ApiVersion::default()
                .with_api_key(3)
                .with_min_version(0)
                .with_max_version(12)];
            resp.encode(&mut out, 0).unwrap();
            let n = (out.len() - 4) as i32;
            out[0..4].copy_from_slice(&n.to_be_bytes());
            // The client asked at its highest version; its fallback decoder reads this v0
            // body. Then swallow requests without ever answering.
            sock.write_all(&out).await.unwrap();
            let mut sink = vec![0u8; 4096];
            while let Ok(n) = sock.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn abandoned_request_marks_the_connection_desynced() {
        let addr = silent_broker().await;
        let mut conn =
            Connection::connect(&addr, "t", Duration::from_secs(2), Duration::from_secs(5))
                .await
                .unwrap();
        assert!(!conn.is_desynced());
        let req = MetadataRequest::default().with_topics(None);
        let abandoned =
            tokio::time::timeout(Duration::from_millis(100), conn.send_versioned(&req, 0)).await;
        assert!(abandoned.is_err(), "the silent broker answered");
        assert!(conn.is_desynced());
    }

    #[tokio::test]
    async fn connect_refused_is_reported() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let err = Connection::connect(&addr, "t", Duration::from_secs(2), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
    }
}
