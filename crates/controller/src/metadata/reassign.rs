//! Partition reassignment (Kafka's AlterPartitionReassignments, KIP-455, with KRaft's rules):
//! a partition moves from its replica set to a target set by first growing to the union
//! (the target first, then the replicas being removed), letting the added replicas catch up
//! and join the ISR, then shrinking to the target.
//!
//! - Start (or change): `adding = target − original`, `removing = original − target`,
//!   `replicas = target ++ removing`, where `original` is the replica set without the replicas
//!   an ongoing reassignment adds. A leader that is no longer a replica is replaced.
//! - Completion: as soon as every target replica is in the ISR (checked when a reassignment
//!   starts and on every AlterPartition), the replicas become the target, the ISR drops the
//!   removed replicas, and a leader that was removed is replaced by the first target replica
//!   in the ISR that is eligible (the completion waits while there is none).
//! - Cancel (a `None` target): back to the original replicas; the ISR drops the added ones.
//!
//! Every change bumps the partition epoch; a leader change bumps the leader epoch.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::brokers::{eligible, NO_LEADER};
use super::{unknown_topic, Metadata, MetadataCommand, PartitionInfo};
use crate::error::ControllerError;

/// One partition's reassignment change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The target replicas (the first is the preferred leader); `None` cancels the ongoing
    /// reassignment.
    pub target: Option<Vec<i32>>,
}

/// A planned AlterPartitionReassignments request: the result of every partition in request
/// order (`None` = accepted) and the command carrying the accepted ones (`None` when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentPlan {
    /// (topic, partition, error) per partition asked for.
    pub results: Vec<(String, i32, Option<ControllerError>)>,
    /// `AlterPartitionReassignments` with the accepted changes.
    pub command: Option<MetadataCommand>,
}

/// Plans AlterPartitionReassignments: checks every change against `md` (see
/// [`Metadata::check_reassignment`]); a partition named twice is INVALID_REQUEST for the
/// second mention. `allow_rf_change` is the request's `AllowReplicationFactorChange` (v1+,
/// KIP-860; true for v0).
pub fn plan_reassignments(
    md: &Metadata,
    changes: &[Reassignment],
    allow_rf_change: bool,
) -> ReassignmentPlan {
    let mut seen = BTreeSet::new();
    let mut results = Vec::with_capacity(changes.len());
    let mut accepted = Vec::new();
    for r in changes {
        let outcome = if !seen.insert((r.topic.clone(), r.partition)) {
            Err(ControllerError::InvalidRequest(format!(
                "Partition {}-{} is named more than once.",
                r.topic, r.partition
            )))
        } else {
            md.check_reassignment(r, allow_rf_change)
        };
        match outcome {
            Ok(()) => {
                accepted.push(r.clone());
                results.push((r.topic.clone(), r.partition, None));
            }
            Err(e) => results.push((r.topic.clone(), r.partition, Some(e))),
        }
    }
    let command = (!accepted.is_empty())
        .then_some(MetadataCommand::AlterPartitionReassignments { changes: accepted });
    ReassignmentPlan { results, command }
}

/// The replicas a partition had before its ongoing reassignment (all of them when none).
fn original_replicas(p: &PartitionInfo) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.adding_replicas.contains(r))
        .collect()
}

fn bad_assignment(msg: String) -> ControllerError {
    ControllerError::InvalidReplicaAssignment(msg)
}

/// The first replica of `order` that is in `isr` and eligible.
fn first_eligible(md_brokers: &super::BrokersById, order: &[i32], isr: &[i32]) -> Option<i32> {
    order
        .iter()
        .copied()
        .find(|r| isr.contains(r) && eligible(md_brokers, *r))
}

impl Metadata {
    fn partition_of(&self, topic: &str, partition: i32) -> Result<&PartitionInfo, ControllerError> {
        let t = self.topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .ok_or_else(|| unknown_topic(topic))
    }

