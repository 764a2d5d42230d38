use std::collections::BTreeMap;

use super::*;

const LAG: u64 = 10_000;

fn cfg(min_isr: usize) -> ReplicationConfig {
    ReplicationConfig {
        min_insync_replicas: min_isr,
        replica_lag_time_max_ms: LAG,
    }
}

/// Leader 1 of replicas [1, 2, 3], epoch 5 / partition epoch 7, all in the ISR, log end 10,
/// epoch started at 10, hw 8; brokers 1..=3 eligible with epochs 101..=103.
fn leader(min_isr: usize) -> LeaderState {
    let mut s = LeaderState::new(1, 5, 7, &[1, 2, 3], &[1, 2, 3], 10, 10, 8, cfg(min_isr), 0);
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102), (3, 103)]));
    s
}

#[test]
fn new_leader_keeps_its_hw_and_waits_for_unknown_followers() {
    let mut s = leader(1);
    assert_eq!(s.high_watermark(), 8);
    assert_eq!(s.follower_log_end(2), Some(-1));
    assert_eq!(s.follower_log_end(1), None);
    assert_eq!(s.on_local_append(15), None);
    // Follower 2 caught up, 3 unknown: the hw stays.
    assert_eq!(s.on_follower_fetch(2, 102, 15, 15, 1), (None, None));
    assert_eq!(s.on_follower_fetch(3, 103, 12, 15, 1), (Some(12), None));
    assert_eq!(s.on_follower_fetch(3, 103, 15, 15, 2), (Some(15), None));
    // Never beyond the leader's own log end, never backwards.
    assert_eq!(s.on_follower_fetch(3, 103, 9, 15, 3), (None, None));
    assert_eq!(s.high_watermark(), 15);
}

#[test]
fn hw_is_min_over_maximal_isr() {
    let mut s = LeaderState::new(1, 5, 7, &[1, 2, 3], &[1, 2], 0, 20, 0, cfg(1), 0);
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102), (3, 103)]));
    assert_eq!(s.on_follower_fetch(2, 102, 20, 20, 1), (Some(20), None));
    s.on_local_append(30);
    // 3 is not in the ISR: it does not hold the hw back, but joins once it reaches hw 20.
    let (hw, change) = s.on_follower_fetch(3, 103, 20, 30, 2);
    assert_eq!(hw, None);
    let change = change.expect("expansion");
    assert_eq!(change.new_isr, vec![1, 2, 3]);
    assert_eq!((change.leader_epoch, change.partition_epoch), (5, 7));
    assert_eq!(s.maximal_isr(), vec![1, 2, 3]);
    // While the expansion is pending, 3 counts for the hw.
    assert_eq!(s.on_follower_fetch(2, 102, 30, 30, 3), (None, None));
    assert_eq!(s.high_watermark(), 20);
    assert_eq!(s.on_follower_fetch(3, 103, 25, 30, 4), (Some(25), None));
    // Committed: the pending change clears.
    assert_eq!(s.on_metadata(8, &[1, 2, 3], &[1, 2, 3], 5), None);
    assert!(s.pending().is_none());
    assert_eq!(s.isr(), &[1, 2, 3]);
}

#[test]
fn min_isr_gates_the_hw() {
    let mut s = LeaderState::new(1, 5, 7, &[1, 2, 3], &[1], 0, 10, 0, cfg(2), 0);
    assert!(s.under_min_isr());
    assert_eq!(s.check_enough_replicas(), Err(()));
    assert_eq!(s.high_watermark(), 0);
    assert_eq!(s.on_local_append(12), None);
    // Lowering min.insync.replicas releases it.
    assert_eq!(s.set_config(cfg(1)), Some(12));
    assert_eq!(s.check_enough_replicas(), Ok(()));
    assert!(!s.under_min_isr());
    assert!(s.under_replicated());
}

#[test]
fn isr_growth_by_metadata_releases_the_hw() {
    let mut s = LeaderState::new(1, 5, 7, &[1, 2], &[1], 0, 10, 0, cfg(2), 0);
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102)]));
    let (hw, change) = s.on_follower_fetch(2, 102, 10, 10, 1);
    assert_eq!(
        hw, None,
        "ISR below min: no advance even with the pending member"
    );
    assert!(change.is_some());
    assert_eq!(s.on_metadata(8, &[1, 2], &[1, 2], 2), Some(10));
    assert!(!s.under_replicated());
}

