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

fn eligible(brokers: &BTreeMap<i32, BrokerInfo>, id: i32) -> bool {
    brokers.get(&id).is_some_and(BrokerInfo::is_eligible)
}

/// Picks a leader for `p`: the first replica (in replica order) that is in the ISR and
/// eligible; with unclean election allowed and none such, the first eligible replica.
/// Returns the leader and whether the choice was unclean.
fn elect(
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
fn set_leader(p: &mut PartitionInfo, leader: i32, unclean: bool) {
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