    /// Whether `r` can be applied now: the partition exists; a target is non-empty, has no
    /// duplicates and names registered brokers only (INVALID_REPLICA_ASSIGNMENT), keeps the
    /// replica count unless `allow_rf_change` (INVALID_REPLICATION_FACTOR) and leaves an
    /// in-sync replica; a cancel needs a reassignment in progress
    /// (NO_REASSIGNMENT_IN_PROGRESS) and an original replica in the ISR.
    pub fn check_reassignment(
        &self,
        r: &Reassignment,
        allow_rf_change: bool,
    ) -> Result<(), ControllerError> {
        let p = self.partition_of(&r.topic, r.partition)?;
        let tp = format!("{}-{}", r.topic, r.partition);
        let original = original_replicas(p);
        match &r.target {
            None => {
                if !p.is_reassigning() {
                    return Err(ControllerError::NoReassignmentInProgress(format!(
                        "No reassignment is in progress for {tp}."
                    )));
                }
                if !p.isr.iter().any(|i| original.contains(i)) {
                    return Err(bad_assignment(format!(
                        "Cannot cancel the reassignment of {tp}: none of its original replicas {original:?} is in sync."
                    )));
                }
            }
            Some(target) => {
                if target.is_empty() {
                    return Err(bad_assignment(format!(
                        "The reassignment of {tp} names no replicas."
                    )));
                }
                let distinct: BTreeSet<i32> = target.iter().copied().collect();
                if distinct.len() != target.len() {
                    return Err(bad_assignment(format!(
                        "The reassignment of {tp} names a broker twice: {target:?}."
                    )));
                }
                if let Some(b) = target.iter().find(|b| !self.brokers.contains_key(b)) {
                    return Err(bad_assignment(format!(
                        "The reassignment of {tp} includes broker {b}, but no such broker is registered."
                    )));
                }
                if !allow_rf_change && target.len() != original.len() {
                    return Err(ControllerError::InvalidReplicationFactor(format!(
                        "The reassignment of {tp} changes its replication factor from {} to {}, and the request does not allow that.",
                        original.len(),
                        target.len()
                    )));
                }
                let merged: Vec<i32> = merge(target, &original);
                if !p.isr.iter().any(|i| merged.contains(i)) {
                    return Err(bad_assignment(format!(
                        "The reassignment of {tp} would leave it no in-sync replica."
                    )));
                }
            }
        }
        Ok(())
    }

    /// Applies `AlterPartitionReassignments`: all changes are checked first; on any error
    /// nothing changes.
    pub(super) fn reassign(&mut self, changes: &[Reassignment]) -> Result<(), ControllerError> {
        let mut seen = BTreeSet::new();
        for r in changes {
            if !seen.insert((&r.topic, r.partition)) {
                return Err(ControllerError::InvalidRequest(format!(
                    "Partition {}-{} is named more than once.",
                    r.topic, r.partition
                )));
            }
            self.check_reassignment(r, true)?;
        }
        for r in changes {
            let brokers = &self.brokers;
            let Some(p) = self.topics.get_mut(&r.topic).and_then(|t| {
                usize::try_from(r.partition)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
            }) else {
                continue;
            };
            let original = original_replicas(p);
            match &r.target {
                None => {
                    p.isr.retain(|i| !p.adding_replicas.contains(i));
                    p.replicas = original;
                    p.adding_replicas.clear();
                    p.removing_replicas.clear();
                }
                Some(target) => {
                    if !p.is_reassigning() && *target == p.replicas {
                        continue; // nothing to do
                    }
                    let merged = merge(target, &original);
                    p.adding_replicas = target
                        .iter()
                        .copied()
                        .filter(|r| !original.contains(r))
                        .collect();
                    p.removing_replicas = original
                        .iter()
                        .copied()
                        .filter(|r| !target.contains(r))
                        .collect();
                    p.isr.retain(|i| merged.contains(i));
                    p.replicas = merged;
                }
            }
            if p.leader != NO_LEADER && !p.replicas.contains(&p.leader) {
                p.leader = first_eligible(brokers, &p.replicas, &p.isr).unwrap_or(NO_LEADER);
                p.leader_epoch = p.leader_epoch.saturating_add(1);
            }
            complete_reassignment(brokers, p);
            p.partition_epoch = p.partition_epoch.saturating_add(1);
        }
        Ok(())
    }
}

/// The union of `target` and `original`: the target first, then the replicas it removes.
fn merge(target: &[i32], original: &[i32]) -> Vec<i32> {
    let mut merged = target.to_vec();
    merged.extend(original.iter().copied().filter(|r| !target.contains(r)));
    merged
}

