//! Consumer lag, evaluated the way Burrow does it: from a short history per partition rather
//! than from one number.
//!
//! # What is sampled
//!
//! For every group and every partition it has committed an offset for, the broker keeps a
//! sliding window of the last [`WINDOW`] observations. An observation records the committed
//! offset, the partition's log end offset, the lag (end − committed, never negative) and when
//! it was taken. A sampler ([`spawn_sampler`]) looks at the coordinator every second and adds
//! an observation when the committed offset changed, or when [`SAMPLE_EVERY_MS`] passed since
//! the previous one — so a busy consumer fills its window quickly and an idle one still ages.
//!
//! # The rules, checked in this order (the first that matches decides)
//!
//! * **ERROR** — the partition's log cannot be read: the topic or partition is gone, or its
//!   log is offline. Nothing else about it can be judged.
//! * **OK** — the current lag is zero. A consumer that has caught up is fine however long ago
//!   it last committed.
//! * **STOPPED** — lag is positive and the group has no members: nobody will consume it.
//! * **OK** — some observation in the window had zero lag: the consumer caught up recently,
//!   so new lag is not judged until those observations have left the window (a consumer that
//!   was idle and quiet for an hour is not blamed for the first record that arrives).
//! * **STOPPED** — the window is full and the latest commit is older than the time span the
//!   window covers: commits stopped while the window kept aging (Burrow's "stopped" rule).
//! * **STALLED** — lag is positive, the window is full, and the committed offset is the same in
//!   every sample: members are there (perhaps committing the same offset again and again) but
//!   do not make progress.
//! * **WARNING** — the window is full, the committed offset moved, yet the lag never shrank
//!   from one sample to the next and ended higher than it started: the consumer works but
//!   falls behind.
//! * **OK** — anything else.
//!
//! A group's status is the worst status of its partitions ([`Status`] is ordered by
//! severity); a group without committed offsets is OK. The numeric value of a status (0 OK,
//! 1 WARNING, 2 STALLED, 3 STOPPED, 4 ERROR) is what `/metrics` exports.
//!
//! [`LagTracker`] and [`evaluate_partition`] are pure (the caller passes the time), so the
//! rules are unit-tested without a broker; [`inputs`] and [`spawn_sampler`] read the live
//! coordinator and partition logs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use sluice_group::GroupOverview;

use crate::groups::{now_ms, OFFSETS_TOPIC};
use crate::partition::TopicRef;
use crate::state::Broker;

/// Observations kept per partition.
pub const WINDOW: usize = 10;
/// An observation is added at least this often (and whenever the committed offset moves).
pub const SAMPLE_EVERY_MS: i64 = 5_000;
/// How often the sampler looks at the coordinator.
const POLL: Duration = Duration::from_secs(1);

/// Health of a partition or group, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Keeping up.
    Ok,
    /// Consuming, but lag keeps growing.
    Warning,
    /// Members present, committed offset not moving while there is lag.
    Stalled,
    /// Nobody consumes (no members, or commits stopped) while there is lag.
    Stopped,
    /// The partition cannot be read.
    Error,
}

impl Status {
    /// The value exported as `sluice_group_status`.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Stalled => 2,
            Status::Stopped => 3,
            Status::Error => 4,
        }
    }

    /// Upper-case name (as in the JSON API).
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Stalled => "STALLED",
            Status::Stopped => "STOPPED",
            Status::Error => "ERROR",
        }
    }
}

/// One observation of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Committed offset.
    pub committed: i64,
    /// Log end offset.
    pub end: i64,
    /// `end - committed`, at least 0.
    pub lag: i64,
    /// When it was taken (ms since the epoch).
    pub at_ms: i64,
}

impl Sample {
    /// An observation at `at_ms`.
    pub fn new(committed: i64, end: i64, at_ms: i64) -> Sample {
        Sample {
            committed,
            end,
            lag: end.saturating_sub(committed).max(0),
            at_ms,
        }
    }
}

/// What the evaluator knows about a partition right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInput {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset and its commit time, if the group committed one.
    pub committed: Option<(i64, i64)>,
    /// Log end offset; `None` when the partition is unknown or offline.
    pub end: Option<i64>,
}

