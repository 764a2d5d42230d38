//! Replica placement for new partitions, striped over the usable brokers as Kafka's
//! `StripedReplicaPlacer` / `AdminUtils.assignReplicasToBrokers` do.
//!
//! Usable brokers are the registered ones that are neither fenced nor in controlled
//! shutdown. Every partition of the cluster gets a global counter `c` (the number of
//! partitions that exist already plus its position in the batch); its leader is broker
//! `c % n` of the (rack-alternated) broker list and its followers follow at a shift that
//! grows by one every `n` partitions, so leaders and followers both spread evenly, also
//! across topics. When every usable broker has a rack, the list alternates racks and a
//! partition's replicas go to distinct racks where possible.

use std::collections::{BTreeMap, BTreeSet};

use super::{too_many_partitions, Metadata, PartitionInfo};
use crate::error::ControllerError;

/// Brokers usable for placement: `(node_id, rack)` sorted by node id.
fn usable_brokers(md: &Metadata) -> Vec<(i32, Option<String>)> {
    md.brokers
        .values()
        .filter(|b| b.is_eligible())
        .map(|b| (b.node_id, b.rack.clone()))
        .collect()
}

/// Alternates racks: first broker of each rack (racks sorted), then the second, ...
fn rack_alternated(brokers: &[(i32, Option<String>)]) -> Vec<(i32, Option<String>)> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack
            .entry(rack.as_deref().unwrap_or(""))
            .or_default()
            .push(*id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(i) {
                out.push((*id, Some((*rack).to_string())));
            }
        }
    }
    out
}

/// Kafka's `replicaIndex`: the j-th follower of a leader at `first`, with `shift`.
fn replica_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    let s = 1 + (shift + j) % (n - 1);
    (first + s) % n
}

