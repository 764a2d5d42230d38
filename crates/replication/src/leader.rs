//! [`LeaderState`]: the leader's view of one partition's replication.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Completion, IsrChange, ReplicationConfig};

/// Deliberate bugs for the simulation to catch (tests only).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bug {
    /// Correct behaviour.
    None,
    /// The hw is the leader's log end alone.
    HwIsLogEnd,
    /// The hw ignores members a pending expansion adds (KIP-497's maximal ISR).
    HwOverCommittedIsr,
    /// A follower joins once it reaches the hw, even below the leader epoch's start.
    ExpandAtHwOnly,
}

/// What the leader knows about one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follower {
    /// Log end offset from its last fetch; -1 until it fetched from this leader.
    log_end: i64,
    /// The last time it was known to be caught up with the leader.
    last_caught_up_ms: u64,
    /// The leader's log end at its previous fetch; -1 before the first.
    last_fetch_leader_end: i64,
    /// The time of its previous fetch.
    last_fetch_ms: u64,
    /// The broker epoch its last fetch carried (-1 = none).
    broker_epoch: i64,
}

impl Follower {
    fn new(now_ms: u64) -> Follower {
        Follower {
            log_end: -1,
            last_caught_up_ms: now_ms,
            last_fetch_leader_end: -1,
            last_fetch_ms: 0,
            broker_epoch: -1,
        }
    }
}

/// The leader's replication state for one partition during one leader epoch.
///
/// Create it with [`LeaderState::new`] when the broker becomes leader, feed it the
/// leader's appends, the followers' fetches, committed metadata and a periodic
/// [`poll`](LeaderState::poll); drop it when leadership ends (a new leader epoch means a
/// new `LeaderState`).
#[derive(Debug, Clone)]
pub struct LeaderState {
    local_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    epoch_start_offset: i64,
    leader_log_end: i64,
    high_watermark: i64,
    config: ReplicationConfig,
    followers: BTreeMap<i32, Follower>,
    /// Eligible brokers and their broker epochs (KIP-903); empty until first set.
    eligible: BTreeMap<i32, i64>,
    pending: Option<IsrChange>,
    /// Test knob: a deliberate bug the simulation must catch.
    #[cfg(test)]
    pub(crate) bug: Bug,
}

