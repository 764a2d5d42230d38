//! Shared helpers of the broker's socket-level tests: an in-process broker on a free port
//! (`TestBroker`), a raw Kafka-protocol connection (`Conn`) and request builders.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_broker::{BrokerConfig, BrokerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

pub struct TestBroker {
    pub addr: String,
    pub _dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestBroker {
    /// A broker on a fresh temp dir and a free port.
    pub async fn start(settings: &[(&str, &str)]) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let mut b = TestBroker::launch(dir.path(), &addr, settings, None).await;
        b._dir = Some(dir);
        b
    }

    /// A broker on a given data dir and address (restart tests), optionally over a storage
    /// backend other than the file system (fault injection).
    pub async fn launch(
        data_dir: &std::path::Path,
        addr: &str,
        settings: &[(&str, &str)],
        backend: Option<std::sync::Arc<dyn sluice_storage::Backend>>,
    ) -> TestBroker {
        TestBroker::launch_node(data_dir, addr, settings, backend, 1, Default::default()).await
    }

    /// A cluster node: `node_id` with its place in the cluster.
    pub async fn launch_node(
        data_dir: &std::path::Path,
        addr: &str,
        settings: &[(&str, &str)],
        backend: Option<std::sync::Arc<dyn sluice_storage::Backend>>,
        node_id: i32,
        cluster: sluice_broker::ClusterConfig,
    ) -> TestBroker {
        let map: BTreeMap<String, String> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (settings, _) = BrokerSettings::from_map(&map).unwrap();
        let config = BrokerConfig {
            listen: addr.to_string(),
            advertised: None,
            data_dir: data_dir.to_path_buf(),
            node_id,
            http: None,
            settings,
            cluster,
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(async move {
            match backend {
                Some(be) => sluice_broker::run_with_backend(config, be, shutdown).await,
                None => sluice_broker::run(config, shutdown).await,
            }
            .unwrap();
        });
        // A cluster node binds once its quorum has formed and it is unfenced.
        for _ in 0..1000 {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        TestBroker {
            addr: addr.to_string(),
            _dir: None,
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("broker stops within 15s")
            .unwrap();
    }
}

pub struct Conn {
    pub s: TcpStream,
    pub next: i32,
}

impl Conn {
    pub async fn open(addr: &str) -> Conn {
        Conn {
            s: TcpStream::connect(addr).await.unwrap(),
            next: 1,
        }
    }

    /// A connection from a given local IP (any 127.0.0.0/8 address reaches a loopback
    /// listener), so that tests can open connections from several "clients".
    pub async fn open_from(addr: &str, local_ip: &str) -> Conn {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{local_ip}:0").parse().unwrap()).unwrap();
        Conn {
            s: sock.connect(addr.parse().unwrap()).await.unwrap(),
            next: 1,
        }
    }

    /// A connection from `local_ip` whose first request (ApiVersions) was answered: retries
    /// (bounded by 15 s) while the broker refuses it, e.g. until a freed slot is released.
    pub async fn open_answered(addr: &str, local_ip: &str) -> Conn {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut c = Conn::open_from(addr, local_ip).await;
            if c.try_send(3, &ApiVersionsRequest::default())
                .await
                .is_some()
            {
                return c;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no connection from {local_ip} to {addr} was served within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn send<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        self.try_send(version, req).await.expect("response")
    }

    /// Sends `req` and reads its answer; None when the broker closed the connection instead
    /// (or did not answer within 10 s).
    pub async fn try_send<R: Request>(&mut self, version: i16, req: &R) -> Option<R::Response> {
        let cid = self.next;
        self.next += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(cid)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")))
            .encode(&mut buf, R::header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.s.write_all(&buf).await.ok()?;
        let mut frame = self.read_frame().await?;
        let hdr = ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
        assert_eq!(hdr.correlation_id, cid);
        Some(R::Response::decode(&mut frame, version).unwrap())
    }

    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), self.s.read_exact(&mut len))
            .await
            .ok()?
            .ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    /// True when the broker closed the connection.
    pub async fn closed(&mut self) -> bool {
        self.closed_within(Duration::from_secs(5)).await
    }

    /// True when the broker closes the connection within `limit`.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(limit, self.s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

pub fn batch(records: &[(&str, &str)], compression: Compression, pid: i64, seq: i32) -> Bytes {
    let now = 1_700_000_000_000i64;
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: if pid >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes, so keep it constant.
            sequence: seq + i as i32,
            timestamp: now + i as i64,
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

pub async fn create_topic(c: &mut Conn, name: &str, partitions: i32) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(5000);
    let resp = c.send(7, &req).await;
    resp.topics[0].error_code
}

pub async fn produce(c: &mut Conn, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records)),
            ])]);
    let resp = c.send(9, &req).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub async fn fetch(
    c: &mut Conn,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait: i32,
) -> (i16, i64, Bytes) {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c.send(12, &req).await;
    let p = &resp.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        p.records.clone().unwrap_or_default(),
    )
}

pub fn values(mut data: Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    while data.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut data).unwrap();
        for r in set.records {
            out.push((
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    out
}