#[test]
fn expansion_needs_hw_and_epoch_start() {
    // Epoch started at 10, hw 8: a follower at 9 is not enough, 10 is.
    let mut s = LeaderState::new(1, 5, 7, &[1, 2, 3], &[1, 2], 10, 12, 8, cfg(1), 0);
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102), (3, 103)]));
    assert_eq!(s.on_follower_fetch(3, 103, 9, 12, 1).1, None);
    assert!(s.on_follower_fetch(3, 103, 10, 12, 2).1.is_some());
    // And the hw: follower 2 at 12 moves it to 12; a new follower must reach 12.
    let mut s = LeaderState::new(1, 5, 7, &[1, 2, 3], &[1, 2], 0, 12, 0, cfg(1), 0);
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102), (3, 103)]));
    assert_eq!(s.on_follower_fetch(2, 102, 12, 12, 1).0, Some(12));
    assert_eq!(s.on_follower_fetch(3, 103, 11, 12, 2).1, None);
    assert!(s.on_follower_fetch(3, 103, 12, 12, 3).1.is_some());
}

#[test]
fn expansion_refuses_stale_or_ineligible_brokers() {
    let mut s = LeaderState::new(1, 5, 7, &[1, 2, 3], &[1, 2], 0, 10, 0, cfg(1), 0);
    // Nothing eligible known yet.
    assert_eq!(s.on_follower_fetch(3, 103, 10, 10, 1).1, None);
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102), (3, 103)]));
    // A stale broker epoch (an old incarnation) is refused.
    assert_eq!(s.on_follower_fetch(3, 99, 10, 10, 2).1, None);
    // Fenced: not listed.
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102)]));
    assert_eq!(s.on_follower_fetch(3, 103, 10, 10, 3).1, None);
    // Listed again, and a fetch without a broker epoch (-1) passes.
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102), (3, 104)]));
    assert!(s.on_follower_fetch(3, -1, 10, 10, 4).1.is_some());
    // Non-replicas and offsets past the leader's end are ignored.
    assert_eq!(s.on_follower_fetch(9, 1, 10, 10, 5), (None, None));
    assert_eq!(s.on_follower_fetch(2, 102, 11, 10, 5), (None, None));
}

#[test]
fn shrink_after_lag() {
    let mut s = leader(1);
    s.on_local_append(20);
    // 2 keeps fetching the end; 3 is stuck at 10 and last caught up at time 0.
    for t in [1_000, 5_000, 9_000, 10_001] {
        s.on_follower_fetch(2, 102, 20, 20, t);
        s.on_follower_fetch(3, 103, 10, 20, t);
    }
    assert_eq!(s.poll(LAG), None);
    let change = s.poll(LAG + 1).expect("shrink");
    assert_eq!(change.new_isr, vec![1, 2]);
    assert_eq!(change.partition_epoch, 7);
    // Pending: no other change, and the maximal ISR still holds 3.
    assert_eq!(s.poll(LAG + 5_000), None);
    assert_eq!(s.maximal_isr(), vec![1, 2, 3]);
    assert_eq!(s.high_watermark(), 10);
    // Committed: 3 no longer holds the hw back.
    assert_eq!(s.on_metadata(8, &[1, 2, 3], &[1, 2], LAG + 2), Some(20));
    assert!(s.pending().is_none());
}

#[test]
fn follower_behind_is_caught_up_at_its_previous_fetch() {
    let mut s = leader(1);
    s.on_follower_fetch(2, 102, 10, 10, 0);
    s.on_follower_fetch(3, 103, 10, 10, 0);
    s.on_local_append(20);
    // At t=8000 follower 2 fetches at 10 while the leader is at 20 (behind now, but caught
    // up with the leader's end of its previous fetch at t=0).
    s.on_follower_fetch(2, 102, 10, 20, 8_000);
    s.on_local_append(30);
    // At t=15000 it fetches at 20: it reached the leader's end of its previous fetch
    // (t=8000), so it was caught up then.
    s.on_follower_fetch(2, 102, 20, 30, 15_000);
    s.on_follower_fetch(3, 103, 30, 30, 15_000);
    assert_eq!(s.poll(17_000), None);
    let change = s.poll(18_001).expect("2 lags");
    assert_eq!(change.new_isr, vec![1, 3]);
}

