//! Kafka's AlterPartition (KIP-497, with KIP-841's eligibility rule): a partition leader
//! changes the ISR.

use std::collections::BTreeSet;

use super::{unknown_topic, Metadata, TopicRef};
use crate::error::ControllerError;

impl Metadata {
    /// Validates and applies an AlterPartition, in Kafka's order of checks:
    /// unknown topic/partition; newer leader/partition epoch than ours (NOT_CONTROLLER);
    /// requester not the leader (INVALID_REQUEST); older leader epoch (FENCED_LEADER_EPOCH);
    /// older partition epoch (INVALID_UPDATE_VERSION); a malformed ISR (INVALID_REQUEST);
    /// a new ISR member that is unregistered, fenced or shutting down (INELIGIBLE_REPLICA).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn alter_partition(
        &mut self,
        topic: &TopicRef,
        partition: i32,
        leader_id: i32,
        broker_epoch: i64,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: &[i32],
    ) -> Result<(), ControllerError> {
        if broker_epoch != -1 {
            self.check_broker_epoch(leader_id, broker_epoch)?;
        }
        let name = match topic {
            TopicRef::Name(n) => n.clone(),
            TopicRef::Id(id) => self
                .topic_by_id(id)
                .map(|t| t.name.clone())
                .ok_or_else(|| {
                    ControllerError::UnknownTopicId(format!("Topic id {id} does not exist."))
                })?,
        };
        let brokers = &self.brokers;
        let t = self
            .topics
            .get_mut(&name)
            .ok_or_else(|| unknown_topic(&name))?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get_mut(i))
            .ok_or_else(|| unknown_topic(&name))?;
        let tp = format!("{name}-{partition}");
        if leader_epoch > p.leader_epoch || partition_epoch > p.partition_epoch {
            return Err(ControllerError::NotController(format!(
                "AlterPartition for {tp} carries leader epoch {leader_epoch} / partition epoch {partition_epoch}, newer than {} / {}.",
                p.leader_epoch, p.partition_epoch
            )));
        }
        if leader_id != p.leader {
            return Err(ControllerError::InvalidRequest(format!(
                "Broker {leader_id} is not the leader of {tp} (the leader is {}).",
                p.leader
            )));
        }
        if leader_epoch < p.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch(format!(
                "Leader epoch {leader_epoch} of {tp} is older than the current {}.",
                p.leader_epoch
            )));
        }
        if partition_epoch < p.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion(format!(
                "Partition epoch {partition_epoch} of {tp} is older than the current {}.",
                p.partition_epoch
            )));
        }
        let set: BTreeSet<i32> = new_isr.iter().copied().collect();
        if new_isr.is_empty()
            || set.len() != new_isr.len()
            || !new_isr.iter().all(|r| p.replicas.contains(r))
            || !set.contains(&p.leader)
        {
            return Err(ControllerError::InvalidRequest(format!(
                "The new ISR {new_isr:?} of {tp} must be distinct replicas including the leader {}.",
                p.leader
            )));
        }
        let ineligible: Vec<i32> = new_isr
            .iter()
            .copied()
            .filter(|r| !brokers.get(r).is_some_and(|b| b.is_eligible()))
            .collect();
        if !ineligible.is_empty() {
            return Err(ControllerError::IneligibleReplica(format!(
                "The new ISR {new_isr:?} of {tp} contains ineligible replicas {ineligible:?}."
            )));
        }
        p.isr = new_isr.to_vec();
        p.partition_epoch = p.partition_epoch.saturating_add(1);
        Ok(())
    }
}