/// Applies the rules of the module documentation to one partition.
///
/// `window` is oldest first; `current` is the live observation (already the last element of
/// `window` when the sampler just added it, which changes nothing); `last_commit_ms` is the
/// time of the latest commit; `has_members` whether the group has members.
pub fn evaluate_partition(
    window: &[Sample],
    current: Option<Sample>,
    last_commit_ms: i64,
    has_members: bool,
    now_ms: i64,
) -> Status {
    let Some(current) = current else {
        return Status::Error;
    };
    if current.lag == 0 {
        return Status::Ok;
    }
    if !has_members {
        return Status::Stopped;
    }
    let full = window.len() >= WINDOW;
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return Status::Ok;
    };
    if window.iter().any(|s| s.lag == 0) {
        return Status::Ok;
    }
    let span = last.at_ms.saturating_sub(first.at_ms);
    if full && span > 0 && now_ms.saturating_sub(last_commit_ms) > span {
        return Status::Stopped;
    }
    if full && window.iter().all(|s| s.committed == first.committed) {
        return Status::Stalled;
    }
    let growing = window.windows(2).all(|w| w[1].lag >= w[0].lag) && last.lag > first.lag;
    if full && growing && last.committed != first.committed {
        return Status::Warning;
    }
    Status::Ok
}

/// Per-partition result of [`LagTracker::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset (`None`: nothing committed).
    pub current_offset: Option<i64>,
    /// Log end offset (`None`: unknown/offline).
    pub log_end_offset: Option<i64>,
    /// Lag (`None` when either side is unknown).
    pub lag: Option<i64>,
    /// Status.
    pub status: Status,
}

/// A group's evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// Worst partition status (OK when there are none).
    pub status: Status,
    /// Sum of known lags.
    pub total_lag: i64,
    /// Per partition, sorted by topic and partition.
    pub partitions: Vec<PartitionLag>,
}

type Windows = HashMap<(String, i32), VecDeque<Sample>>;

/// Sliding windows of observations for every group and partition.
#[derive(Debug, Default)]
pub struct LagTracker {
    groups: HashMap<String, Windows>,
}

impl LagTracker {
    /// Records the live state of a group's partitions at `now_ms`: a sample is added when the
    /// committed offset changed or [`SAMPLE_EVERY_MS`] passed since the last one. Partitions
    /// not in `parts` (offsets deleted) lose their window.
    pub fn observe(&mut self, group: &str, parts: &[PartitionInput], now_ms: i64) {
        let windows = self.groups.entry(group.to_string()).or_default();
        windows.retain(|k, _| parts.iter().any(|p| p.topic == k.0 && p.partition == k.1));
        for p in parts {
            let (Some((committed, _)), Some(end)) = (p.committed, p.end) else {
                continue;
            };
            let w = windows.entry((p.topic.clone(), p.partition)).or_default();
            let due = match w.back() {
                None => true,
                Some(last) => {
                    last.committed != committed
                        || now_ms.saturating_sub(last.at_ms) >= SAMPLE_EVERY_MS
                }
            };
            if due {
                w.push_back(Sample::new(committed, end, now_ms));
                while w.len() > WINDOW {
                    w.pop_front();
                }
            }
        }
    }

    /// Forgets groups for which `keep` is false.
    pub fn retain_groups(&mut self, keep: impl Fn(&str) -> bool) {
        self.groups.retain(|g, _| keep(g));
    }