/// Completes `p`'s reassignment when every target replica is in the ISR and a target replica
/// can lead; returns whether it did. Bumps the leader epoch on a leader change; the caller
/// bumps the partition epoch.
pub(super) fn complete_reassignment(brokers: &super::BrokersById, p: &mut PartitionInfo) -> bool {
    if !p.is_reassigning() {
        return false;
    }
    let target: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| !p.removing_replicas.contains(r))
        .collect();
    if !target.iter().all(|r| p.isr.contains(r)) {
        return false;
    }
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| target.contains(r))
        .collect();
    let leader = if target.contains(&p.leader) {
        p.leader
    } else {
        match first_eligible(brokers, &target, &isr) {
            Some(l) => l,
            None => return false,
        }
    };
    if leader != p.leader {
        p.leader = leader;
        p.leader_epoch = p.leader_epoch.saturating_add(1);
    }
    p.replicas = target;
    p.isr = isr;
    p.adding_replicas.clear();
    p.removing_replicas.clear();
    true
}

#[cfg(test)]
mod tests {
    use super::super::brokers::tests::reg;
    use super::super::{MetadataCommand, PartitionInfo};
    use super::*;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn setup(brokers: i32) -> Metadata {
        let mut md = Metadata::new("c", 1);
        for id in 1..=brokers {
            md.apply(&reg(id, id as u128)).unwrap();
            let e = md.brokers[&id].broker_epoch;
            md.apply(&MetadataCommand::UnfenceBroker {
                node_id: id,
                broker_epoch: e,
            })
            .unwrap();
        }
        md.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            id: Uuid::from_u128(9),
            partitions: vec![PartitionInfo {
                index: 0,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                partition_epoch: 0,
                adding_replicas: vec![],
                removing_replicas: vec![],
            }],
            configs: BTreeMap::new(),
            internal: false,
        })
        .unwrap();
        md
    }

    fn change(target: Option<&[i32]>) -> Reassignment {
        Reassignment {
            topic: "t".into(),
            partition: 0,
            target: target.map(<[i32]>::to_vec),
        }
    }

    fn apply(md: &mut Metadata, target: Option<&[i32]>) -> Result<(), ControllerError> {
        md.apply(&MetadataCommand::AlterPartitionReassignments {
            changes: vec![change(target)],
        })
    }

    fn part(md: &Metadata) -> PartitionInfo {
        md.topics["t"].partitions[0].clone()
    }

    fn isr(md: &mut Metadata, new_isr: &[i32]) -> Result<(), ControllerError> {
        let p = part(md);
        md.apply(&MetadataCommand::AlterPartition {
            topic: super::super::TopicRef::Name("t".into()),
            partition: 0,
            leader_id: p.leader,
            broker_epoch: -1,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: new_isr.to_vec(),
        })
    }

    #[test]
    fn move_a_replica_then_complete_when_in_sync() {
        let mut md = setup(4);
        apply(&mut md, Some(&[1, 2, 4])).unwrap();
        let p = part(&md);
        assert_eq!(p.replicas, vec![1, 2, 4, 3]);
        assert_eq!(p.adding_replicas, vec![4]);
        assert_eq!(p.removing_replicas, vec![3]);
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 1));
        // The leader adds 4 to the ISR: the reassignment completes in the same step.
        isr(&mut md, &[1, 2, 3, 4]).unwrap();
        let p = part(&md);
        assert_eq!(p.replicas, vec![1, 2, 4]);
        assert_eq!(p.isr, vec![1, 2, 4]);
        assert!(!p.is_reassigning());
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 2));
    }

    #[test]
    fn moving_the_leader_away_elects_a_target_replica_on_completion() {
        let mut md = setup(5);
        apply(&mut md, Some(&[4, 5, 2])).unwrap();
        let p = part(&md);
        assert_eq!(p.replicas, vec![4, 5, 2, 1, 3]);
        assert_eq!(
            p.leader, 1,
            "the leader stays until the new replicas are in sync"
        );
        isr(&mut md, &[1, 2, 3, 4]).unwrap();
        assert!(part(&md).is_reassigning(), "5 is not in sync yet");
        isr(&mut md, &[1, 2, 3, 4, 5]).unwrap();
        let p = part(&md);
        assert_eq!(p.replicas, vec![4, 5, 2]);
        assert_eq!(p.isr, vec![2, 4, 5]);
        assert_eq!((p.leader, p.leader_epoch), (4, 1));
    }

    #[test]
    fn shrinking_within_the_isr_completes_at_once() {
        let mut md = setup(3);
        apply(&mut md, Some(&[2, 3])).unwrap();
        let p = part(&md);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![2, 3], vec![2, 3])
        );
        assert_eq!((p.leader, p.leader_epoch), (2, 1));
        assert!(!p.is_reassigning());
    }

    #[test]
    fn same_replicas_is_a_no_op_and_cancel_reverts() {
        let mut md = setup(4);
        let before = md.clone();
        apply(&mut md, Some(&[1, 2, 3])).unwrap();
        assert_eq!(md, before);
        assert_eq!(apply(&mut md, None).unwrap_err().error_code(), 85);
        apply(&mut md, Some(&[4, 2, 3])).unwrap();
        // Change the target while in progress: 4 is no longer added, 1 stays.
        apply(&mut md, Some(&[1, 2, 4])).unwrap();
        let p = part(&md);
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![4], vec![3])
        );
        apply(&mut md, None).unwrap();
        let p = part(&md);
        assert_eq!(p.replicas, vec![1, 2, 3]);
        assert_eq!(p.isr, vec![1, 2, 3]);
        assert!(!p.is_reassigning());
        assert_eq!(p.leader, 1);
    }

    #[test]
    fn cancel_drops_added_replicas_from_the_isr() {
        let mut md = setup(5);
        apply(&mut md, Some(&[1, 4, 5])).unwrap();
        isr(&mut md, &[1, 2, 3, 4]).unwrap();
        assert_eq!(part(&md).isr, vec![1, 2, 3, 4]);
        apply(&mut md, None).unwrap();
        let p = part(&md);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![1, 2, 3], vec![1, 2, 3])
        );
    }

    #[test]
    fn bad_targets_are_refused_and_change_nothing() {
        let mut md = setup(4);
        let before = md.clone();
        let code = |md: &mut Metadata, t: &[i32]| apply(md, Some(t)).unwrap_err().error_code();
        assert_eq!(code(&mut md, &[]), 39);
        assert_eq!(code(&mut md, &[1, 1, 2]), 39);
        assert_eq!(code(&mut md, &[1, 2, 9]), 39);
        assert_eq!(code(&mut md, &[-1, 2, 3]), 39);
        let mut bad = change(Some(&[1, 2, 4]));
        bad.partition = 3;
        assert_eq!(
            md.apply(&MetadataCommand::AlterPartitionReassignments { changes: vec![bad] })
                .unwrap_err()
                .error_code(),
            3
        );
        assert_eq!(md, before);
        // All or nothing: a good change next to a bad one is not applied either.
        let err = md.apply(&MetadataCommand::AlterPartitionReassignments {
            changes: vec![change(Some(&[1, 2, 4])), change(Some(&[1, 2, 4]))],
        });
        assert_eq!(err.unwrap_err().error_code(), 42);
        assert_eq!(md, before);
    }

    #[test]
    fn plan_reports_per_partition_and_rf_change() {
        let md = setup(4);
        let mut other = change(Some(&[1, 2]));
        other.topic = "nope".into();
        let plan = plan_reassignments(
            &md,
            &[change(Some(&[1, 2])), other.clone(), change(None)],
            false,
        );
        let codes: Vec<i16> = plan
            .results
            .iter()
            .map(|(_, _, e)| e.as_ref().map_or(0, ControllerError::error_code))
            .collect();
        assert_eq!(codes, vec![38, 3, 42]);
        assert!(plan.command.is_none());
        let plan = plan_reassignments(&md, &[change(Some(&[1, 2]))], true);
        assert!(plan.results[0].2.is_none());
        assert!(plan.command.is_some());
    }

    #[test]
    fn moving_to_one_new_broker_hands_it_the_leadership() {
        let mut md = setup(4);
        apply(&mut md, Some(&[4])).unwrap();
        assert_eq!(part(&md).leader, 1);
        isr(&mut md, &[1, 2, 3, 4]).unwrap();
        let p = part(&md);
        assert!(!p.is_reassigning());
        assert_eq!((p.replicas.clone(), p.isr.clone()), (vec![4], vec![4]));
        assert_eq!((p.leader, p.leader_epoch), (4, 1));
    }
}
