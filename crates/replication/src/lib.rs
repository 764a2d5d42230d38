//! Kafka-style partition replication as a pure state machine.
//!
//! * [`LeaderState`]: what the leader of one partition keeps about its followers — their
//!   log end offsets and last caught-up times, the committed ISR and a pending ISR change
//!   (KIP-497 AlterPartition), the high watermark (hw) and the acks=all checks.
//! * [`truncation_offset`]: the follower's side of a fetch answered with a diverging epoch
//!   (KIP-101 / KIP-279 / KIP-320).
//!
//! Nothing here does I/O, spawns tasks or reads a clock: time is a `u64` of milliseconds
//! passed in by the caller, and every method returns what the caller must act on (a new
//! high watermark to publish, an [`IsrChange`] to send to the controller).
//!
//! # High watermark
//!
//! The hw is the smallest log end offset over the *maximal* ISR (the committed ISR plus
//! the members a pending expansion adds, KIP-497); the leader counts with its own log end,
//! and a member whose log end is not known yet (`-1`, it has not fetched from this leader)
//! holds the hw where it is. As in Kafka 4 (KIP-966) the hw only advances while the
//! committed ISR has at least `min.insync.replicas` members. It never moves backwards and
//! never passes the leader's log end.
//!
//! # ISR changes
//!
//! At most one change is in flight. A follower joins (expansion, proposed from
//! [`LeaderState::on_follower_fetch`]) once it is an eligible broker whose fetch carried
//! its current broker epoch (KIP-903) and its log end has reached both the hw and the
//! start offset of the leader's epoch. An ISR member leaves (shrink, proposed from
//! [`LeaderState::poll`]) when it has not been caught up for `replica.lag.time.max.ms`.
//! The change is done once metadata with a newer partition epoch arrives
//! ([`LeaderState::on_metadata`]); a refused change is forgotten with
//! [`LeaderState::on_alter_failed`] and proposed again by the next fetch or poll.
//!
//! A seeded deterministic simulation (`src/sim.rs`, run by `cargo test`) drives these
//! rules together with the real controller state machine and checks Kafka's durability
//! invariants after every step; `SIM_SEED=n` runs one seed, `SIM_SEEDS=n` that many.

mod leader;
#[cfg(test)]
mod sim;

pub use leader::LeaderState;

/// Settings of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `min.insync.replicas`: the ISR size below which acks=all produces are refused and
    /// the high watermark stops advancing.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: how long an ISR member may go without being caught up
    /// before the leader removes it from the ISR.
    pub replica_lag_time_max_ms: u64,
}

impl Default for ReplicationConfig {
    /// Kafka's defaults: `min.insync.replicas=1`, `replica.lag.time.max.ms=30000`.
    fn default() -> Self {
        ReplicationConfig {
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
        }
    }
}

/// A change of the ISR the leader wants the controller to commit (KIP-497 AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    /// The leader epoch the leader holds.
    pub leader_epoch: i32,
    /// The partition epoch the change is based on (the committed one when proposed).
    pub partition_epoch: i32,
    /// The complete proposed ISR, the leader included.
    pub new_isr: Vec<i32>,
}

/// Completion check for an acks=all produce whose last offset is `required_offset - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The high watermark has not reached the produce yet.
    Pending,
    /// Replicated to the ISR: answer the producer with success.
    Done,
    /// The hw reached the produce but the maximal ISR has fewer than
    /// `min.insync.replicas` members: answer NOT_ENOUGH_REPLICAS_AFTER_APPEND (error code 20).
    NotEnoughReplicasAfterAppend,
}

/// Follower side, KIP-101/279/320: the offset to truncate the local log to after the
/// leader answered a fetch with a diverging epoch `(diverging_epoch, diverging_end_offset)`.
///
/// `local_end_for_epoch` is the follower's own `end_offset_for_epoch(diverging_epoch)`:
/// the largest epoch `<= diverging_epoch` in its epoch cache with the end offset of that
/// epoch (the start of the next epoch, or the log end), or `None` when it has no such
/// epoch.
///
/// * The follower has the epoch itself: `min(diverging_end_offset, its end of the epoch)`.
/// * It only has a smaller epoch: `min(its end of that epoch, diverging_end_offset)`.
///   (Kafka truncates to the follower's end of the smaller epoch alone and checks again
///   with the next fetch; also taking the leader's end offset is never less safe, because
///   the leader's end of the smaller epoch is at most its end of `diverging_epoch`, and
///   it converges as the next fetch checks again.)
/// * It has no epoch at or below: `diverging_end_offset`.
///
/// The result is never above `local_log_end` and never negative (an undefined `-1` end
/// offset truncates everything).
pub fn truncation_offset(
    diverging_epoch: i32,
    diverging_end_offset: i64,
    local_end_for_epoch: Option<(i32, i64)>,
    local_log_end: i64,
) -> i64 {
    let target = match local_end_for_epoch {
        Some((epoch, end)) if epoch <= diverging_epoch => end.min(diverging_end_offset),
        // A cache answering with a larger epoch is a caller error; be conservative.
        Some((_, end)) => end.min(diverging_end_offset),
        None => diverging_end_offset,
    };
    target.min(local_log_end).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_same_epoch_takes_the_smaller_end() {
        // Follower has epoch 3 up to 120, leader's epoch 3 ends at 100.
        assert_eq!(truncation_offset(3, 100, Some((3, 120)), 150), 100);
        // Follower's epoch 3 ends earlier than the leader's.
        assert_eq!(truncation_offset(3, 100, Some((3, 80)), 150), 80);
    }

    #[test]
    fn truncation_smaller_local_epoch() {
        // The follower never saw epoch 5; its epoch 4 ends at 70.
        assert_eq!(truncation_offset(5, 90, Some((4, 70)), 100), 70);
        assert_eq!(truncation_offset(5, 60, Some((4, 70)), 100), 60);
    }

    #[test]
    fn truncation_without_local_epoch_and_bounds() {
        assert_eq!(truncation_offset(2, 40, None, 100), 40);
        assert_eq!(truncation_offset(2, 400, None, 100), 100);
        assert_eq!(truncation_offset(-1, -1, None, 100), 0);
        assert_eq!(truncation_offset(3, 100, Some((3, 120)), 90), 90);
    }
}
