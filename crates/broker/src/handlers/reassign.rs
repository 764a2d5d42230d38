//! AlterPartitionReassignments (API 45, v0–1) and ListPartitionReassignments (API 46, v0), as
//! `kafka-reassign-partitions.sh` and `Admin.alterPartitionReassignments` send them.
//!
//! Alter is forwarded to the active controller (`forward.rs`), which plans against its
//! metadata (`sluice_controller::plan_reassignments`, per-partition errors) and commits one
//! `AlterPartitionReassignments` command. The new replicas then reach every broker as
//! metadata: an added replica opens the partition as a follower and catches up, the leader
//! adds it to the ISR, and that AlterPartition completes the reassignment in the controller,
//! after which removed replicas close and delete their copy (`reconcile.rs`). List is
//! answered from this broker's committed metadata.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use sluice_controller::{plan_reassignments, ControllerError, Reassignment};

use super::sb;
use crate::codes;
use crate::state::Broker;

pub async fn alter(
    broker: &Arc<Broker>,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let changes: Vec<Reassignment> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Reassignment {
                topic: t.name.to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect();
    // v0 has no AllowReplicationFactorChange: changes of the replica count are allowed.
    let allow_rf_change = version == 0 || req.allow_replication_factor_change;
    let _g = broker.admin_lock.lock().await;
    let results = super::replan::plan_and_commit(
        broker,
        "partition reassignment",
        |md| {
            let plan = plan_reassignments(md, &changes, allow_rf_change);
            (plan.results, plan.command)
        },
        |r: &mut (String, i32, Option<ControllerError>)| &mut r.2,
    )
    .await;
    let mut results = results.into_iter();
    let mut resp = AlterPartitionReassignmentsResponse::default();
    resp.allow_replication_factor_change = allow_rf_change;
    for t in &req.topics {
        let mut tr = ReassignableTopicResponse::default();
        tr.name = t.name.clone();
        for p in &t.partitions {
            let mut pr = ReassignablePartitionResponse::default();
            pr.partition_index = p.partition_index;
            if let Some((_, _, Some(e))) = results.next() {
                pr.error_code = codes::controller_error(&e);
                pr.error_message = Some(sb(e.to_string()));
            }
            tr.partitions.push(pr);
        }
        resp.responses.push(tr);
    }
    resp
}

pub fn list(
    broker: &Broker,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let md = broker.metadata();
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let ongoing = |p: &sluice_controller::PartitionInfo| {
        let mut o = OngoingPartitionReassignment::default();
        o.partition_index = p.index;
        o.replicas = ids(&p.replicas);
        o.adding_replicas = ids(&p.adding_replicas);
        o.removing_replicas = ids(&p.removing_replicas);
        o
    };
    let mut resp = ListPartitionReassignmentsResponse::default();
    match &req.topics {
        None => {
            for t in md.topics.values() {
                let parts: Vec<_> = t
                    .partitions
                    .iter()
                    .filter(|p| p.is_reassigning())
                    .map(ongoing)
                    .collect();
                if !parts.is_empty() {
                    let mut o = OngoingTopicReassignment::default();
                    o.name = TopicName(sb(t.name.clone()));
                    o.partitions = parts;
                    resp.topics.push(o);
                }
            }
        }
        Some(topics) => {
            // Kafka lists the named partitions that are being reassigned and skips the
            // others, unknown ones included.
            for t in topics {
                let Some(info) = md.topics.get(t.name.as_str()) else {
                    continue;
                };
                let parts: Vec<_> = t
                    .partition_indexes
                    .iter()
                    .filter_map(|i| {
                        usize::try_from(*i)
                            .ok()
                            .and_then(|i| info.partitions.get(i))
                    })
                    .filter(|p| p.is_reassigning())
                    .map(ongoing)
                    .collect();
                if !parts.is_empty() {
                    let mut o = OngoingTopicReassignment::default();
                    o.name = t.name.clone();
                    o.partitions = parts;
                    resp.topics.push(o);
                }
            }
        }
    }
    resp
}
