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
        // A reassignment completes once its target replicas are all in sync.
        super::reassign::complete_reassignment(brokers, p);
        p.partition_epoch = p.partition_epoch.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BrokerRegistration, MetadataCommand, PartitionInfo};
    use super::*;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn setup() -> (Metadata, Uuid) {
        let mut md = Metadata::new("c", 1);
        for id in 1..=4 {
            md.apply(&MetadataCommand::RegisterBroker(BrokerRegistration {
                node_id: id,
                incarnation_id: Uuid::from_u128(id as u128),
                host: "h".into(),
                port: 1,
                rack: None,
                inter_broker: None,
            }))
            .unwrap();
            let e = md.brokers[&id].broker_epoch;
            md.apply(&MetadataCommand::UnfenceBroker {
                node_id: id,
                broker_epoch: e,
            })
            .unwrap();
        }
        let id = Uuid::from_u128(77);
        md.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            id,
            partitions: vec![PartitionInfo {
                index: 0,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            }],
            configs: BTreeMap::new(),
            internal: false,
        })
        .unwrap();
        (md, id)
    }

    fn alter(topic: TopicRef, leader: i32, le: i32, pe: i32, isr: &[i32]) -> MetadataCommand {
        MetadataCommand::AlterPartition {
            topic,
            partition: 0,
            leader_id: leader,
            broker_epoch: -1,
            leader_epoch: le,
            partition_epoch: pe,
            new_isr: isr.to_vec(),
        }
    }

    #[test]
    fn alter_partition_shrinks_and_expands() {
        let (mut md, id) = setup();
        md.apply(&alter(TopicRef::Id(id), 1, 0, 0, &[1, 2]))
            .unwrap();
        let p = &md.topics["t"].partitions[0];
        assert_eq!(
            (p.isr.clone(), p.partition_epoch, p.leader_epoch),
            (vec![1, 2], 1, 0)
        );
        md.apply(&alter(TopicRef::Name("t".into()), 1, 0, 1, &[1, 2, 3]))
            .unwrap();
        assert_eq!(md.topics["t"].partitions[0].partition_epoch, 2);
    }

    #[test]
    fn alter_partition_errors() {
        let (mut md, id) = setup();
        let name = || TopicRef::Name("t".into());
        let before = md.clone();
        let code = |md: &mut Metadata, c: MetadataCommand| md.apply(&c).unwrap_err().error_code();
        assert_eq!(
            code(&mut md, alter(TopicRef::Name("x".into()), 1, 0, 0, &[1])),
            3
        );
        assert_eq!(
            code(
                &mut md,
                alter(TopicRef::Id(Uuid::from_u128(1)), 1, 0, 0, &[1])
            ),
            100
        );
        let mut bad_part = alter(TopicRef::Id(id), 1, 0, 0, &[1]);
        if let MetadataCommand::AlterPartition { partition, .. } = &mut bad_part {
            *partition = 5;
        }
        assert_eq!(code(&mut md, bad_part), 3);
        assert_eq!(code(&mut md, alter(name(), 1, 1, 0, &[1])), 41);
        assert_eq!(code(&mut md, alter(name(), 1, 0, 1, &[1])), 41);
        assert_eq!(code(&mut md, alter(name(), 2, 0, 0, &[2])), 42);
        assert_eq!(code(&mut md, alter(name(), 1, 0, 0, &[])), 42);
        assert_eq!(code(&mut md, alter(name(), 1, 0, 0, &[1, 1])), 42);
        assert_eq!(code(&mut md, alter(name(), 1, 0, 0, &[2, 3])), 42);
        assert_eq!(code(&mut md, alter(name(), 1, 0, 0, &[1, 4])), 42);
        assert_eq!(md, before);
        // Stale epochs after a change.
        md.apply(&alter(name(), 1, 0, 0, &[1, 2])).unwrap();
        assert_eq!(code(&mut md, alter(name(), 1, 0, 0, &[1])), 95);
        md.apply(&MetadataCommand::FenceBroker { node_id: 3 })
            .unwrap();
        assert_eq!(code(&mut md, alter(name(), 1, 0, 1, &[1, 2, 3])), 107);
        // A leader change fences the old leader epoch.
        md.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        let p = md.topics["t"].partitions[0].clone();
        assert_eq!(p.leader, 2);
        assert_eq!(
            code(&mut md, alter(name(), 2, 0, p.partition_epoch, &[2])),
            74
        );
        // The broker epoch of the requester is checked when given.
        let mut stale = alter(name(), 2, p.leader_epoch, p.partition_epoch, &[2]);
        if let MetadataCommand::AlterPartition { broker_epoch, .. } = &mut stale {
            *broker_epoch = 999;
        }
        assert_eq!(code(&mut md, stale), 77);
    }
}
