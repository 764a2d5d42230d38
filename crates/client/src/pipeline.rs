//! A pipelined connection: many requests in flight on one TCP connection.
//!
//! [`Connection`](crate::Connection) sends a request and waits for its answer. A load generator
//! (`sluice bench`) needs several requests on the wire at once, as Kafka's producer does with
//! `max.in.flight.requests.per.connection`. A [`Pipeline`] owns the write half; a reader task
//! owns the read half and forwards every response frame, tagged with the pipeline's `tag`, to
//! one channel that may be shared by the pipelines to several brokers. Kafka answers the
//! requests of one connection in order, so the pipeline matches each frame to the oldest
//! request awaiting an answer and checks the correlation id.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::protocol::Request;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::conn::{api_name, encode_request, read_frame, FrameError};
use crate::error::{ClientError, Result};
use crate::Connection;

/// One response frame (without its length prefix) read by a pipeline's reader task, or the
/// error that ended the reader. `tag` names the pipeline.
#[derive(Debug)]
pub struct PipelineFrame {
    /// The tag given to [`Pipeline::connect`].
    pub tag: usize,
    /// The frame body, or why the connection can no longer be read.
    pub body: Result<Bytes>,
}

/// A request sent on a [`Pipeline`] whose answer has not been matched yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Correlation id of the request.
    pub correlation_id: i32,
    /// Version it was sent at (to decode the answer).
    pub version: i16,
}

/// A connection with several requests in flight (see the module docs).
#[derive(Debug)]
pub struct Pipeline {
    addr: String,
    client_id: String,
    versions: HashMap<i16, (i16, i16)>,
    writer: OwnedWriteHalf,
    next_correlation_id: i32,
    in_flight: VecDeque<InFlight>,
    reader: JoinHandle<()>,
    request_timeout: Duration,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Pipeline {
    /// Connects to `addr`, negotiates API versions, and starts the reader task, which sends
    /// every response frame to `frames` tagged with `tag`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        tag: usize,
        frames: UnboundedSender<PipelineFrame>,
    ) -> Result<Pipeline> {
        let conn = Connection::connect(addr, client_id, connect_timeout, request_timeout).await?;
        let parts = conn.into_parts();
        let (read, writer) = parts.stream.into_split();
        let reader_addr = parts.addr.clone();
        let reader = tokio::spawn(async move {
            let mut read = BufReader::with_capacity(256 * 1024, read);
            loop {
                let body = match read_frame(&mut read).await {
                    Ok(body) => Ok(body),
                    Err(FrameError::Io(source)) => Err(ClientError::Io {
                        addr: reader_addr.clone(),
                        source,
                    }),
                    Err(FrameError::TooLarge(n)) => Err(ClientError::Protocol {
                        addr: reader_addr.clone(),
                        message: format!("response frame of {n} bytes is too large or negative"),
                    }),
                };
                let failed = body.is_err();
                if frames.send(PipelineFrame { tag, body }).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Pipeline {
            addr: parts.addr,
            client_id: parts.client_id,
            versions: parts.versions,
            writer,
            next_correlation_id: parts.next_correlation_id,
            in_flight: VecDeque::new(),
            reader,
            request_timeout: parts.request_timeout,
        })
    }

    /// The broker address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's supported version range for `key`, if it advertises the API.
    pub fn broker_versions(&self, key: i16) -> Option<(i16, i16)> {
        self.versions.get(&key).copied()
    }

    /// The highest version of `R` both sides support.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        crate::conn::version_for::<R>(&self.addr, self.broker_versions(R::KEY))
    }

    /// Requests sent whose answers have not been matched yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Writes `req` at `version`. With `expect_response` the request joins the in-flight
    /// queue (a Produce with acks=0 gets no answer and does not).
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        expect_response: bool,
    ) -> Result<InFlight> {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let frame = encode_request(req, version, id, &self.client_id).map_err(|message| {
            ClientError::Protocol {
                addr: self.addr.clone(),
                message,
            }
        })?;
        let sent = InFlight {
            correlation_id: id,
            version,
        };
        if expect_response {
            self.in_flight.push_back(sent);
        }
        match tokio::time::timeout(self.request_timeout, self.writer.write_all(&frame)).await {
            Err(_) => Err(ClientError::Timeout {
                addr: self.addr.clone(),
                what: format!("sending {}", api_name(R::KEY)),
                millis: self.request_timeout.as_millis(),
            }),
            Ok(Err(source)) => Err(ClientError::Io {
                addr: self.addr.clone(),
                source,
            }),
            Ok(Ok(())) => Ok(sent),
        }
    }

