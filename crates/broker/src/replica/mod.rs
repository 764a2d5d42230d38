//! Partition replication at run time (Kafka's protocol: followers pull from the leader).
//!
//! - [`fetcher`]: one fetcher task per source broker, carrying every partition this broker
//!   follows from it (Fetch v15+ with `ReplicaState`), appending the leader's batches byte for
//!   byte and truncating on a diverging epoch.
//! - The leader's side of a follower fetch lives in `handlers::replica_fetch`; the decisions
//!   (high watermark, ISR changes, acks=all completion) are the pure state machine of
//!   `sluice-replication`, held per partition by `crate::partition::Partition`.
//! - [`isr`]: the periodic ISR check of led partitions and the AlterPartition proposals.
//! - [`throttle`]: replication throttles (reassignment traffic bounded in bytes/s).

pub mod fetcher;
pub mod isr;
pub mod throttle;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Replication state of a broker: which fetcher tasks run, and whether it is stopping.
#[derive(Default)]
pub struct Replication {
    /// Source brokers (partition leaders) a fetcher task runs for.
    running: Mutex<HashSet<i32>>,
    /// Partitions with an AlterPartition proposal in flight.
    proposing: Mutex<HashSet<(String, i32)>>,
    stopping: AtomicBool,
    /// Bytes this broker sent to out-of-sync followers of throttled partitions.
    pub leader_quota: throttle::Quota,
    /// Bytes this broker fetched for throttled partitions while out of sync.
    pub follower_quota: throttle::Quota,
}

impl Replication {
    /// Tells every fetcher to stop (shutdown).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether the broker is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Marks a proposal for `key` in flight; false when one already is.
    pub fn begin_proposal(&self, key: &(String, i32)) -> bool {
        self.proposing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
    }

    /// The proposal for `key` finished.
    pub fn end_proposal(&self, key: &(String, i32)) {
        self.proposing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}
