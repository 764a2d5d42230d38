//! KIP-951: a Produce (v10+) or Fetch (v12+/v16+) partition refused because this broker does
//! not lead it carries where the leader is now (`current_leader`), and the response lists the
//! endpoints of those leaders (`node_endpoints`), so a client re-routes without a Metadata
//! round trip.

use std::collections::BTreeSet;

use sluice_controller::Metadata;

use crate::codes;

/// Whether an error code is one after which a client looks for the new leader.
pub fn wants_hint(code: i16) -> bool {
    code == codes::NOT_LEADER_OR_FOLLOWER || code == codes::FENCED_LEADER_EPOCH
}

/// (leader id, leader epoch) of a partition, when it has a live leader.
pub fn current_leader(md: &Metadata, topic: &str, partition: i32) -> Option<(i32, i32)> {
    let p = md
        .topics
        .get(topic)?
        .partitions
        .get(usize::try_from(partition).ok()?)?;
    let live = md.brokers.get(&p.leader).is_some_and(|b| !b.fenced);
    live.then_some((p.leader, p.leader_epoch))
}

/// (id, host, port, rack) of each named live broker, in id order.
pub fn endpoints(md: &Metadata, ids: &BTreeSet<i32>) -> Vec<(i32, String, i32, Option<String>)> {
    ids.iter()
        .filter_map(|id| md.brokers.get(id))
        .filter(|b| !b.fenced)
        .map(|b| (b.node_id, b.host.clone(), b.port, b.rack.clone()))
        .collect()
}
