//! ISR maintenance on the leader: the periodic shrink check and the AlterPartition proposals
//! (KIP-497) that carry a leader's ISR changes to the controller.

use std::sync::Arc;
use std::time::Duration;

use sluice_controller::{MetadataCommand, TopicRef};
use sluice_replication::IsrChange;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::partition::Partition;
use crate::state::Broker;

/// Proposes `change` of `p`'s ISR to the controller in the background. When the controller
/// refuses it (stale partition epoch, ineligible replica, timeout), the leader forgets the
/// pending change and decides again at its next check; when it commits, the new ISR reaches
/// the partition through the reconciler like any metadata.
pub fn propose(broker: &Arc<Broker>, p: Arc<Partition>, change: IsrChange) {
    let key = (p.topic.clone(), p.index);
    if !broker.replication.begin_proposal(&key) {
        return; // one in flight already; the periodic check re-sends if it gets lost
    }
    let b = broker.clone();
    tokio::spawn(async move {
        let cmd = MetadataCommand::AlterPartition {
            topic: TopicRef::Id(p.topic_id),
            partition: p.index,
            leader_id: b.config.node_id,
            broker_epoch: b.broker_epoch(),
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            new_isr: change.new_isr.clone(),
        };
        match b.commit(cmd).await {
            Ok(_) => tracing::info!(
                topic = %p.topic,
                partition = p.index,
                isr = ?change.new_isr,
                "ISR changed"
            ),
            Err(e) => {
                tracing::info!(
                    topic = %p.topic,
                    partition = p.index,
                    isr = ?change.new_isr,
                    "ISR change not committed: {e}"
                );
                // Only a refusal that proves the change was not applied lets the leader
                // forget it; after a timeout or a stale-epoch answer the change may have been
                // committed, so it stays pending until newer metadata settles it (or it is
                // re-sent by the periodic check).
                if e.error_code() == crate::codes::INELIGIBLE_REPLICA {
                    p.isr_change_failed();
                }
            }
        }
        b.replication.end_proposal(&key);
    });
}

/// How often leaders check for followers that fell out of sync: half of
/// `replica.lag.time.max.ms`, between 100 ms and 5 s.
fn check_interval(lag_time_max_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from((lag_time_max_ms / 2).clamp(100, 5_000)).unwrap_or(5_000))
}

/// Runs the ISR check of every partition led here until `stop`.
pub fn spawn(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let every = check_interval(broker.reconciler.lag_time_max_ms());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            for p in broker
                .all_partitions()
                .into_iter()
                .filter(|p| p.is_leader())
            {
                if let Some(change) = p.poll_isr().or_else(|| p.pending_isr_change()) {
                    propose(&broker, p, change);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_interval_is_half_the_lag_within_bounds() {
        assert_eq!(check_interval(30_000), Duration::from_secs(5));
        assert_eq!(check_interval(3_000), Duration::from_millis(1_500));
        assert_eq!(check_interval(10), Duration::from_millis(100));
    }
}
