//! DescribeQuorum (API 55, v0–v2), answered by any broker: the quorum leader's view of the
//! metadata log `__cluster_metadata`-0 (as Kafka's brokers forward it to the controller).
//! When no leader answers, the top-level error is REQUEST_TIMED_OUT, which is what a Kafka
//! broker answers when forwarding to an unavailable controller times out.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use sluice_controller::{QuorumStatus, ReplicaStatus};

use super::sb;
use crate::cluster::rpc::{ControllerRequest, ControllerResponse};
use crate::codes;
use crate::state::Broker;

/// The metadata log's topic name.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    broker: &Broker,
    req: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    if let Err(msg) = check_request(&req) {
        return top_level_error(codes::INVALID_REQUEST, msg, version);
    }
    match crate::cluster::call_controller(broker, &ControllerRequest::DescribeQuorum).await {
        Ok(ControllerResponse::Quorum(q)) => build(&req, &q, version),
        Ok(other) => top_level_error(
            codes::UNKNOWN_SERVER_ERROR,
            format!("unexpected controller answer {other:?}"),
            version,
        ),
        Err(e) => top_level_error(
            codes::REQUEST_TIMED_OUT,
            format!("the metadata quorum leader did not answer: {e}"),
            version,
        ),
    }
}

/// A well-formed request names exactly one topic with at least one partition.
fn check_request(req: &DescribeQuorumRequest) -> Result<(), String> {
    match req.topics.as_slice() {
        [t] if !t.partitions.is_empty() => Ok(()),
        [_] => Err("DescribeQuorum names no partition".into()),
        _ => Err(format!(
            "DescribeQuorum must name exactly one topic, not {}",
            req.topics.len()
        )),
    }
}

fn top_level_error(code: i16, msg: String, version: i16) -> DescribeQuorumResponse {
    let mut r = DescribeQuorumResponse::default();
    r.error_code = code;
    if version >= 2 {
        r.error_message = Some(sb(msg));
    }
    r
}

fn opt(v: Option<u64>) -> i64 {
    v.and_then(|x| i64::try_from(x).ok()).unwrap_or(-1)
}

fn replica_state(r: &ReplicaStatus, version: i16) -> ReplicaState {
    let mut s = ReplicaState::default();
    s.replica_id = BrokerId(r.node_id);
    s.log_end_offset = opt(r.log_end_offset);
    if version >= 1 {
        s.last_fetch_timestamp = opt(r.last_fetch_ms);
        s.last_caught_up_timestamp = opt(r.last_caught_up_ms);
    }
    s
}

/// `host:port` → (host, port); `None` when it does not parse.
fn split_endpoint(ep: &str) -> Option<(String, u16)> {
    let (h, p) = ep.rsplit_once(':')?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    Some((h.to_string(), p.parse().ok()?))
}

/// The response to `req` from quorum status `q` (pure; the version decides the shape).
pub fn build(
    req: &DescribeQuorumRequest,
    q: &QuorumStatus,
    version: i16,
) -> DescribeQuorumResponse {
    let mut resp = DescribeQuorumResponse::default();
    for t in &req.topics {
        let mut td = TopicData::default();
        td.topic_name = t.topic_name.clone();
        for p in &t.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = p.partition_index;
            if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                pd.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                pd.leader_id = BrokerId(-1);
                pd.leader_epoch = -1;
                pd.high_watermark = -1;
                if version >= 2 {
                    pd.error_message = Some(sb("only __cluster_metadata-0 has a quorum"));
                }
            } else {
                pd.leader_id = BrokerId(q.leader_id.unwrap_or(-1));
                pd.leader_epoch = i32::try_from(q.term).unwrap_or(i32::MAX);
                pd.high_watermark = i64::try_from(q.high_watermark).unwrap_or(i64::MAX);
                pd.current_voters = q
                    .replicas
                    .iter()
                    .filter(|r| r.voter)
                    .map(|r| replica_state(r, version))
                    .collect();
                pd.observers = q
                    .replicas
                    .iter()
                    .filter(|r| !r.voter)
                    .map(|r| replica_state(r, version))
                    .collect();
            }
            td.partitions.push(pd);
        }
        resp.topics.push(td);
    }
    if version >= 2 {
        resp.nodes = q
            .replicas
            .iter()
            .map(|r| {
                let mut n = Node::default();
                n.node_id = BrokerId(r.node_id);
                if let Some((host, port)) = split_endpoint(&r.endpoint) {
                    let mut l = Listener::default();
                    l.name = sb("CONTROLLER");
                    l.host = sb(host);
                    l.port = port;
                    n.listeners.push(l);
                }
                n
            })
            .collect();
    }
    resp
}

