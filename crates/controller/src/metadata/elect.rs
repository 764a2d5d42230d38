//! Leader elections asked for by users (Kafka's ElectLeaders, KIP-460) and the active
//! controller's automatic preferred-leader rebalance (`auto.leader.rebalance.enable`).
//!
//! The decision for one partition ([`Metadata::election_outcome`]) is shared by the planner,
//! `apply` and the rebalance planner, so a command planned against a state elects exactly
//! the leaders the plan reported. `apply` of [`MetadataCommand::ElectLeaders`] is all or
//! nothing: if any named partition cannot be elected any more (the state moved between
//! planning and commit), nothing changes and the error of that partition is returned; the
//! caller plans again.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::brokers::{elect, eligible, set_leader, NO_LEADER};
use super::{Metadata, MetadataCommand, PartitionInfo};
use crate::error::ControllerError;

/// Kafka's election types (the `ElectionType` field of ElectLeaders v1+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// PREFERRED (0): make the first replica the leader if it is in the ISR and eligible.
    Preferred,
    /// UNCLEAN (1): give a leaderless partition any live replica, even outside the ISR.
    Unclean,
}

impl ElectionType {
    /// From the wire value; `None` for an unknown one.
    pub fn from_wire(v: i8) -> Option<ElectionType> {
        match v {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }

    /// The wire value.
    pub fn wire(self) -> i8 {
        match self {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        }
    }
}

/// The result of one partition in an election plan: `error` is `None` when the partition
/// is elected by the plan's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionElection {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Why this partition is not elected, as Kafka reports it.
    pub error: Option<ControllerError>,
}

/// A planned ElectLeaders request: per-partition results in request order (topics grouped
/// as given) and the command electing the successful ones (`None` when none is elected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionPlan {
    /// One entry per partition asked for (when all partitions were asked for, only the
    /// partitions that needed an election, as Kafka answers).
    pub results: Vec<PartitionElection>,
    /// `ElectLeaders` naming exactly the partitions whose `error` is `None`.
    pub command: Option<MetadataCommand>,
}

fn unknown_partition(topic: &str, partition: i32) -> ControllerError {
    ControllerError::UnknownTopic(format!("No such partition as {topic}-{partition}"))
}

fn not_needed() -> ControllerError {
    ControllerError::ElectionNotNeeded("Leader election not needed for topic partition.".into())
}

/// The leader an election of `kind` would give `p`, and whether the choice is unclean
/// (the ISR then becomes just the new leader). Kafka's rules
/// (`ReplicationControlManager.electLeader` and `PartitionChangeBuilder`):
/// - PREFERRED: ELECTION_NOT_NEEDED when the first replica leads; the first replica when it
///   is in the ISR and eligible; otherwise PREFERRED_LEADER_NOT_AVAILABLE, except that a
///   leaderless partition takes another eligible ISR member, as Kafka's builder does.
/// - UNCLEAN: ELECTION_NOT_NEEDED when the partition has a leader; an eligible ISR member
///   first, else any eligible replica; ELIGIBLE_LEADERS_NOT_AVAILABLE when there is none.
fn decide(
    md: &Metadata,
    p: &PartitionInfo,
    kind: ElectionType,
) -> Result<(i32, bool), ControllerError> {
    match kind {
        ElectionType::Preferred => {
            let preferred = p.replicas.first().copied().unwrap_or(NO_LEADER);
            if p.leader != NO_LEADER && p.leader == preferred {
                return Err(not_needed());
            }
            let unavailable = || {
                ControllerError::PreferredLeaderNotAvailable(
                    "The preferred leader was not available.".into(),
                )
            };
            if preferred != NO_LEADER
                && p.isr.contains(&preferred)
                && eligible(&md.brokers, preferred)
            {
                return Ok((preferred, false));
            }
            if p.leader != NO_LEADER {
                return Err(unavailable());
            }
            match elect(&md.brokers, p, false) {
                Some((l, _)) => Ok((l, false)),
                None => Err(unavailable()),
            }
        }
        ElectionType::Unclean => {
            if p.leader != NO_LEADER {
                return Err(not_needed());
            }
            elect(&md.brokers, p, true).ok_or_else(|| {
                ControllerError::EligibleLeadersNotAvailable(
                    "Eligible topic partition leaders are not available.".into(),
                )
            })
        }
    }
}