/// Places `count` new partitions numbered from `first_index` with `replication_factor`
/// replicas each; leader = first replica, ISR = replicas, epochs 0.
pub(crate) fn assign_replicas(
    md: &Metadata,
    first_index: i32,
    count: i32,
    replication_factor: i16,
    max_replication_factor: Option<i16>,
) -> Result<Vec<PartitionInfo>, ControllerError> {
    if replication_factor <= 0 {
        return Err(ControllerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".into(),
        ));
    }
    if let Some(max) = max_replication_factor {
        if replication_factor > max {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} > {max} is not supported yet: partition replication is not implemented"
            )));
        }
    }
    let usable = usable_brokers(md);
    if usable.is_empty() && !md.brokers.is_empty() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {replication_factor} time(s): All brokers are currently fenced."
        )));
    }
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    let n = usable.len();
    if rf > n {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {n} broker(s) are registered."
        )));
    }
    let rack_aware = usable.iter().all(|(_, r)| r.is_some());
    let arranged = if rack_aware {
        rack_alternated(&usable)
    } else {
        usable
    };
    let num_racks = arranged
        .iter()
        .map(|(_, r)| r.as_deref())
        .collect::<BTreeSet<_>>()
        .len();
    let count = usize::try_from(count).unwrap_or(0);
    let base = md.partition_count();
    let mut out = Vec::with_capacity(count);
    for p in 0..count {
        let c = base + p;
        let first = c % n;
        let shift = c / n;
        let mut replicas = Vec::with_capacity(rf);
        let mut racks: BTreeSet<Option<&str>> = BTreeSet::new();
        let (leader, leader_rack) = &arranged[first];
        replicas.push(*leader);
        racks.insert(leader_rack.as_deref());
        if rf > 1 {
            if rack_aware {
                // Walk the followers in stripe order, taking a broker on an unused rack
                // while one remains; two rounds always suffice.
                let mut k = 0;
                while replicas.len() < rf && k < 2 * n {
                    let (id, rack) = &arranged[replica_index(first, shift * num_racks, k, n)];
                    let rack_ok = !racks.contains(&rack.as_deref()) || racks.len() == num_racks;
                    if rack_ok && !replicas.contains(id) {
                        replicas.push(*id);
                        racks.insert(rack.as_deref());
                    }
                    k += 1;
                }
                // Unreachable in practice; keeps the placement total.
                for (id, _) in &arranged {
                    if replicas.len() >= rf {
                        break;
                    }
                    if !replicas.contains(id) {
                        replicas.push(*id);
                    }
                }
            } else {
                for j in 0..rf - 1 {
                    replicas.push(arranged[replica_index(first, shift, j, n)].0);
                }
            }
        }
        let index = i32::try_from(p)
            .ok()
            .and_then(|p| first_index.checked_add(p))
            .ok_or_else(|| too_many_partitions(count))?;
        out.push(PartitionInfo {
            index,
            leader: *leader,
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{BrokerRegistration, MetadataCommand};
    use super::*;
    use uuid::Uuid;

    fn md(racks: &[Option<&str>]) -> Metadata {
        let mut md = Metadata::new("c", 1);
        for (i, r) in racks.iter().enumerate() {
            let id = i as i32 + 1;
            md.apply(&MetadataCommand::RegisterBroker(BrokerRegistration {
                node_id: id,
                incarnation_id: Uuid::nil(), // legacy = unfenced
                host: "h".into(),
                port: 9000,
                rack: r.map(str::to_string),
                inter_broker: None,
            }))
            .unwrap();
        }
        md
    }

    fn counts(parts: &[PartitionInfo], f: impl Fn(&PartitionInfo) -> Vec<i32>) -> Vec<usize> {
        let mut m: BTreeMap<i32, usize> = BTreeMap::new();
        for p in parts {
            for b in f(p) {
                *m.entry(b).or_default() += 1;
            }
        }
        m.into_values().collect()
    }

    #[test]
    fn striped_even_spread() {
        let m = md(&[None, None, None, None]);
        let parts = assign_replicas(&m, 0, 12, 3, None).unwrap();
        for p in &parts {
            let d: BTreeSet<i32> = p.replicas.iter().copied().collect();
            assert_eq!(d.len(), 3);
            assert_eq!(p.leader, p.replicas[0]);
        }
        assert_eq!(counts(&parts, |p| vec![p.leader]), vec![3, 3, 3, 3]);
        assert_eq!(counts(&parts, |p| p.replicas.clone()), vec![9, 9, 9, 9]);
        // Followers of one leader are not always the same brokers (shift grows).
        let of1: BTreeSet<Vec<i32>> = parts
            .iter()
            .filter(|p| p.leader == 1)
            .map(|p| p.replicas.clone())
            .collect();
        assert!(of1.len() > 1, "{of1:?}");
    }

    #[test]
    fn rack_aware_distinct_racks() {
        let m = md(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        let parts = assign_replicas(&m, 0, 30, 3, None).unwrap();
        for p in &parts {
            let racks: BTreeSet<Option<String>> = p
                .replicas
                .iter()
                .map(|r| m.brokers[r].rack.clone())
                .collect();
            assert_eq!(racks.len(), 3, "{p:?}");
        }
        assert_eq!(counts(&parts, |p| vec![p.leader]), vec![5; 6]);
        // Fewer racks than replicas: racks are reused only after all are used.
        let m = md(&[Some("a"), Some("a"), Some("b"), Some("b")]);
        for p in assign_replicas(&m, 0, 8, 3, None).unwrap() {
            let racks: BTreeSet<Option<String>> = p
                .replicas
                .iter()
                .map(|r| m.brokers[r].rack.clone())
                .collect();
            assert_eq!(racks.len(), 2, "{p:?}");
            assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 3);
        }
    }

    #[test]
    fn fenced_brokers_not_used_and_limits() {
        let mut m = md(&[None, None, None]);
        m.apply(&MetadataCommand::FenceBroker { node_id: 2 })
            .unwrap();
        let parts = assign_replicas(&m, 0, 6, 2, None).unwrap();
        assert!(parts.iter().all(|p| !p.replicas.contains(&2)));
        let e = assign_replicas(&m, 0, 1, 3, None).unwrap_err();
        assert_eq!(e.error_code(), 38);
        assert_eq!(
            e.message(),
            "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 2 broker(s) are registered."
        );
        let e = assign_replicas(&m, 0, 1, 2, Some(1)).unwrap_err();
        assert_eq!(e.error_code(), 38);
        assert_eq!(
            e.message(),
            "replication factor 2 > 1 is not supported yet: partition replication is not implemented"
        );
        assert!(assign_replicas(&m, 0, 1, 1, Some(1)).is_ok());
        m.apply(&MetadataCommand::FenceBroker { node_id: 1 })
            .unwrap();
        m.apply(&MetadataCommand::FenceBroker { node_id: 3 })
            .unwrap();
        let e = assign_replicas(&m, 0, 1, 1, None).unwrap_err();
        assert_eq!(e.error_code(), 38);
        assert!(e.message().contains("All brokers are currently fenced"));
    }

    #[test]
    fn offsets_topic_spread_with_rf_1() {
        let m = md(&[None, None, None]);
        let cmd = crate::metadata::plan_create_topic(
            &m,
            crate::metadata::CONSUMER_OFFSETS_TOPIC,
            50,
            1,
            &BTreeMap::new(),
            &crate::config::BrokerSettings::default(),
        )
        .unwrap();
        let MetadataCommand::CreateTopic { partitions, .. } = cmd else {
            panic!("not a CreateTopic");
        };
        assert_eq!(counts(&partitions, |p| vec![p.leader]), vec![17, 17, 16]);
    }
}
