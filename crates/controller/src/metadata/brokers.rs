//! Broker lifecycle in the state machine: cluster id, registration with broker epochs,
//! fencing, unfencing, controlled shutdown, the leader elections they cause, and producer
//! id blocks.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{
    BrokerInfo, BrokerRegistration, Metadata, PartitionInfo, ProducerIdBlock,
    PRODUCER_ID_BLOCK_SIZE,
};
use crate::error::ControllerError;

/// No leader (an offline partition).
pub const NO_LEADER: i32 = -1;

pub(super) fn eligible(brokers: &BTreeMap<i32, BrokerInfo>, id: i32) -> bool {
    brokers.get(&id).is_some_and(BrokerInfo::is_eligible)
}

/// Picks a leader for `p`: the first replica (in replica order) that is in the ISR and
/// eligible; with unclean election allowed and none such, the first eligible replica.
/// Returns the leader and whether the choice was unclean.
pub(super) fn elect(
    brokers: &BTreeMap<i32, BrokerInfo>,
    p: &PartitionInfo,
    unclean: bool,
) -> Option<(i32, bool)> {
    if let Some(r) = p
        .replicas
        .iter()
        .find(|r| p.isr.contains(r) && eligible(brokers, **r))
    {
        return Some((*r, false));
    }
    if unclean {
        if let Some(r) = p.replicas.iter().find(|r| eligible(brokers, **r)) {
            return Some((*r, true));
        }
    }
    None
}

/// Sets a leader on a partition: clean ones keep the ISR, an unclean one makes the ISR just
/// the new leader.
pub(super) fn set_leader(p: &mut PartitionInfo, leader: i32, unclean: bool) {
    p.leader = leader;
    if unclean {
        p.isr = vec![leader];
    }
}

/// For a partition being created: if its planned leader is not eligible (the plan raced a
/// fence), elect another one from the ISR or leave it offline.
pub(super) fn settle_new_partition(
    brokers: &BTreeMap<i32, BrokerInfo>,
    p: &mut PartitionInfo,
    unclean: bool,
) {
    if p.leader != NO_LEADER && eligible(brokers, p.leader) {
        return;
    }
    match elect(brokers, p, unclean) {
        Some((l, u)) => set_leader(p, l, u),
        None => p.leader = NO_LEADER,
    }
}

fn not_registered(node_id: i32) -> ControllerError {
    ControllerError::BrokerIdNotRegistered(format!("Broker {node_id} is not registered."))
}

fn stale_epoch(node_id: i32, given: i64, current: i64) -> ControllerError {
    ControllerError::StaleBrokerEpoch(format!(
        "Expected broker epoch {current} for broker {node_id}, but got broker epoch {given}."
    ))
}