impl Metadata {
    /// What an election of `kind` for `topic`-`partition` would do now: the new leader, or
    /// the Kafka error of that partition (UNKNOWN_TOPIC_OR_PARTITION, ELECTION_NOT_NEEDED,
    /// PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE).
    pub fn election_outcome(
        &self,
        topic: &str,
        partition: i32,
        kind: ElectionType,
    ) -> Result<i32, ControllerError> {
        self.partition_election(topic, partition, kind)
            .map(|(l, _)| l)
    }

    fn partition_election(
        &self,
        topic: &str,
        partition: i32,
        kind: ElectionType,
    ) -> Result<(i32, bool), ControllerError> {
        let t = self
            .topics
            .get(topic)
            .ok_or_else(|| ControllerError::UnknownTopic(format!("No such topic as {topic}")))?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .ok_or_else(|| unknown_partition(topic, partition))?;
        decide(self, p, kind)
    }

    /// Applies `ElectLeaders`: every named partition must be electable (checked against the
    /// state before any change), then each gets its new leader and both epochs are bumped.
    pub(super) fn elect_leaders(
        &mut self,
        kind: ElectionType,
        partitions: &[(String, i32)],
    ) -> Result<(), ControllerError> {
        if partitions.is_empty() {
            return Err(ControllerError::InvalidRequest(
                "An election must name at least one partition.".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut planned = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            if !seen.insert((topic.as_str(), *partition)) {
                return Err(ControllerError::InvalidRequest(format!(
                    "Partition {topic}-{partition} is named twice in one election."
                )));
            }
            let (leader, unclean) = self.partition_election(topic, *partition, kind)?;
            planned.push((topic, *partition, leader, unclean));
        }
        for (topic, partition, leader, unclean) in planned {
            let p = self
                .topics
                .get_mut(topic.as_str())
                .and_then(|t| {
                    usize::try_from(partition)
                        .ok()
                        .and_then(|i| t.partitions.get_mut(i))
                })
                .ok_or_else(|| unknown_partition(topic, partition))?;
            set_leader(p, leader, unclean);
            p.leader_epoch = p.leader_epoch.saturating_add(1);
            p.partition_epoch = p.partition_epoch.saturating_add(1);
        }
        Ok(())
    }
}

/// Plans an ElectLeaders request. `partitions` `None` means every partition of every topic;
/// then partitions that need no election are left out of the results, as Kafka does.
/// A partition named twice is answered once per mention but elected once.
pub fn plan_elect_leaders(
    md: &Metadata,
    kind: ElectionType,
    partitions: Option<&[(String, i32)]>,
) -> ElectionPlan {
    let mut results = Vec::new();
    let mut elected: Vec<(String, i32)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut consider = |topic: &str, partition: i32, all: bool| {
        let first = seen.insert((topic.to_string(), partition));
        let outcome = md.partition_election(topic, partition, kind);
        if all && matches!(outcome, Err(ControllerError::ElectionNotNeeded(_))) {
            return;
        }
        if outcome.is_ok() && first {
            elected.push((topic.to_string(), partition));
        }
        results.push(PartitionElection {
            topic: topic.to_string(),
            partition,
            error: outcome.err(),
        });
    };
    match partitions {
        Some(list) => {
            for (t, p) in list {
                consider(t, *p, false);
            }
        }
        None => {
            for t in md.topics.values() {
                for p in &t.partitions {
                    consider(&t.name, p.index, true);
                }
            }
        }
    }
    let command = (!elected.is_empty()).then_some(MetadataCommand::ElectLeaders {
        election_type: kind,
        partitions: elected,
    });
    ElectionPlan { results, command }
}

/// The automatic leader rebalance (Kafka's `auto.leader.rebalance.enable`): for every
/// registered broker, the share of the partitions it is the preferred (first) replica of
/// that it does not lead is its imbalance; when that exceeds `percentage` percent, its
/// partitions whose preferred replica is in the ISR and eligible get a preferred election.
/// Returns `None` when nothing is to be elected.
pub fn plan_leader_rebalance(md: &Metadata, percentage: i32) -> Option<MetadataCommand> {
    let threshold = u64::try_from(percentage.max(0)).unwrap_or(0);
    let mut partitions = Vec::new();
    for &broker in md.brokers.keys() {
        let mut preferred_total: u64 = 0;
        let mut not_led = Vec::new();
        for t in md.topics.values() {
            for p in &t.partitions {
                if p.replicas.first() != Some(&broker) {
                    continue;
                }
                preferred_total += 1;
                if p.leader != broker {
                    not_led.push((t.name.as_str(), p.index));
                }
            }
        }
        if preferred_total == 0 || (not_led.len() as u64) * 100 <= threshold * preferred_total {
            continue;
        }
        for (topic, partition) in not_led {
            if md.election_outcome(topic, partition, ElectionType::Preferred) == Ok(broker) {
                partitions.push((topic.to_string(), partition));
            }
        }
    }
    (!partitions.is_empty()).then_some(MetadataCommand::ElectLeaders {
        election_type: ElectionType::Preferred,
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::super::BrokerRegistration;
    use super::*;

    fn up(md: &mut Metadata, id: i32) {
        md.apply(&MetadataCommand::RegisterBroker(BrokerRegistration {
            node_id: id,
            incarnation_id: Uuid::from_u128(id as u128),
            host: "h".into(),
            port: 9000 + id,
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

    /// Brokers 1..=3 and topic `t` with the given (replicas, isr, leader) partitions.
    fn cluster(parts: &[(&[i32], &[i32], i32)]) -> Metadata {
        let mut md = Metadata::new("c", 1);
        for id in 1..=3 {
            up(&mut md, id);
        }
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
        md.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            id: Uuid::from_u128(99),
            partitions,
            configs: BTreeMap::new(),
            internal: false,
        })
        .unwrap();
        md
    }

    fn tp(p: i32) -> (String, i32) {
        ("t".to_string(), p)
    }

    fn codes(plan: &ElectionPlan) -> Vec<(String, i32, i16)> {
        plan.results
            .iter()
            .map(|r| {
                (
                    r.topic.clone(),
                    r.partition,
                    r.error.as_ref().map_or(0, ControllerError::error_code),
                )
            })
            .collect()
    }

    #[test]
    fn election_types_from_the_wire() {
        assert_eq!(ElectionType::from_wire(0), Some(ElectionType::Preferred));
        assert_eq!(ElectionType::from_wire(1), Some(ElectionType::Unclean));
        assert_eq!(ElectionType::from_wire(2), None);
        assert_eq!(ElectionType::Unclean.wire(), 1);
    }

    #[test]
    fn preferred_election_moves_leadership_back_and_bumps_epochs() {
        let mut md = cluster(&[
            (&[1, 2, 3], &[1, 2, 3], 2), // elected: 1
            (&[1, 2, 3], &[1, 2, 3], 1), // ELECTION_NOT_NEEDED
            (&[3, 1, 2], &[1, 2], 1),    // 3 out of the ISR: PREFERRED_LEADER_NOT_AVAILABLE
        ]);
        let asked = vec![tp(0), tp(1), tp(2), tp(7), ("nope".to_string(), 0)];
        let plan = plan_elect_leaders(&md, ElectionType::Preferred, Some(&asked));
        assert_eq!(
            codes(&plan),
            vec![
                ("t".into(), 0, 0),
                ("t".into(), 1, 84),
                ("t".into(), 2, 80),
                ("t".into(), 7, 3),
                ("nope".into(), 0, 3),
            ]
        );
        let cmd = plan.command.clone().unwrap();
        assert_eq!(
            cmd,
            MetadataCommand::ElectLeaders {
                election_type: ElectionType::Preferred,
                partitions: vec![tp(0)],
            }
        );
        let before = md.clone();
        md.apply(&cmd).unwrap();
        let p = &md.topics["t"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 1, 1));
        assert_eq!(p.isr, vec![1, 2, 3]);
        assert_eq!(
            md.topics["t"].partitions[1],
            before.topics["t"].partitions[1]
        );
        assert_eq!(
            md.topics["t"].partitions[2],
            before.topics["t"].partitions[2]
        );
        // The same command again elects nothing: refused, nothing changes.
        let after = md.clone();
        assert_eq!(md.apply(&cmd).unwrap_err().error_code(), 84);
        assert_eq!(md, after);
    }

    #[test]
    fn preferred_replica_must_be_eligible() {
        let mut md = cluster(&[(&[1, 2], &[1, 2], 2)]);
        md.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        // Fencing dropped 1 from the ISR; even when it is back in it, fenced means no.
        let plan = plan_elect_leaders(&md, ElectionType::Preferred, Some(&[tp(0)]));
        assert_eq!(codes(&plan), vec![("t".into(), 0, 80)]);
        assert!(plan.command.is_none());
        let mut md = cluster(&[(&[1, 2], &[1, 2], 2)]);
        let e = md.brokers[&1].broker_epoch;
        md.apply(&MetadataCommand::BeginControlledShutdown {
            node_id: 1,
            broker_epoch: e,
        })
        .unwrap();
        assert_eq!(
            md.election_outcome("t", 0, ElectionType::Preferred)
                .unwrap_err()
                .error_code(),
            80
        );
    }

    #[test]
    fn all_partitions_leaves_out_those_not_needing_an_election() {
        let md = cluster(&[
            (&[1, 2], &[1, 2], 2),
            (&[2, 1], &[2, 1], 2),
            (&[3, 1], &[1], 1),
        ]);
        let plan = plan_elect_leaders(&md, ElectionType::Preferred, None);
        assert_eq!(codes(&plan), vec![("t".into(), 0, 0), ("t".into(), 2, 80)]);
        assert_eq!(
            plan.command,
            Some(MetadataCommand::ElectLeaders {
                election_type: ElectionType::Preferred,
                partitions: vec![tp(0)],
            })
        );
    }

    #[test]
    fn unclean_election_only_for_leaderless_partitions() {
        // Partition 0 lost its only ISR member (1); 2 is a live replica outside the ISR.
        let mut md = cluster(&[(&[1, 2], &[1], 1), (&[2, 3], &[2, 3], 2)]);
        md.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        assert_eq!(md.topics["t"].partitions[0].leader, NO_LEADER);
        // A preferred election cannot help: 1 is fenced and no other ISR member exists.
        assert_eq!(
            md.election_outcome("t", 0, ElectionType::Preferred)
                .unwrap_err()
                .error_code(),
            80
        );
        let plan = plan_elect_leaders(&md, ElectionType::Unclean, Some(&[tp(0), tp(1)]));
        assert_eq!(codes(&plan), vec![("t".into(), 0, 0), ("t".into(), 1, 84)]);
        let epoch = md.topics["t"].partitions[0].leader_epoch;
        md.apply(&plan.command.unwrap()).unwrap();
        let p = &md.topics["t"].partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert_eq!(p.leader_epoch, epoch + 1);
        // Nobody live at all: ELIGIBLE_LEADERS_NOT_AVAILABLE.
        let mut md = cluster(&[(&[1, 2], &[1], 1)]);
        md.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        md.apply(&MetadataCommand::FenceBroker { node_id: 2 })
            .unwrap();
        let plan = plan_elect_leaders(&md, ElectionType::Unclean, None);
        assert_eq!(codes(&plan), vec![("t".into(), 0, 83)]);
        assert!(plan.command.is_none());
    }

    #[test]
    fn leaderless_partition_takes_another_isr_member_on_preferred() {
        // Not reachable through the other commands (unfencing elects at once), but Kafka's
        // builder does it, so a hand-built state shows it.
        let mut md = cluster(&[(&[1, 2], &[1, 2], 2)]);
        md.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        if let Some(t) = md.topics.get_mut("t") {
            t.partitions[0].leader = NO_LEADER;
        }
        assert_eq!(md.election_outcome("t", 0, ElectionType::Preferred), Ok(2));
    }

    #[test]
    fn apply_is_all_or_nothing() {
        let mut md = cluster(&[(&[1, 2], &[1, 2], 2), (&[1, 2], &[1, 2], 1)]);
        let before = md.clone();
        for bad in [
            vec![tp(0), tp(1)],
            vec![tp(0), tp(0)],
            vec![tp(0), tp(5)],
            vec![],
        ] {
            let cmd = MetadataCommand::ElectLeaders {
                election_type: ElectionType::Preferred,
                partitions: bad.clone(),
            };
            assert!(md.apply(&cmd).is_err(), "{bad:?}");
            assert_eq!(md, before, "{bad:?}");
        }
        // A partition named twice in a request is answered twice and elected once.
        let plan = plan_elect_leaders(&md, ElectionType::Preferred, Some(&[tp(0), tp(0)]));
        assert_eq!(codes(&plan), vec![("t".into(), 0, 0), ("t".into(), 0, 0)]);
        md.apply(&plan.command.unwrap()).unwrap();
        assert_eq!(md.topics["t"].partitions[0].leader_epoch, 1);
    }

    #[test]
    fn command_round_trips_through_json() {
        let cmd = MetadataCommand::ElectLeaders {
            election_type: ElectionType::Unclean,
            partitions: vec![tp(3)],
        };
        let json = serde_json::to_string(&cmd).unwrap();
        assert_eq!(serde_json::from_str::<MetadataCommand>(&json).unwrap(), cmd);
    }

    #[test]
    fn rebalance_moves_leaders_of_imbalanced_brokers_only() {
        // Broker 1 prefers 4 partitions and leads 2 of them (50 %); broker 2 prefers
        // 2 and leads both; broker 3 prefers 1 and leads none but is out of its ISR.
        let md = cluster(&[
            (&[1, 2, 3], &[1, 2, 3], 1),
            (&[1, 2, 3], &[1, 2, 3], 1),
            (&[1, 2, 3], &[1, 2, 3], 2),
            (&[1, 3, 2], &[1, 2, 3], 3),
            (&[2, 1, 3], &[1, 2, 3], 2),
            (&[2, 1, 3], &[1, 2, 3], 2),
            (&[3, 1, 2], &[1, 2], 1),
        ]);
        assert_eq!(
            plan_leader_rebalance(&md, 10),
            Some(MetadataCommand::ElectLeaders {
                election_type: ElectionType::Preferred,
                partitions: vec![tp(2), tp(3)],
            })
        );
        // 50 % is not above 50 %; broker 3's 100 % finds nothing eligible.
        assert_eq!(plan_leader_rebalance(&md, 50), None);
        assert!(plan_leader_rebalance(&md, 49).is_some());
        let mut md = md;
        md.apply(&plan_leader_rebalance(&md, 0).unwrap()).unwrap();
        assert_eq!(plan_leader_rebalance(&md, 0), None);
        let leaders: Vec<i32> = md.topics["t"].partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![1, 1, 1, 1, 2, 2, 1]);
    }

    #[test]
    fn rebalance_of_a_balanced_or_empty_cluster_is_nothing() {
        assert_eq!(plan_leader_rebalance(&Metadata::new("c", 1), 10), None);
        let md = cluster(&[(&[1], &[1], 1), (&[2], &[2], 2), (&[3], &[3], 3)]);
        assert_eq!(plan_leader_rebalance(&md, 0), None);
    }
}