#[test]
fn never_shrinks_the_leader_out() {
    let mut s = LeaderState::new(1, 5, 7, &[1, 2], &[1], 0, 0, 0, cfg(1), 0);
    assert_eq!(s.poll(1_000_000), None);
    let mut s = LeaderState::new(1, 5, 7, &[1, 2], &[1, 2], 0, 0, 0, cfg(1), 0);
    assert_eq!(s.poll(1_000_000).map(|c| c.new_isr), Some(vec![1]));
}

#[test]
fn alter_failed_allows_a_retry() {
    let mut s = leader(1);
    let first = s.poll(LAG + 1).expect("both followers lag");
    assert_eq!(first.new_isr, vec![1]);
    assert_eq!(s.poll(LAG + 2), None);
    s.on_alter_failed();
    assert!(s.pending().is_none());
    assert_eq!(s.poll(LAG + 3), Some(first));
}

#[test]
fn pending_change_blocks_an_expansion() {
    let mut s = LeaderState::new(1, 5, 7, &[1, 2, 3], &[1], 0, 10, 0, cfg(1), 0);
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102), (3, 103)]));
    let add2 = s.on_follower_fetch(2, 102, 10, 10, 1).1.expect("add 2");
    assert_eq!(add2.new_isr, vec![1, 2]);
    assert_eq!(s.on_follower_fetch(3, 103, 10, 10, 2).1, None);
    // Stale metadata changes nothing; the committed change clears the pending one.
    assert_eq!(s.on_metadata(6, &[1, 2, 3], &[1], 3), None);
    assert!(s.pending().is_some());
    s.on_metadata(8, &[1, 2, 3], &[1, 2], 3);
    assert!(s.pending().is_none());
    let add3 = s.on_follower_fetch(3, 103, 10, 10, 4).1.expect("add 3");
    assert_eq!((add3.partition_epoch, add3.new_isr), (8, vec![1, 2, 3]));
}

#[test]
fn completion_results() {
    let mut s = LeaderState::new(1, 5, 7, &[1, 2, 3], &[1, 2, 3], 0, 10, 0, cfg(2), 0);
    s.set_eligible_brokers(&BTreeMap::from([(1, 101), (2, 102), (3, 103)]));
    assert_eq!(s.check_completion(5), Completion::Pending);
    s.on_follower_fetch(2, 102, 10, 10, 1);
    s.on_follower_fetch(3, 103, 6, 10, 1);
    assert_eq!(s.high_watermark(), 6);
    assert_eq!(s.check_completion(5), Completion::Done);
    assert_eq!(s.check_completion(6), Completion::Done);
    assert_eq!(s.check_completion(7), Completion::Pending);
    // The ISR shrinks to the leader alone: the hw stays, but the completion now reports
    // NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    s.on_metadata(8, &[1, 2, 3], &[1], 2);
    assert_eq!(
        s.check_completion(6),
        Completion::NotEnoughReplicasAfterAppend
    );
    assert_eq!(s.check_enough_replicas(), Err(()));
    // A pending expansion back to two members counts for the maximal ISR.
    let change = s.on_follower_fetch(2, 102, 10, 10, 3).1;
    assert!(change.is_some());
    assert_eq!(s.check_completion(6), Completion::Done);
    assert_eq!(s.check_completion(7), Completion::Pending);
}

#[test]
fn replica_set_changes_keep_follower_state() {
    let mut s = leader(1);
    s.on_follower_fetch(2, 102, 10, 10, 1);
    s.on_metadata(8, &[1, 2, 3, 4], &[1, 2, 3], 2);
    assert_eq!(s.follower_log_end(2), Some(10));
    assert_eq!(s.follower_log_end(4), Some(-1));
    s.on_metadata(9, &[1, 2], &[1, 2], 3);
    assert_eq!(s.follower_log_end(3), None);
}