impl Metadata {
    /// The broker `node_id` with epoch `broker_epoch`, or BROKER_ID_NOT_REGISTERED /
    /// STALE_BROKER_EPOCH.
    pub fn check_broker_epoch(
        &self,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<&BrokerInfo, ControllerError> {
        let b = self
            .brokers
            .get(&node_id)
            .ok_or_else(|| not_registered(node_id))?;
        if b.broker_epoch != broker_epoch {
            return Err(stale_epoch(node_id, broker_epoch, b.broker_epoch));
        }
        Ok(b)
    }

    /// Whether `node_id` leads at least one partition.
    pub fn leads_any(&self, node_id: i32) -> bool {
        self.topics
            .values()
            .any(|t| t.partitions.iter().any(|p| p.leader == node_id))
    }

    pub(super) fn init_cluster(&mut self, cluster_id: &str) -> Result<(), ControllerError> {
        if cluster_id.is_empty() {
            return Err(ControllerError::InvalidRequest(
                "The cluster id must not be empty.".into(),
            ));
        }
        if !self.cluster_id.is_empty() && self.cluster_id != cluster_id {
            return Err(ControllerError::InconsistentClusterId(format!(
                "The cluster id is already '{}', not '{cluster_id}'.",
                self.cluster_id
            )));
        }
        self.cluster_id = cluster_id.to_string();
        Ok(())
    }

    fn next_broker_epoch(&mut self) -> i64 {
        self.last_broker_epoch = self.last_broker_epoch.max(0).saturating_add(1);
        self.last_broker_epoch
    }

    pub(super) fn register_broker(
        &mut self,
        reg: &BrokerRegistration,
    ) -> Result<(), ControllerError> {
        if reg.node_id < 0 {
            return Err(ControllerError::InvalidRequest(format!(
                "Invalid broker id {}",
                reg.node_id
            )));
        }
        if !(0..=65535).contains(&reg.port) {
            return Err(ControllerError::InvalidRequest(format!(
                "Invalid port {} for broker {}",
                reg.port, reg.node_id
            )));
        }
        if let Some(b) = self.brokers.get_mut(&reg.node_id) {
            if b.incarnation_id == reg.incarnation_id {
                // The same process again (a retried request), or a legacy registration of a
                // legacy broker: update the endpoint only.
                b.host = reg.host.clone();
                b.port = reg.port;
                b.rack = reg.rack.clone();
                return Ok(());
            }
        }
        let legacy = reg.incarnation_id.is_nil();
        if !legacy && self.brokers.contains_key(&reg.node_id) {
            // A new incarnation: the old one is gone, so its leaderships move away first.
            self.fence_broker(reg.node_id)?;
        }
        let broker_epoch = self.next_broker_epoch();
        self.brokers.insert(
            reg.node_id,
            BrokerInfo {
                node_id: reg.node_id,
                host: reg.host.clone(),
                port: reg.port,
                rack: reg.rack.clone(),
                inter_broker: reg.inter_broker.clone(),
                incarnation_id: reg.incarnation_id,
                broker_epoch,
                // Single-node registrations of earlier versions were live at once.
                fenced: !legacy,
                in_controlled_shutdown: false,
            },
        );
        Ok(())
    }

    pub(super) fn unfence_broker(
        &mut self,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<(), ControllerError> {
        let b = self.check_broker_epoch(node_id, broker_epoch)?;
        if b.in_controlled_shutdown {
            return Err(ControllerError::InvalidRequest(format!(
                "Broker {node_id} is in controlled shutdown and cannot be unfenced."
            )));
        }
        if !b.fenced {
            return Ok(());
        }
        if let Some(b) = self.brokers.get_mut(&node_id) {
            b.fenced = false;
        }
        // Offline partitions that can take this broker as leader get it.
        let brokers = &self.brokers;
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_leader_election();
            for p in &mut topic.partitions {
                if p.leader != NO_LEADER || !p.replicas.contains(&node_id) {
                    continue;
                }
                if let Some((l, u)) = elect(brokers, p, unclean) {
                    set_leader(p, l, u);
                    p.leader_epoch = p.leader_epoch.saturating_add(1);
                    p.partition_epoch = p.partition_epoch.saturating_add(1);
                }
            }
        }
        Ok(())
    }

    pub(super) fn fence_broker(&mut self, node_id: i32) -> Result<(), ControllerError> {
        let b = self
            .brokers
            .get_mut(&node_id)
            .ok_or_else(|| not_registered(node_id))?;
        if b.fenced {
            return Ok(());
        }
        b.fenced = true;
        self.move_away(node_id);
        Ok(())
    }

    pub(super) fn begin_controlled_shutdown(
        &mut self,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<(), ControllerError> {
        let b = self.check_broker_epoch(node_id, broker_epoch)?;
        if b.in_controlled_shutdown {
            return Ok(());
        }
        if let Some(b) = self.brokers.get_mut(&node_id) {
            b.in_controlled_shutdown = true;
        }
        self.move_away(node_id);
        Ok(())
    }

    /// `node_id` just became ineligible: elect new leaders for the partitions it leads and
    /// drop it from every ISR that keeps another member (KIP-966 keeps the last one).
    fn move_away(&mut self, node_id: i32) {
        let brokers = &self.brokers;
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_leader_election();
            for p in &mut topic.partitions {
                let leads = p.leader == node_id;
                let in_isr = p.isr.contains(&node_id);
                if !leads && !in_isr {
                    continue;
                }
                let mut changed = false;
                if in_isr && p.isr.len() > 1 {
                    p.isr.retain(|r| *r != node_id);
                    changed = true;
                }
                if leads {
                    match elect(brokers, p, unclean) {
                        Some((l, u)) => set_leader(p, l, u),
                        None => p.leader = NO_LEADER,
                    }
                    p.leader_epoch = p.leader_epoch.saturating_add(1);
                    changed = true;
                }
                if changed {
                    p.partition_epoch = p.partition_epoch.saturating_add(1);
                }
            }
        }
    }

    pub(super) fn allocate_producer_ids(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<(), ControllerError> {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        let first = self.next_producer_id.max(0);
        let end = first
            .checked_add(i64::from(PRODUCER_ID_BLOCK_SIZE))
            .ok_or_else(|| ControllerError::UnknownServer("Exhausted all producerIds.".into()))?;
        self.next_producer_id = end;
        self.last_producer_id_block = Some(ProducerIdBlock {
            assigned_broker_id: broker_id,
            first_producer_id: first,
            size: PRODUCER_ID_BLOCK_SIZE,
        });
        Ok(())
    }
}

/// A fresh incarnation id for a broker process.
pub fn new_incarnation_id() -> Uuid {
    Uuid::new_v4()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{MetadataCommand, TopicInfo};
    use super::*;

    pub(crate) fn reg(id: i32, inc: u128) -> MetadataCommand {
        MetadataCommand::RegisterBroker(BrokerRegistration {
            node_id: id,
            incarnation_id: Uuid::from_u128(inc),
            host: "h".into(),
            port: 9000 + id,
            rack: None,
            inter_broker: None,
        })
    }

    fn up(md: &mut Metadata, id: i32, inc: u128) -> i64 {
        md.apply(&reg(id, inc)).unwrap();
        let epoch = md.brokers[&id].broker_epoch;
        md.apply(&MetadataCommand::UnfenceBroker {
            node_id: id,
            broker_epoch: epoch,
        })
        .unwrap();
        epoch
    }

    /// A topic with one partition per given (replicas, isr, leader).
    fn topic(md: &mut Metadata, name: &str, parts: &[(&[i32], &[i32], i32)], unclean: bool) {
        let partitions = parts
            .iter()
            .enumerate()
            .map(|(i, (r, isr, l))| PartitionInfo {
                index: i as i32,
                leader: *l,
                leader_epoch: 0,
                replicas: r.to_vec(),
                isr: isr.to_vec(),
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            })
            .collect();
        let mut configs = BTreeMap::new();
        if unclean {
            configs.insert("unclean.leader.election.enable".into(), "true".into());
        }
        md.apply(&MetadataCommand::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions,
            configs,
            internal: false,
        })
        .unwrap();
    }

    fn part<'a>(md: &'a Metadata, t: &str, i: usize) -> &'a PartitionInfo {
        let t: &TopicInfo = &md.topics[t];
        &t.partitions[i]
    }

    #[test]
    fn register_epochs_and_fencing_state() {
        let mut md = Metadata::new("c", 1);
        md.apply(&reg(1, 10)).unwrap();
        let b = &md.brokers[&1];
        assert!(b.fenced && !b.in_controlled_shutdown);
        assert_eq!(b.broker_epoch, 1);
        // Same incarnation: endpoint update only, same epoch.
        md.apply(&reg(1, 10)).unwrap();
        assert_eq!(md.brokers[&1].broker_epoch, 1);
        md.apply(&reg(2, 20)).unwrap();
        assert_eq!(md.brokers[&2].broker_epoch, 2);
        // New incarnation: a new, larger epoch; fenced again.
        md.apply(&MetadataCommand::UnfenceBroker {
            node_id: 1,
            broker_epoch: 1,
        })
        .unwrap();
        md.apply(&reg(1, 11)).unwrap();
        assert_eq!(md.brokers[&1].broker_epoch, 3);
        assert!(md.brokers[&1].fenced);
        assert_eq!(md.last_broker_epoch, 3);
        // Stale epochs and unknown brokers.
        let stale = MetadataCommand::UnfenceBroker {
            node_id: 1,
            broker_epoch: 1,
        };
        assert_eq!(md.apply(&stale).unwrap_err().error_code(), 77);
        let unknown = MetadataCommand::FenceBroker { node_id: 9 };
        assert_eq!(md.apply(&unknown).unwrap_err().error_code(), 102);
        let shut = MetadataCommand::BeginControlledShutdown {
            node_id: 2,
            broker_epoch: 7,
        };
        assert_eq!(md.apply(&shut).unwrap_err().error_code(), 77);
    }

    #[test]
    fn fence_moves_leadership_within_isr() {
        let mut md = Metadata::new("c", 1);
        for id in 1..=3 {
            up(&mut md, id, id as u128);
        }
        topic(
            &mut md,
            "t",
            &[
                (&[1, 2, 3], &[1, 2, 3], 1), // moves to 2
                (&[1, 2], &[1], 1),          // last ISR member: offline, keeps ISR
                (&[2, 1], &[2, 1], 2),       // follower 1 leaves the ISR
                (&[3, 2], &[3, 2], 3),       // untouched
            ],
            false,
        );
        md.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        let p0 = part(&md, "t", 0);
        assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2, 3]));
        assert_eq!((p0.leader_epoch, p0.partition_epoch), (1, 1));
        let p1 = part(&md, "t", 1);
        assert_eq!((p1.leader, p1.isr.clone()), (NO_LEADER, vec![1]));
        assert_eq!((p1.leader_epoch, p1.partition_epoch), (1, 1));
        let p2 = part(&md, "t", 2);
        assert_eq!((p2.leader, p2.isr.clone()), (2, vec![2]));
        assert_eq!((p2.leader_epoch, p2.partition_epoch), (0, 1));
        let p3 = part(&md, "t", 3);
        assert_eq!((p3.leader_epoch, p3.partition_epoch), (0, 0));
        // Fencing again changes nothing.
        let before = md.clone();
        md.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        assert_eq!(md, before);
        // Broker 2 is not in p1's ISR: unfencing something else leaves it offline...
        md.apply(&MetadataCommand::FenceBroker { node_id: 2 })
            .unwrap();
        let e2 = md.brokers[&2].broker_epoch;
        md.apply(&MetadataCommand::UnfenceBroker {
            node_id: 2,
            broker_epoch: e2,
        })
        .unwrap();
        assert_eq!(part(&md, "t", 1).leader, NO_LEADER);
        // ... and unfencing its last ISR member brings it back with a new epoch.
        let e1 = md.brokers[&1].broker_epoch;
        md.apply(&MetadataCommand::UnfenceBroker {
            node_id: 1,
            broker_epoch: e1,
        })
        .unwrap();
        let p1 = part(&md, "t", 1);
        assert_eq!((p1.leader, p1.leader_epoch, p1.partition_epoch), (1, 2, 2));
    }

    #[test]
    fn unclean_election_only_when_enabled() {
        let mut md = Metadata::new("c", 1);
        for id in 1..=2 {
            up(&mut md, id, id as u128);
        }
        topic(&mut md, "clean", &[(&[1, 2], &[1], 1)], false);
        topic(&mut md, "dirty", &[(&[1, 2], &[1], 1)], true);
        md.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        assert_eq!(part(&md, "clean", 0).leader, NO_LEADER);
        let d = part(&md, "dirty", 0);
        assert_eq!((d.leader, d.isr.clone(), d.leader_epoch), (2, vec![2], 1));
    }

    #[test]
    fn reregistration_moves_leadership_and_controlled_shutdown() {
        let mut md = Metadata::new("c", 1);
        for id in 1..=2 {
            up(&mut md, id, id as u128);
        }
        topic(
            &mut md,
            "t",
            &[(&[1, 2], &[1, 2], 1), (&[2, 1], &[2, 1], 2)],
            false,
        );
        // Broker 1 restarts with a new incarnation: fenced, leadership moved.
        md.apply(&reg(1, 100)).unwrap();
        assert_eq!(part(&md, "t", 0).leader, 2);
        assert_eq!(part(&md, "t", 0).isr, vec![2]);
        let e1 = md.brokers[&1].broker_epoch;
        md.apply(&MetadataCommand::UnfenceBroker {
            node_id: 1,
            broker_epoch: e1,
        })
        .unwrap();
        // Broker 2 shuts down: everything moves to 1 where 1 is in the ISR.
        md.apply(&MetadataCommand::AlterPartition {
            topic: super::super::TopicRef::Name("t".into()),
            partition: 0,
            leader_id: 2,
            broker_epoch: md.brokers[&2].broker_epoch,
            leader_epoch: 1,
            partition_epoch: 1,
            new_isr: vec![2, 1],
        })
        .unwrap();
        md.apply(&MetadataCommand::AlterPartition {
            topic: super::super::TopicRef::Name("t".into()),
            partition: 1,
            leader_id: 2,
            broker_epoch: -1,
            leader_epoch: 0,
            partition_epoch: 1,
            new_isr: vec![2, 1],
        })
        .unwrap();
        let e2 = md.brokers[&2].broker_epoch;
        md.apply(&MetadataCommand::BeginControlledShutdown {
            node_id: 2,
            broker_epoch: e2,
        })
        .unwrap();
        assert!(md.brokers[&2].in_controlled_shutdown && !md.brokers[&2].fenced);
        assert_eq!(part(&md, "t", 0).leader, 1);
        assert_eq!(part(&md, "t", 1).leader, 1);
        assert!(!md.leads_any(2));
        // A broker in controlled shutdown is not unfenced.
        md.apply(&MetadataCommand::FenceBroker { node_id: 2 })
            .unwrap();
        let unfence = MetadataCommand::UnfenceBroker {
            node_id: 2,
            broker_epoch: e2,
        };
        assert_eq!(md.apply(&unfence).unwrap_err().error_code(), 42);
        // New topics avoid it; re-registration clears the flag.
        md.apply(&reg(2, 200)).unwrap();
        assert!(!md.brokers[&2].in_controlled_shutdown);
    }

    #[test]
    fn create_topic_racing_a_fence_gets_an_eligible_leader() {
        let mut md = Metadata::new("c", 1);
        for id in 1..=2 {
            up(&mut md, id, id as u128);
        }
        md.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        topic(
            &mut md,
            "t",
            &[(&[1, 2], &[1, 2], 1), (&[1], &[1], 1)],
            false,
        );
        assert_eq!(part(&md, "t", 0).leader, 2);
        assert_eq!(part(&md, "t", 1).leader, NO_LEADER);
    }

    #[test]
    fn producer_id_blocks_and_cluster_id() {
        let mut md = Metadata::new("", 1);
        let e = up(&mut md, 1, 1);
        let alloc = MetadataCommand::AllocateProducerIds {
            broker_id: 1,
            broker_epoch: e,
        };
        md.apply(&alloc).unwrap();
        let b1 = md.last_producer_id_block().unwrap();
        assert_eq!((b1.first_producer_id, b1.size, b1.end()), (0, 1000, 1000));
        md.apply(&alloc).unwrap();
        let b2 = md.last_producer_id_block().unwrap();
        assert_eq!(b2.first_producer_id, 1000);
        assert_eq!(md.next_producer_id, 2000);
        let stale = MetadataCommand::AllocateProducerIds {
            broker_id: 1,
            broker_epoch: e + 1,
        };
        assert_eq!(md.apply(&stale).unwrap_err().error_code(), 77);
        md.next_producer_id = i64::MAX - 10;
        assert_eq!(md.apply(&alloc).unwrap_err().error_code(), -1);

        let init = |id: &str| MetadataCommand::InitCluster {
            cluster_id: id.into(),
        };
        assert_eq!(md.apply(&init("")).unwrap_err().error_code(), 42);
        md.apply(&init("abc")).unwrap();
        md.apply(&init("abc")).unwrap();
        assert_eq!(md.apply(&init("xyz")).unwrap_err().error_code(), 104);
        assert_eq!(md.cluster_id, "abc");
    }
}