    /// Matches a frame read by this pipeline's reader task to the oldest request in flight.
    /// Decode the body with [`crate::decode_response`] and the returned id and version.
    pub fn complete(&mut self, body: &Bytes) -> Result<InFlight> {
        let Some(next) = self.in_flight.pop_front() else {
            return Err(ClientError::Protocol {
                addr: self.addr.clone(),
                message: "a response arrived with no request in flight".into(),
            });
        };
        // Every response header starts with the correlation id.
        let got = body
            .get(0..4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if got != Some(next.correlation_id) {
            return Err(ClientError::Protocol {
                addr: self.addr.clone(),
                message: format!(
                    "correlation id mismatch: expected {}, got {got:?}",
                    next.correlation_id
                ),
            });
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{
        ApiVersionsResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    };
    use kafka_protocol::protocol::{Decodable, Encodable};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn read_one(sock: &mut tokio::net::TcpStream) -> (i16, RequestHeader) {
        let mut len = [0u8; 4];
        sock.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        sock.read_exact(&mut body).await.unwrap();
        let mut body = Bytes::from(body);
        let key = i16::from_be_bytes([body[0], body[1]]);
        let hv = if key == 18 { 2 } else { 1 };
        (key, RequestHeader::decode(&mut body, hv).unwrap())
    }

    /// A broker that answers ApiVersions, then reads `n` Metadata v1 requests before it
    /// answers any of them (so they must all be in flight at once), in order.
    async fn batching_broker(n: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (_, h) = read_one(&mut sock).await;
            let mut out = BytesMut::new();
            out.put_i32(0);
            let mut rh = ResponseHeader::default();
            rh.correlation_id = h.correlation_id;
            rh.encode(&mut out, 0).unwrap();
            let mut resp = ApiVersionsResponse::default();
            resp.api_keys = vec![
                ApiVersion::default().with_api_key(18).with_max_version(3),
                ApiVersion::default().with_api_key(3).with_max_version(1),
            ];
            resp.encode(&mut out, 3).unwrap();
            let len = (out.len() - 4) as i32;
            out[0..4].copy_from_slice(&len.to_be_bytes());
            sock.write_all(&out).await.unwrap();
            let mut ids = Vec::new();
            for _ in 0..n {
                ids.push(read_one(&mut sock).await.1.correlation_id);
            }
            for id in ids {
                let mut out = BytesMut::new();
                out.put_i32(0);
                let mut rh = ResponseHeader::default();
                rh.correlation_id = id;
                rh.encode(&mut out, 0).unwrap();
                let mut resp = MetadataResponse::default();
                resp.controller_id = kafka_protocol::messages::BrokerId(id);
                resp.encode(&mut out, 1).unwrap();
                let len = (out.len() - 4) as i32;
                out[0..4].copy_from_slice(&len.to_be_bytes());
                sock.write_all(&out).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn several_requests_in_flight_are_answered_in_order() {
        let addr = batching_broker(4).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut p = Pipeline::connect(
            &addr,
            "t",
            Duration::from_secs(2),
            Duration::from_secs(5),
            7,
            tx,
        )
        .await
        .unwrap();
        let v = p.version_for::<MetadataRequest>().unwrap();
        assert_eq!(v, 1);
        let mut sent = Vec::new();
        for _ in 0..4 {
            sent.push(p.send(&MetadataRequest::default(), v, true).await.unwrap());
        }
        assert_eq!(p.in_flight(), 4);
        for s in sent {
            let frame = rx.recv().await.unwrap();
            assert_eq!(frame.tag, 7);
            let body = frame.body.unwrap();
            let got = p.complete(&body).unwrap();
            assert_eq!(got, s);
            let resp =
                crate::decode_response::<MetadataRequest>(body, got.version, got.correlation_id)
                    .unwrap();
            assert_eq!(resp.controller_id.0, s.correlation_id);
        }
        assert_eq!(p.in_flight(), 0);
        assert!(p.complete(&Bytes::from_static(&[0, 0, 0, 1])).is_err());
    }
}
