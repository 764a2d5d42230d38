//! Replication throttles (Kafka's replication quotas, KIP-73), as `kafka-reassign-partitions
//! --throttle` sets them:
//!
//! - the broker configs `leader.replication.throttled.rate` and
//!   `follower.replication.throttled.rate` (bytes/s, dynamic: per node or cluster-wide) bound
//!   the replication traffic of the throttled replicas of this broker;
//! - the topic configs `leader.replication.throttled.replicas` and
//!   `follower.replication.throttled.replicas` (`partition:broker` pairs, or `*`) say which
//!   replicas are throttled: a leader's partition listed with its own node id, a follower's
//!   listed with the follower's.
//!
//! As in Kafka, a throttle only applies while the follower is out of the ISR (a reassignment's
//! new replica catching up), never to in-sync replication, so acks=all writes are not slowed.
//! The leader leaves a throttled partition out of a follower's fetch answer while its quota is
//! exceeded; the follower leaves it out of its fetch request while its own quota is.
//!
//! The rate is measured as Kafka's `Rate` measures it: bytes over 11 one-second samples,
//! divided by the time they span, but never less than 10 seconds, so a throttle starts with
//! an allowance of about ten seconds of traffic and then holds the long-run average.

use std::collections::VecDeque;
use std::sync::Mutex;

use sluice_controller::Metadata;

/// Samples kept (Kafka's `replication.quota.window.num`).
const SAMPLES: u64 = 11;
/// Length of a sample in milliseconds (`replication.quota.window.size.seconds` = 1).
const SAMPLE_MS: u64 = 1000;

/// The throttled-replica topic config of each side.
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
/// The follower side's topic config.
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";
/// The leader side's rate (broker config).
pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
/// The follower side's rate (broker config).
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";

/// A byte-rate meter over a sliding window of one-second samples.
#[derive(Default)]
pub struct Quota {
    samples: Mutex<VecDeque<(u64, u64)>>,
}

impl Quota {
    /// Records `bytes` sent or received at `now_ms` (a monotonic clock).
    pub fn record(&self, bytes: u64, now_ms: u64) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let start = now_ms - now_ms % SAMPLE_MS;
        match s.back_mut() {
            Some((t, b)) if *t == start => *b = b.saturating_add(bytes),
            _ => s.push_back((start, bytes)),
        }
        purge(&mut s, now_ms);
    }

    /// Bytes per second over the window ending at `now_ms`.
    pub fn rate(&self, now_ms: u64) -> f64 {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        purge(&mut s, now_ms);
        let total: u64 = s.iter().map(|(_, b)| *b).sum();
        let oldest = s.front().map_or(now_ms, |(t, _)| *t);
        let elapsed = now_ms.saturating_sub(oldest).max((SAMPLES - 1) * SAMPLE_MS);
        total as f64 * 1000.0 / elapsed as f64
    }

    /// Whether the rate is above `limit` bytes/s.
    pub fn exceeded(&self, limit: i64, now_ms: u64) -> bool {
        self.rate(now_ms) > limit as f64
    }
}

fn purge(s: &mut VecDeque<(u64, u64)>, now_ms: u64) {
    let horizon = now_ms.saturating_sub(SAMPLES * SAMPLE_MS);
    while s.front().is_some_and(|(t, _)| *t + SAMPLE_MS <= horizon) {
        s.pop_front();
    }
}

/// Whether a throttled-replicas list (`*`, or `partition:broker` pairs separated by commas)
/// names `partition` on `broker`.
pub fn lists(list: &str, partition: i32, broker: i32) -> bool {
    list.split(',').map(str::trim).any(|item| {
        if item == "*" {
            return true;
        }
        let mut it = item.split(':').map(str::trim);
        matches!(
            (it.next().map(str::parse::<i32>), it.next().map(str::parse::<i32>), it.next()),
            (Some(Ok(p)), Some(Ok(b)), None) if p == partition && b == broker
        )
    })
}

/// The throttle of one side on this broker for one request: the rate limit, if one is set,
/// and the metadata to read the topics' throttled-replica lists from.
pub struct Throttle {
    limit: Option<i64>,
    md: std::sync::Arc<Metadata>,
    replicas_key: &'static str,
    node_id: i32,
}

impl Throttle {
    /// The throttle of `rate_key`/`replicas_key` on `node_id` now.
    pub fn new(
        md: std::sync::Arc<Metadata>,
        settings: &sluice_controller::BrokerSettings,
        node_id: i32,
        rate_key: &str,
        replicas_key: &'static str,
    ) -> Throttle {
        let limit = md
            .effective_broker_config(node_id, rate_key, settings)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|l| *l < i64::MAX);
        Throttle {
            limit,
            md,
            replicas_key,
            node_id,
        }
    }

    /// The leader side.
    pub fn leader(
        md: std::sync::Arc<Metadata>,
        settings: &sluice_controller::BrokerSettings,
        node_id: i32,
    ) -> Throttle {
        Throttle::new(md, settings, node_id, LEADER_RATE, LEADER_REPLICAS)
    }

    /// The follower side.
    pub fn follower(
        md: std::sync::Arc<Metadata>,
        settings: &sluice_controller::BrokerSettings,
        node_id: i32,
    ) -> Throttle {
        Throttle::new(md, settings, node_id, FOLLOWER_RATE, FOLLOWER_REPLICAS)
    }

    /// Whether any rate limit is set.
    pub fn is_active(&self) -> bool {
        self.limit.is_some()
    }

    /// Whether `topic`-`partition` is throttled here (the caller checks the ISR).
    pub fn applies(&self, topic: &str, partition: i32) -> bool {
        self.limit.is_some()
            && self
                .md
                .topics
                .get(topic)
                .and_then(|t| t.configs.get(self.replicas_key))
                .is_some_and(|l| lists(l, partition, self.node_id))
    }

    /// Whether `quota` is over this throttle's limit now.
    pub fn exceeded(&self, quota: &Quota, now_ms: u64) -> bool {
        self.limit.is_some_and(|l| quota.exceeded(l, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_pairs_and_wildcard() {
        assert!(lists("*", 3, 7));
        assert!(lists("0:1, 3:7", 3, 7));
        assert!(!lists("0:1,3:7", 3, 1));
        assert!(!lists("", 0, 0));
        assert!(!lists("3:7:9,x:y", 3, 7));
    }

    #[test]
    fn rate_starts_with_a_ten_second_window_then_tracks_the_average() {
        let q = Quota::default();
        let t0 = 1_000_000;
        q.record(100_000, t0);
        // 100 kB over the minimum window of 10 s.
        assert!((q.rate(t0) - 10_000.0).abs() < 1.0);
        assert!(!q.exceeded(10_000, t0));
        assert!(q.exceeded(9_999, t0));
        // One sample a second for 20 s at 50 kB/s: the rate is 50 kB/s.
        for s in 1..=20 {
            q.record(50_000, t0 + s * 1000);
        }
        let r = q.rate(t0 + 20_000);
        assert!((r - 55_000.0).abs() < 5_000.0, "{r}");
        // Samples older than the window are forgotten.
        assert_eq!(q.rate(t0 + 60_000), 0.0);
    }
}