/// A DescribeQuorum request for `__cluster_metadata`-0.
#[cfg(test)]
pub fn metadata_quorum_request() -> DescribeQuorumRequest {
    use kafka_protocol::messages::describe_quorum_request as rq;
    use kafka_protocol::messages::TopicName;
    let mut p = rq::PartitionData::default();
    p.partition_index = 0;
    let mut t = rq::TopicData::default();
    t.topic_name = TopicName(sb(METADATA_TOPIC));
    t.partitions.push(p);
    let mut r = DescribeQuorumRequest::default();
    r.topics.push(t);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn status() -> QuorumStatus {
        let r = |id: i32, leo: Option<u64>, voter: bool| ReplicaStatus {
            node_id: id,
            endpoint: format!("127.0.0.1:{id}9093"),
            log_end_offset: leo,
            last_fetch_ms: leo.map(|_| 1_700_000_000_000),
            last_caught_up_ms: None,
            voter,
        };
        QuorumStatus {
            node_id: 1,
            leader_id: Some(2),
            term: 7,
            high_watermark: 42,
            replicas: vec![
                r(1, Some(42), true),
                r(2, Some(42), true),
                r(3, None, true),
                r(4, Some(40), false),
            ],
        }
    }

    fn roundtrip(resp: &DescribeQuorumResponse, version: i16) -> DescribeQuorumResponse {
        let mut buf = BytesMut::new();
        resp.encode(&mut buf, version).expect("encodes");
        DescribeQuorumResponse::decode(&mut buf.freeze(), version).expect("decodes")
    }

    #[test]
    fn shapes_per_version() {
        let req = metadata_quorum_request();
        for v in 0..=2 {
            let resp = roundtrip(&build(&req, &status(), v), v);
            assert_eq!(resp.error_code, 0);
            let p = &resp.topics[0].partitions[0];
            assert_eq!(p.error_code, 0);
            assert_eq!(p.leader_id.0, 2);
            assert_eq!(p.leader_epoch, 7);
            assert_eq!(p.high_watermark, 42);
            let ids: Vec<i32> = p.current_voters.iter().map(|r| r.replica_id.0).collect();
            assert_eq!(ids, vec![1, 2, 3]);
            assert_eq!(p.current_voters[2].log_end_offset, -1);
            assert_eq!(p.observers.len(), 1);
            if v >= 1 {
                assert_eq!(p.current_voters[0].last_fetch_timestamp, 1_700_000_000_000);
                assert_eq!(p.current_voters[0].last_caught_up_timestamp, -1);
            }
            if v >= 2 {
                assert_eq!(resp.nodes.len(), 4);
                assert_eq!(resp.nodes[2].listeners[0].name.as_str(), "CONTROLLER");
                assert_eq!(resp.nodes[2].listeners[0].host.as_str(), "127.0.0.1");
                assert_eq!(resp.nodes[2].listeners[0].port, 39093);
            } else {
                assert!(resp.nodes.is_empty());
            }
        }
    }

    #[test]
    fn other_partitions_are_unknown() {
        let mut req = metadata_quorum_request();
        req.topics[0].partitions[0].partition_index = 1;
        let resp = build(&req, &status(), 0);
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
        roundtrip(&resp, 0);
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(check_request(&DescribeQuorumRequest::default()).is_err());
        let mut req = metadata_quorum_request();
        req.topics[0].partitions.clear();
        assert!(check_request(&req).is_err());
        assert!(check_request(&metadata_quorum_request()).is_ok());
        for v in 0..=2 {
            let r = roundtrip(&top_level_error(codes::INVALID_REQUEST, "x".into(), v), v);
            assert_eq!(r.error_code, codes::INVALID_REQUEST);
        }
    }
}