    /// The window of one partition, oldest first (empty if none).
    pub fn window(&self, group: &str, topic: &str, partition: i32) -> Vec<Sample> {
        self.groups
            .get(group)
            .and_then(|w| w.get(&(topic.to_string(), partition)))
            .map(|w| w.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Evaluates a group from its live partitions and the recorded windows.
    pub fn evaluate(
        &self,
        group: &str,
        has_members: bool,
        parts: &[PartitionInput],
        now_ms: i64,
    ) -> GroupLag {
        let mut partitions: Vec<PartitionLag> = parts
            .iter()
            .map(|p| {
                let lag = match (p.committed, p.end) {
                    (Some((c, _)), Some(e)) => Some(e.saturating_sub(c).max(0)),
                    _ => None,
                };
                let status = match (p.committed, p.end) {
                    (_, None) => Status::Error,
                    // Assigned but never committed: nothing to judge yet.
                    (None, Some(_)) => Status::Ok,
                    (Some((c, at)), Some(e)) => evaluate_partition(
                        &self.window(group, &p.topic, p.partition),
                        Some(Sample::new(c, e, now_ms)),
                        at,
                        has_members,
                        now_ms,
                    ),
                };
                PartitionLag {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    current_offset: p.committed.map(|(c, _)| c),
                    log_end_offset: p.end,
                    lag,
                    status,
                }
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        GroupLag {
            status: partitions
                .iter()
                .map(|p| p.status)
                .max()
                .unwrap_or(Status::Ok),
            total_lag: partitions.iter().filter_map(|p| p.lag).sum(),
            partitions,
        }
    }
}

/// The partitions of a group worth reporting: every committed offset and every assigned
/// partition, with the live log end offset.
pub fn inputs(broker: &Broker, group: &GroupOverview) -> Vec<PartitionInput> {
    let mut map: BTreeMap<(String, i32), Option<(i64, i64)>> = BTreeMap::new();
    for o in &group.offsets {
        map.insert(
            (o.topic.clone(), o.partition),
            Some((o.offset, o.commit_timestamp)),
        );
    }
    for m in &group.members {
        for (topic, parts) in &m.assignment {
            for p in parts {
                map.entry((topic.clone(), *p)).or_insert(None);
            }
        }
    }
    map.into_iter()
        .map(|((topic, partition), committed)| {
            // Lag is measured to what consumers can read: the high watermark.
            let end = broker
                .local_partition(TopicRef::Name(&topic), partition)
                .ok()
                .map(|h| h.high_watermark());
            PartitionInput {
                topic,
                partition,
                committed,
                end,
            }
        })
        .collect()
}

/// Shared lag state of a running broker (the tracker behind a short-held mutex).
#[derive(Debug, Default)]
pub struct LagMonitor {
    tracker: Mutex<LagTracker>,
}

impl LagMonitor {
    fn lock(&self) -> std::sync::MutexGuard<'_, LagTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Evaluates `group` now.
    pub fn evaluate(&self, broker: &Broker, group: &GroupOverview) -> GroupLag {
        let parts = inputs(broker, group);
        self.lock()
            .evaluate(&group.group_id, !group.members.is_empty(), &parts, now_ms())
    }

    /// Takes one round of observations of every group.
    pub fn sample(&self, broker: &Broker) {
        let groups = broker.groups.overview(None);
        let now = now_ms();
        let observed: Vec<(String, Vec<PartitionInput>)> = groups
            .iter()
            .map(|g| (g.group_id.clone(), inputs(broker, g)))
            .collect();
        let mut t = self.lock();
        for (g, parts) in &observed {
            t.observe(g, parts, now);
        }
        t.retain_groups(|g| observed.iter().any(|(id, _)| id == g));
    }
}

/// Loads persisted groups when the offsets topic exists (without creating it: a broker that
/// never saw a group request has no groups to report).
pub async fn load_groups(broker: &Arc<Broker>) {
    if broker.metadata().topics.contains_key(OFFSETS_TOPIC) {
        let _ = broker.groups.ready(broker).await;
    }
}

/// Starts the sampler: every second it records an observation round; it ends when the broker
/// is dropped.
pub fn spawn_sampler(broker: Weak<Broker>, monitor: Arc<LagMonitor>) {
    tokio::spawn(async move {
        loop {
            let Some(b) = broker.upgrade() else { return };
            load_groups(&b).await;
            monitor.sample(&b);
            drop(b);
            tokio::time::sleep(POLL).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(points: &[(i64, i64)]) -> Vec<Sample> {
        points
            .iter()
            .enumerate()
            .map(|(i, &(c, e))| Sample::new(c, e, 1_000 * i as i64))
            .collect()
    }

    fn last_of(w: &[Sample]) -> Option<Sample> {
        w.last().copied()
    }

    #[test]
    fn caught_up_is_ok_even_without_members() {
        let w = window(&[(10, 10); WINDOW]);
        assert_eq!(
            evaluate_partition(&w, last_of(&w), 0, false, 1_000_000),
            Status::Ok
        );
    }

    #[test]
    fn missing_partition_is_error() {
        assert_eq!(evaluate_partition(&[], None, 0, true, 0), Status::Error);
    }

    #[test]
    fn no_members_with_lag_is_stopped() {
        let w = window(&[(5, 10)]);
        assert_eq!(
            evaluate_partition(&w, last_of(&w), 0, false, 0),
            Status::Stopped
        );
        assert_eq!(evaluate_partition(&w, last_of(&w), 0, true, 0), Status::Ok);
    }

    #[test]
    fn unmoving_offset_over_full_window_is_stalled() {
        let w = window(&[(5, 10); WINDOW]);
        // Commits keep arriving (recent commit time) but the offset never moves.
        let now = w[WINDOW - 1].at_ms;
        assert_eq!(
            evaluate_partition(&w, last_of(&w), now, true, now),
            Status::Stalled
        );
        // Not yet a full window: no verdict.
        let short = &w[..WINDOW - 1];
        assert_eq!(
            evaluate_partition(short, last_of(short), now, true, now),
            Status::Ok
        );
    }

    #[test]
    fn old_last_commit_is_stopped() {
        let pts: Vec<(i64, i64)> = (0..WINDOW as i64).map(|i| (i, 100)).collect();
        let w = window(&pts);
        let span = w[WINDOW - 1].at_ms - w[0].at_ms;
        let last_commit = w[WINDOW - 1].at_ms;
        let now = last_commit + span + 1;
        assert_eq!(
            evaluate_partition(&w, last_of(&w), last_commit, true, now),
            Status::Stopped
        );
        let now = last_commit + span;
        assert_ne!(
            evaluate_partition(&w, last_of(&w), last_commit, true, now),
            Status::Stopped
        );
    }

    #[test]
    fn recently_caught_up_is_ok() {
        // Idle and caught up for a long time, then records arrive: no verdict until the
        // zero-lag observations leave the window.
        let mut pts = vec![(10, 10); WINDOW - 1];
        pts.push((10, 15));
        let w = window(&pts);
        let now = 10_000_000;
        assert_eq!(
            evaluate_partition(&w, last_of(&w), 0, true, now),
            Status::Ok
        );
        let w = window(&[(10, 15); WINDOW]);
        assert_eq!(
            evaluate_partition(&w, last_of(&w), 0, true, now),
            Status::Stopped
        );
    }

    #[test]
    fn growing_lag_while_moving_is_warning() {
        // committed moves by 1, end by 3 each sample: lag grows 2 per sample.
        let pts: Vec<(i64, i64)> = (0..WINDOW as i64).map(|i| (i, 10 + 3 * i)).collect();
        let w = window(&pts);
        let now = w[WINDOW - 1].at_ms;
        assert_eq!(
            evaluate_partition(&w, last_of(&w), now, true, now),
            Status::Warning
        );
    }

    #[test]
    fn shrinking_once_is_not_warning() {
        let mut pts: Vec<(i64, i64)> = (0..WINDOW as i64).map(|i| (i, 10 + 3 * i)).collect();
        pts[4] = (20, pts[4].1); // catches up once: lag dips
        let w = window(&pts);
        let now = w[WINDOW - 1].at_ms;
        assert_eq!(
            evaluate_partition(&w, last_of(&w), now, true, now),
            Status::Ok
        );
    }

    #[test]
    fn tracker_samples_on_change_and_interval() {
        let mut t = LagTracker::default();
        let part = |c: i64, e: i64| PartitionInput {
            topic: "t".into(),
            partition: 0,
            committed: Some((c, 0)),
            end: Some(e),
        };
        t.observe("g", &[part(1, 5)], 0);
        t.observe("g", &[part(1, 6)], 1_000); // same offset, too soon: skipped
        assert_eq!(t.window("g", "t", 0).len(), 1);
        t.observe("g", &[part(2, 6)], 1_500); // moved
        t.observe("g", &[part(2, 7)], 1_500 + SAMPLE_EVERY_MS); // interval elapsed
        let w = t.window("g", "t", 0);
        assert_eq!(w.len(), 3);
        assert_eq!(w[2].lag, 5);
        for i in 0..(3 * WINDOW as i64) {
            t.observe("g", &[part(10 + i, 100)], 100_000 + i);
        }
        assert_eq!(t.window("g", "t", 0).len(), WINDOW);
        // The partition disappears from the group's offsets: its window goes too.
        t.observe("g", &[], 200_000);
        assert!(t.window("g", "t", 0).is_empty());
        t.retain_groups(|_| false);
        assert!(t.groups.is_empty());
    }

    #[test]
    fn group_status_is_worst_partition_and_lag_sums() {
        let t = LagTracker::default();
        let parts = vec![
            PartitionInput {
                topic: "a".into(),
                partition: 1,
                committed: Some((3, 0)),
                end: Some(10),
            },
            PartitionInput {
                topic: "a".into(),
                partition: 0,
                committed: Some((10, 0)),
                end: Some(10),
            },
            PartitionInput {
                topic: "b".into(),
                partition: 0,
                committed: None,
                end: Some(4),
            },
        ];
        let g = t.evaluate("g", false, &parts, 0);
        assert_eq!(g.status, Status::Stopped);
        assert_eq!(g.total_lag, 7);
        assert_eq!(g.partitions[0].partition, 0);
        assert_eq!(g.partitions[0].status, Status::Ok);
        assert_eq!(g.partitions[1].lag, Some(7));
        assert_eq!(g.partitions[2].lag, None);
        let mut offline = parts.clone();
        offline[1].end = None;
        assert_eq!(t.evaluate("g", true, &offline, 0).status, Status::Error);
        assert_eq!(t.evaluate("g", true, &[], 0).status, Status::Ok);
    }

    #[test]
    fn status_codes_are_ordered() {
        let all = [
            Status::Ok,
            Status::Warning,
            Status::Stalled,
            Status::Stopped,
            Status::Error,
        ];
        for (i, s) in all.iter().enumerate() {
            assert_eq!(usize::from(s.code()), i);
        }
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Status::Stalled.name(), "STALLED");
    }
}
