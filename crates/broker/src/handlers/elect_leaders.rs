//! ElectLeaders (API 43, v0–2; KIP-183 preferred and KIP-460 unclean elections), as
//! `kafka-leader-election.sh` and `Admin.electLeaders` send it. Like the other metadata
//! changes it is forwarded to the active controller (`forward.rs`), whose handler plans the
//! election against its metadata (`sluice_controller::plan_elect_leaders`) and commits one
//! `ElectLeaders` command. The leader changes then reach every broker as ordinary metadata
//! (leader and leader epoch), which the reconciler applies.

use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use sluice_controller::{plan_elect_leaders, ElectionType, PartitionElection};

use super::sb;
use crate::codes;
use crate::state::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    // v0 has no election type: it is always a preferred election.
    let kind = if version == 0 {
        Some(ElectionType::Preferred)
    } else {
        ElectionType::from_wire(req.election_type)
    };
    let asked: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect()
    });
    let Some(kind) = kind else {
        let msg = format!("Unknown election type {}", req.election_type);
        return error_response(&req, codes::INVALID_REQUEST, &msg, version);
    };
    let _g = broker.admin_lock.lock().await;
    let results = super::replan::plan_and_commit(
        broker,
        "leader election",
        |md| {
            let plan = plan_elect_leaders(md, kind, asked.as_deref());
            (plan.results, plan.command)
        },
        |r: &mut PartitionElection| &mut r.error,
    )
    .await;
    let mut resp = ElectLeadersResponse::default();
    resp.error_code = codes::NONE;
    resp.replica_election_results = group(&req, results);
    resp
}

fn partition_result(r: &PartitionElection) -> PartitionResult {
    let mut out = PartitionResult::default();
    out.partition_id = r.partition;
    match &r.error {
        Some(e) => {
            out.error_code = codes::controller_error(e);
            out.error_message = Some(sb(e.message()));
        }
        None => {
            out.error_code = codes::NONE;
            out.error_message = None;
        }
    }
    out
}

/// Groups the flat per-partition results as Kafka answers: one entry per topic of the
/// request, in request order; for an all-partitions request, one entry per topic.
fn group(req: &ElectLeadersRequest, results: Vec<PartitionElection>) -> Vec<ReplicaElectionResult> {
    let mut out: Vec<ReplicaElectionResult> = Vec::new();
    match &req.topic_partitions {
        Some(tps) => {
            let mut it = results.iter();
            for t in tps {
                let mut entry = ReplicaElectionResult::default();
                entry.topic = t.topic.clone();
                for _ in &t.partitions {
                    if let Some(r) = it.next() {
                        entry.partition_result.push(partition_result(r));
                    }
                }
                out.push(entry);
            }
        }
        None => {
            for r in &results {
                if out.last().map(|e| e.topic.as_str()) != Some(r.topic.as_str()) {
                    let mut entry = ReplicaElectionResult::default();
                    entry.topic = TopicName(sb(r.topic.clone()));
                    out.push(entry);
                }
                if let Some(e) = out.last_mut() {
                    e.partition_result.push(partition_result(r));
                }
            }
        }
    }
    out
}

/// Every asked partition answered with `code` (and the top-level code from v1), as Kafka's
/// `ElectLeadersRequest.getErrorResponse`.
fn error_response(
    req: &ElectLeadersRequest,
    code: i16,
    msg: &str,
    version: i16,
) -> ElectLeadersResponse {
    let mut resp = ElectLeadersResponse::default();
    if version >= 1 {
        resp.error_code = code;
    }
    if let Some(tps) = &req.topic_partitions {
        for t in tps {
            let mut entry = ReplicaElectionResult::default();
            entry.topic = t.topic.clone();
            for p in &t.partitions {
                let mut r = PartitionResult::default();
                r.partition_id = *p;
                r.error_code = code;
                r.error_message = Some(sb(msg));
                entry.partition_result.push(r);
            }
            resp.replica_election_results.push(entry);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;

    use super::*;
    use sluice_controller::ControllerError;

    fn req(tps: Option<Vec<(&str, Vec<i32>)>>) -> ElectLeadersRequest {
        let mut r = ElectLeadersRequest::default();
        r.topic_partitions = tps.map(|v| {
            v.into_iter()
                .map(|(t, ps)| {
                    let mut tp = TopicPartitions::default();
                    tp.topic = TopicName(sb(t));
                    tp.partitions = ps;
                    tp
                })
                .collect()
        });
        r
    }

    fn res(topic: &str, partition: i32, error: Option<ControllerError>) -> PartitionElection {
        PartitionElection {
            topic: topic.into(),
            partition,
            error,
        }
    }

    #[test]
    fn results_follow_the_request_topics() {
        let r = req(Some(vec![("a", vec![0, 1]), ("b", vec![]), ("a", vec![2])]));
        let out = group(
            &r,
            vec![
                res("a", 0, None),
                res("a", 1, Some(ControllerError::ElectionNotNeeded("x".into()))),
                res("a", 2, Some(ControllerError::UnknownTopic("y".into()))),
            ],
        );
        let shape: Vec<(String, Vec<(i32, i16)>)> = out
            .iter()
            .map(|e| {
                (
                    e.topic.to_string(),
                    e.partition_result
                        .iter()
                        .map(|p| (p.partition_id, p.error_code))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a".to_string(), vec![(0, 0), (1, 84)]),
                ("b".to_string(), vec![]),
                ("a".to_string(), vec![(2, 3)]),
            ]
        );
        assert_eq!(out[0].partition_result[0].error_message, None);
        assert_eq!(
            out[0].partition_result[1]
                .error_message
                .as_ref()
                .map(|m| m.to_string()),
            Some("x".to_string())
        );
    }

    #[test]
    fn all_partitions_are_grouped_by_topic() {
        let out = group(
            &req(None),
            vec![res("a", 0, None), res("a", 3, None), res("b", 1, None)],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].partition_result.len(), 2);
        assert_eq!(out[1].topic.to_string(), "b");
    }

    #[test]
    fn error_response_names_every_partition() {
        let r = req(Some(vec![("a", vec![0, 1])]));
        let v0 = error_response(&r, codes::INVALID_REQUEST, "bad", 0);
        assert_eq!(v0.error_code, 0);
        let v1 = error_response(&r, codes::INVALID_REQUEST, "bad", 1);
        assert_eq!(v1.error_code, codes::INVALID_REQUEST);
        assert!(v1.replica_election_results[0]
            .partition_result
            .iter()
            .all(|p| p.error_code == codes::INVALID_REQUEST));
    }
}