impl LeaderState {
    /// Becoming leader at `leader_epoch`. `epoch_start_offset` = the leader's log end
    /// offset when it took this epoch. `high_watermark` = the hw it had as follower (never
    /// goes backwards from here). Followers start with unknown log end offset (-1) and
    /// `last_caught_up = now_ms` (Kafka gives them the lag time to catch up).
    ///
    /// No follower can join the ISR until [`set_eligible_brokers`](Self::set_eligible_brokers)
    /// has been called.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        local_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        epoch_start_offset: i64,
        leader_log_end: i64,
        high_watermark: i64,
        config: ReplicationConfig,
        now_ms: u64,
    ) -> LeaderState {
        let mut s = LeaderState {
            local_id,
            leader_epoch,
            partition_epoch,
            replicas: Vec::new(),
            isr: Vec::new(),
            epoch_start_offset,
            leader_log_end,
            high_watermark: high_watermark.min(leader_log_end).max(0),
            config,
            followers: BTreeMap::new(),
            eligible: BTreeMap::new(),
            pending: None,
            #[cfg(test)]
            bug: Bug::None,
        };
        s.set_membership(replicas, isr, now_ms);
        s.maybe_advance_hw();
        s
    }

    /// Replaces replicas and ISR, keeping follower state of replicas that stay.
    fn set_membership(&mut self, replicas: &[i32], isr: &[i32], now_ms: u64) {
        self.replicas = dedup(replicas);
        self.isr = dedup(isr);
        self.followers.retain(|id, _| replicas.contains(id));
        for r in &self.replicas {
            if *r != self.local_id {
                self.followers
                    .entry(*r)
                    .or_insert_with(|| Follower::new(now_ms));
            }
        }
    }

    /// Committed metadata for the same leader epoch changed (ISR, partition epoch,
    /// replicas). Metadata older than what the leader holds is ignored. Clears a pending
    /// [`IsrChange`] once the committed partition epoch is at least the pending one's base
    /// + 1 (or the committed ISR is the proposed one). Returns the new hw if it moved.
    pub fn on_metadata(
        &mut self,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        now_ms: u64,
    ) -> Option<i64> {
        if partition_epoch < self.partition_epoch {
            return None;
        }
        self.partition_epoch = partition_epoch;
        self.set_membership(replicas, isr, now_ms);
        let done = self.pending.as_ref().is_some_and(|p| {
            partition_epoch > p.partition_epoch || same_members(&p.new_isr, &self.isr)
        });
        if done {
            self.pending = None;
        }
        self.maybe_advance_hw()
    }

    /// Broker epochs of eligible (registered, unfenced, not shutting down) brokers, from
    /// metadata. A follower may join the ISR only if its fetch carried the broker epoch
    /// listed here (KIP-903); a fetch without one (`-1`, Fetch < v15) only needs the
    /// broker to be listed.
    pub fn set_eligible_brokers(&mut self, eligible: &BTreeMap<i32, i64>) {
        self.eligible = eligible.clone();
    }

    /// Changes the partition's settings. Returns the new hw if it moved (a lower
    /// `min.insync.replicas` can release it).
    pub fn set_config(&mut self, config: ReplicationConfig) -> Option<i64> {
        self.config = config;
        self.maybe_advance_hw()
    }

    /// The leader appended; its log end is now `leader_log_end`. Returns the new hw if it
    /// moved.
    pub fn on_local_append(&mut self, leader_log_end: i64) -> Option<i64> {
        self.leader_log_end = self.leader_log_end.max(leader_log_end);
        self.maybe_advance_hw()
    }

    /// A follower fetched at `fetch_offset` (= its log end offset) carrying
    /// `broker_epoch`, while the leader's log end is `leader_log_end`.
    ///
    /// Call it only for fetches that passed the diverging-epoch check (a diverging fetch
    /// says nothing about the follower's log end). Fetches from non-replicas and fetch
    /// offsets beyond the leader's log end are ignored.
    ///
    /// Updates the follower's log end and last caught-up time (Kafka's rule: caught up now
    /// if `fetch_offset >= leader_log_end`; else caught up at the previous fetch's time if
    /// `fetch_offset >=` the leader log end at that previous fetch). Returns the new hw if
    /// it moved, and an ISR expansion to propose when the follower is not in the ISR, is
    /// eligible and has caught up to `max(hw, epoch_start_offset)`, and no change is
    /// pending (the expansion then becomes the pending change).
    pub fn on_follower_fetch(
        &mut self,
        replica: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        leader_log_end: i64,
        now_ms: u64,
    ) -> (Option<i64>, Option<IsrChange>) {
        self.leader_log_end = self.leader_log_end.max(leader_log_end);
        let leader_end = self.leader_log_end;
        let Some(f) = self.followers.get_mut(&replica) else {
            return (None, None);
        };
        if fetch_offset < 0 || fetch_offset > leader_end {
            return (None, None);
        }
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if f.last_fetch_leader_end >= 0 && fetch_offset >= f.last_fetch_leader_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_leader_end = leader_end;
        f.last_fetch_ms = now_ms;
        f.log_end = fetch_offset;
        f.broker_epoch = broker_epoch;
        let hw = self.maybe_advance_hw();
        (hw, self.maybe_expand(replica))
    }

    /// Proposes adding `replica` to the ISR if it qualifies.
    fn maybe_expand(&mut self, replica: i32) -> Option<IsrChange> {
        if self.pending.is_some() || self.isr.contains(&replica) {
            return None;
        }
        let f = self.followers.get(&replica)?;
        let epoch_ok = match self.eligible.get(&replica) {
            Some(listed) => f.broker_epoch == -1 || f.broker_epoch == *listed,
            None => false,
        };
        #[cfg(test)]
        let needed = if self.bug == Bug::ExpandAtHwOnly {
            self.high_watermark
        } else {
            self.high_watermark.max(self.epoch_start_offset)
        };
        #[cfg(not(test))]
        let needed = self.high_watermark.max(self.epoch_start_offset);
        if !epoch_ok || f.log_end < needed {
            return None;
        }
        let mut new_isr = self.isr.clone();
        new_isr.push(replica);
        self.propose(new_isr)
    }

    fn propose(&mut self, new_isr: Vec<i32>) -> Option<IsrChange> {
        let change = IsrChange {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        };
        self.pending = Some(change.clone());
        Some(change)
    }

    /// Periodic check (call it every ~`replica_lag_time_max_ms / 2`): ISR members other
    /// than the leader whose last caught-up time is older than `replica_lag_time_max_ms`
    /// are shrunk out. Only when no change is pending; never below the leader alone. The
    /// returned change becomes the pending one.
    pub fn poll(&mut self, now_ms: u64) -> Option<IsrChange> {
        if self.pending.is_some() {
            return None;
        }
        let lag = self.config.replica_lag_time_max_ms;
        let out: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.local_id)
            .filter(|r| match self.followers.get(r) {
                Some(f) => now_ms.saturating_sub(f.last_caught_up_ms) > lag,
                // An ISR member that is not a replica any more.
                None => true,
            })
            .collect();
        if out.is_empty() {
            return None;
        }
        let mut new_isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| !out.contains(r))
            .collect();
        if new_isr.is_empty() {
            new_isr.push(self.local_id);
        }
        if same_members(&new_isr, &self.isr) {
            return None;
        }
        self.propose(new_isr)
    }

    /// The controller refused or failed the pending change: forget it so it can be
    /// proposed again (by the next fetch or [`poll`](Self::poll)).
    ///
    /// Call it only when the change is known not to be applied (INELIGIBLE_REPLICA,
    /// OPERATION_NOT_ATTEMPTED), as Kafka does. After a timeout, INVALID_UPDATE_VERSION,
    /// FENCED_LEADER_EPOCH or NOT_CONTROLLER an earlier try may have been applied: keep the
    /// pending change (resend it after a timeout) until [`on_metadata`](Self::on_metadata)
    /// brings a newer partition epoch — forgetting it there would let the hw pass a member
    /// the controller already added.
    pub fn on_alter_failed(&mut self) {
        self.pending = None;
    }

    /// Recomputes the hw; returns it if it moved.
    fn maybe_advance_hw(&mut self) -> Option<i64> {
        #[cfg(test)]
        if self.bug == Bug::HwIsLogEnd {
            if self.leader_log_end > self.high_watermark {
                self.high_watermark = self.leader_log_end;
                return Some(self.high_watermark);
            }
            return None;
        }
        if self.isr.len() < self.config.min_insync_replicas {
            return None;
        }
        let mut hw = self.leader_log_end;
        #[cfg(test)]
        let members = if self.bug == Bug::HwOverCommittedIsr {
            self.isr.clone()
        } else {
            self.maximal_isr()
        };
        #[cfg(not(test))]
        let members = self.maximal_isr();
        for r in members {
            if r == self.local_id {
                continue;
            }
            let end = self.followers.get(&r).map_or(-1, |f| f.log_end);
            hw = hw.min(end);
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            Some(hw)
        } else {
            None
        }
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// The committed ISR plus the members a pending change adds (KIP-497).
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut out = self.isr.clone();
        if let Some(p) = &self.pending {
            for r in &p.new_isr {
                if !out.contains(r) {
                    out.push(*r);
                }
            }
        }
        out
    }

    /// The ISR change sent to the controller and not yet answered.
    pub fn pending(&self) -> Option<&IsrChange> {
        self.pending.as_ref()
    }

    /// acks=all admission before the append: `Err(())` when the committed ISR has fewer
    /// than `min.insync.replicas` members (answer NOT_ENOUGH_REPLICAS, error code 19).
    #[allow(clippy::result_unit_err)]
    pub fn check_enough_replicas(&self) -> Result<(), ()> {
        if self.isr.len() < self.config.min_insync_replicas {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Kafka's completion check for an acks=all produce ending at `required_offset - 1`:
    /// `Done` once hw >= `required_offset`, or `NotEnoughReplicasAfterAppend` instead when
    /// the maximal ISR then has fewer than `min.insync.replicas` members; `Pending`
    /// before.
    pub fn check_completion(&self, required_offset: i64) -> Completion {
        if self.high_watermark < required_offset {
            Completion::Pending
        } else if self.maximal_isr().len() < self.config.min_insync_replicas {
            Completion::NotEnoughReplicasAfterAppend
        } else {
            Completion::Done
        }
    }

    /// A follower's log end offset as of its last fetch (-1 = not fetched yet); `None`
    /// for the leader itself and non-replicas.
    pub fn follower_log_end(&self, replica: i32) -> Option<i64> {
        self.followers.get(&replica).map(|f| f.log_end)
    }

    /// Some replica is not in the ISR.
    pub fn under_replicated(&self) -> bool {
        self.replicas.iter().any(|r| !self.isr.contains(r))
    }

    /// The committed ISR is smaller than `min.insync.replicas`.
    pub fn under_min_isr(&self) -> bool {
        self.isr.len() < self.config.min_insync_replicas
    }

    /// The leader epoch this state belongs to.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The partition epoch of the committed metadata.
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// The log end offset at which this leader epoch started.
    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    /// The leader's log end as last reported.
    pub fn leader_log_end(&self) -> i64 {
        self.leader_log_end
    }

    /// The partition's settings.
    pub fn config(&self) -> ReplicationConfig {
        self.config
    }
}

fn dedup(ids: &[i32]) -> Vec<i32> {
    let mut seen = BTreeSet::new();
    ids.iter().copied().filter(|r| seen.insert(*r)).collect()
}

fn same_members(a: &[i32], b: &[i32]) -> bool {
    let a: BTreeSet<i32> = a.iter().copied().collect();
    let b: BTreeSet<i32> = b.iter().copied().collect();
    a == b
}

#[cfg(test)]
mod tests;
