//! The partition layer: one [`Partition`] per partition this broker hosts (its log, its role,
//! its leader epoch, its high watermark and the waiters parked on it), and the
//! [`PartitionTable`] that turns "topic, partition" into a usable partition or a Kafka error
//! code. Handlers never look partitions up any other way.
//!
//! Roles change only through the reconciler (`crate::reconcile`). On the leader the high
//! watermark is decided by its [`LeaderState`] (the pure replication state machine of
//! `sluice-replication`: follower positions, ISR, `min.insync.replicas`); on a follower it is
//! the leader's, learnt from fetch responses, capped at the local log end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sluice_controller::{Metadata, PartitionInfo, TopicConfig};
use sluice_replication::{Completion, IsrChange, LeaderState, ReplicationConfig};
use sluice_storage::{AppendInfo, Log, LogConfig, StorageError};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::codes;

/// What this broker is for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serves produce and fetch; owns the high watermark.
    Leader,
    /// Replicates from `leader` (its fetcher pulls from the leader's log).
    Follower {
        /// Node id of the leader.
        leader: i32,
    },
    /// Hosted here but no leader is assigned (metadata leader -1).
    None,
}

#[derive(Debug, Clone, Copy)]
struct RoleState {
    role: Role,
    leader_epoch: i32,
}

/// Why an operation on a partition failed.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// This broker is not the partition's leader.
    #[error("{topic}-{index}: this broker is not the leader ({role:?})")]
    NotLeader {
        /// Topic name.
        topic: String,
        /// Partition index.
        index: i32,
        /// Current role.
        role: Role,
    },
    /// The log refused the operation.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl PartitionError {
    /// The Kafka error code to answer with.
    pub fn code(&self) -> i16 {
        match self {
            PartitionError::NotLeader { .. } => codes::NOT_LEADER_OR_FOLLOWER,
            PartitionError::Storage(e) => codes::storage_error(e),
        }
    }
}

/// One partition hosted by this broker.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub index: i32,
    /// The log.
    pub log: Log,
    state: RwLock<RoleState>,
    high_watermark: AtomicI64,
    hw_changed: Notify,
    appended: Notify,
    leader: Mutex<Option<LeaderState>>,
    replicas: RwLock<ReplicaSet>,
    lag_time_max_ms: AtomicI64,
    /// Leader only: where the current leader epoch starts in the log; -1 otherwise.
    epoch_start: AtomicI64,
    /// Leader only: each follower's log start offset, from its fetches (the low watermark).
    follower_log_starts: Mutex<HashMap<i32, i64>>,
    low_watermark_changed: Notify,
    config: RwLock<Arc<TopicConfig>>,
}

/// The replicas of a partition as committed metadata lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaSet {
    /// All replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Partition epoch (bumped by every ISR or leader change).
    pub partition_epoch: i32,
}

impl ReplicaSet {
    /// From a metadata partition.
    pub fn of(p: &PartitionInfo) -> ReplicaSet {
        ReplicaSet {
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            partition_epoch: p.partition_epoch,
        }
    }

    /// A single replica (tests, and a partition with no metadata at hand).
    pub fn solo(node_id: i32) -> ReplicaSet {
        ReplicaSet {
            replicas: vec![node_id],
            isr: vec![node_id],
            partition_epoch: 0,
        }
    }
}

/// Milliseconds on a monotonic clock (the replication state machine's time).
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// The storage settings of a topic config.
pub fn log_config(tc: &TopicConfig) -> LogConfig {
    let pos = |v: i64| {
        if v > 0 && v < i64::MAX {
            Some(v as u64)
        } else {
            None
        }
    };
    LogConfig {
        segment_bytes: tc.segment_bytes.max(1) as u64,
        segment_ms: pos(tc.segment_ms),
        index_interval_bytes: tc.index_interval_bytes.max(1) as u32,
        segment_index_bytes: tc.segment_index_bytes.max(8) as u32,
        flush_messages: tc.flush_messages.and_then(pos),
        flush_ms: tc.flush_ms.and_then(pos),
    }
}

impl Partition {
    /// Wraps an open log. The high watermark starts at the log start offset; a leader takes
    /// up its replication state at once (`local_id` is this broker's node id).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: String,
        topic_id: Uuid,
        index: i32,
        log: Log,
        config: Arc<TopicConfig>,
        role: Role,
        leader_epoch: i32,
        local_id: i32,
        replicas: ReplicaSet,
        lag_time_max_ms: i64,
    ) -> Partition {
        let start = log.log_start_offset();
        let p = Partition {
            topic,
            topic_id,
            index,
            log,
            state: RwLock::new(RoleState {
                role: Role::None,
                leader_epoch,
            }),
            high_watermark: AtomicI64::new(start),
            hw_changed: Notify::new(),
            appended: Notify::new(),
            leader: Mutex::new(None),
            replicas: RwLock::new(replicas.clone()),
            lag_time_max_ms: AtomicI64::new(lag_time_max_ms),
            epoch_start: AtomicI64::new(-1),
            follower_log_starts: Mutex::new(HashMap::new()),
            low_watermark_changed: Notify::new(),
            config: RwLock::new(config),
        };
        if let Err(e) = p.set_role(role, leader_epoch, local_id, &replicas) {
            tracing::error!(topic = %p.topic, partition = p.index, "could not take role {role:?}: {e}");
        }
        p
    }

    fn lock_leader(&self) -> MutexGuard<'_, Option<LeaderState>> {
        self.leader.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn replication_config(&self) -> ReplicationConfig {
        ReplicationConfig {
            min_insync_replicas: usize::try_from(self.config().min_insync_replicas.max(1))
                .unwrap_or(1),
            replica_lag_time_max_ms: u64::try_from(
                self.lag_time_max_ms.load(Ordering::Relaxed).max(0),
            )
            .unwrap_or(0),
        }
    }

    fn read_state(&self) -> RoleState {
        *self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.read_state().role
    }

    /// Current leader epoch (from metadata).
    pub fn leader_epoch(&self) -> i32 {
        self.read_state().leader_epoch
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        self.role() == Role::Leader
    }

    /// The role check of every "act as leader" path: NOT_LEADER_OR_FOLLOWER unless leader.
    pub fn check_leader(&self) -> Result<(), i16> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(codes::NOT_LEADER_OR_FOLLOWER)
        }
    }

    /// KIP-320 fencing of a client's `current_leader_epoch` (-1 = not given): NONE, or
    /// UNKNOWN_LEADER_EPOCH when the client is ahead of us, FENCED_LEADER_EPOCH when behind.
    pub fn check_leader_epoch(&self, current: i32) -> i16 {
        let epoch = self.leader_epoch();
        if current < 0 || current == epoch {
            codes::NONE
        } else if current > epoch {
            codes::UNKNOWN_LEADER_EPOCH
        } else {
            codes::FENCED_LEADER_EPOCH
        }
    }

    /// Takes a new role and leader epoch (the reconciler's call). Becoming leader at a newer
    /// epoch records where that epoch starts in the log (KIP-101) and starts the replication
    /// state from the current high watermark; leaving leadership drops it. Blocking (may
    /// write the leader-epoch checkpoint).
    pub fn set_role(
        &self,
        role: Role,
        leader_epoch: i32,
        local_id: i32,
        replicas: &ReplicaSet,
    ) -> Result<(), StorageError> {
        *self.replicas.write().unwrap_or_else(|p| p.into_inner()) = replicas.clone();
        let mut leader = self.lock_leader();
        {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            s.role = role;
            s.leader_epoch = leader_epoch;
        }
        self.follower_log_starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.low_watermark_changed.notify_waiters();
        if role != Role::Leader {
            *leader = None;
            self.epoch_start.store(-1, Ordering::Release);
            return Ok(());
        }
        if self.log.latest_epoch().is_none_or(|e| e < leader_epoch) {
            self.log.assign_epoch(leader_epoch)?;
        }
        let log_end = self.log.log_end_offset();
        let epoch_start = self
            .log
            .end_offset_for_epoch(leader_epoch - 1)
            .ok()
            .flatten()
            .map_or(log_end, |(_, end)| end.min(log_end));
        let state = LeaderState::new(
            local_id,
            leader_epoch,
            replicas.partition_epoch,
            &replicas.replicas,
            &replicas.isr,
            epoch_start,
            log_end,
            self.high_watermark().min(log_end),
            self.replication_config(),
            mono_ms(),
        );
        let hw = state.high_watermark();
        self.epoch_start.store(epoch_start, Ordering::Release);
        *leader = Some(state);
        drop(leader);
        self.advance_high_watermark(hw);
        Ok(())
    }

    /// KIP-101/966: a new leader's high watermark may lag behind the start of its epoch
    /// until the followers have fetched; until then the end of the log is not known to be
    /// committed, and ListOffsets for the latest offset (or a timestamp at or past the last
    /// fetchable offset) answers OFFSET_NOT_AVAILABLE. `None` when that is not the case.
    pub fn offsets_not_available(&self) -> Option<i64> {
        let start = self.epoch_start.load(Ordering::Acquire);
        (start >= 0 && start > self.high_watermark()).then_some(start)
    }

    /// Committed metadata changed the ISR or replicas at the same leader epoch.
    pub fn update_replicas(&self, replicas: &ReplicaSet) {
        *self.replicas.write().unwrap_or_else(|p| p.into_inner()) = replicas.clone();
        let hw = self.lock_leader().as_mut().and_then(|l| {
            l.on_metadata(
                replicas.partition_epoch,
                &replicas.replicas,
                &replicas.isr,
                mono_ms(),
            )
        });
        if let Some(hw) = hw {
            self.advance_high_watermark(hw);
        }
    }

    /// Brokers that may join an ISR, with their broker epochs (KIP-903).
    pub fn set_eligible_brokers(&self, eligible: &std::collections::BTreeMap<i32, i64>) {
        if let Some(l) = self.lock_leader().as_mut() {
            l.set_eligible_brokers(eligible);
        }
    }

    fn refresh_replication_config(&self) {
        let cfg = self.replication_config();
        let hw = self.lock_leader().as_mut().and_then(|l| l.set_config(cfg));
        if let Some(hw) = hw {
            self.advance_high_watermark(hw);
        }
    }

    /// A follower fetched at `fetch_offset`: records its position, advances the high
    /// watermark if it can, and returns an ISR expansion to propose, if any. `None` when
    /// this broker does not lead the partition.
    pub fn on_follower_fetch(
        &self,
        replica: i32,
        broker_epoch: i64,
        fetch_offset: i64,
    ) -> Option<IsrChange> {
        let log_end = self.log.log_end_offset();
        let (hw, change) = {
            let mut l = self.lock_leader();
            let l = l.as_mut()?;
            l.on_follower_fetch(replica, broker_epoch, fetch_offset, log_end, mono_ms())
        };
        if let Some(hw) = hw {
            self.advance_high_watermark(hw);
        }
        change
    }

    /// A follower's fetch carried its log start offset (KIP-107's low watermark).
    pub fn record_follower_log_start(&self, replica: i32, log_start: i64) {
        let changed = self
            .follower_log_starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(replica, log_start)
            != Some(log_start);
        if changed {
            self.low_watermark_changed.notify_waiters();
        }
    }

    /// The low watermark: the smallest log start offset over this leader and the followers
    /// on `alive` brokers (a follower not heard from yet counts as -1).
    pub fn low_watermark(&self, alive: &std::collections::BTreeSet<i32>, local_id: i32) -> i64 {
        let starts = self
            .follower_log_starts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.replica_set()
            .replicas
            .iter()
            .filter(|r| **r != local_id && alive.contains(r))
            .map(|r| starts.get(r).copied().unwrap_or(-1))
            .fold(self.log.log_start_offset(), i64::min)
    }

    /// Waits until the low watermark reaches `target` (DeleteRecords on every live replica),
    /// leadership changes, or `deadline`. True when reached.
    pub async fn wait_low_watermark(
        &self,
        target: i64,
        alive: &std::collections::BTreeSet<i32>,
        local_id: i32,
        deadline: tokio::time::Instant,
    ) -> bool {
        loop {
            let changed = self.low_watermark_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !self.is_leader() {
                return false;
            }
            if self.low_watermark(alive, local_id) >= target {
                return true;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// The replicas committed metadata lists.
    pub fn replica_set(&self) -> ReplicaSet {
        self.replicas
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The periodic ISR check of a leader: an ISR shrink to propose, if any.
    pub fn poll_isr(&self) -> Option<IsrChange> {
        self.lock_leader().as_mut()?.poll(mono_ms())
    }

    /// The ISR change proposed and not yet seen in committed metadata, if any.
    pub fn pending_isr_change(&self) -> Option<IsrChange> {
        self.lock_leader().as_ref()?.pending().cloned()
    }

    /// Truncates the log to `offset` (a follower whose log diverged from its leader's) and
    /// caps the high watermark at the new log end.
    pub fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        self.log.truncate_to(offset)?;
        self.high_watermark
            .fetch_min(self.log.log_end_offset(), Ordering::AcqRel);
        Ok(())
    }

    /// The controller refused or lost the pending ISR change.
    pub fn isr_change_failed(&self) {
        if let Some(l) = self.lock_leader().as_mut() {
            l.on_alter_failed();
        }
    }

    /// acks=all admission: NOT_ENOUGH_REPLICAS when the ISR is below `min.insync.replicas`.
    pub fn check_enough_replicas(&self) -> Result<(), i16> {
        match self.lock_leader().as_ref() {
            Some(l) => l
                .check_enough_replicas()
                .map_err(|()| codes::NOT_ENOUGH_REPLICAS),
            None => Err(codes::NOT_LEADER_OR_FOLLOWER),
        }
    }

    /// acks=all completion of a write ending before `required_offset`: `None` while pending,
    /// else the code to answer (NONE, NOT_ENOUGH_REPLICAS_AFTER_APPEND, or
    /// NOT_LEADER_OR_FOLLOWER when leadership was lost meanwhile).
    pub fn completion(&self, required_offset: i64, leader_epoch: i32) -> Option<i16> {
        if self.leader_epoch() != leader_epoch {
            return Some(codes::NOT_LEADER_OR_FOLLOWER);
        }
        match self.lock_leader().as_ref() {
            None => Some(codes::NOT_LEADER_OR_FOLLOWER),
            Some(l) => match l.check_completion(required_offset) {
                Completion::Pending => None,
                Completion::Done => Some(codes::NONE),
                Completion::NotEnoughReplicasAfterAppend => {
                    Some(codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND)
                }
            },
        }
    }

    /// Waits until a write ending before `required` (appended at `leader_epoch`) is
    /// committed, i.e. the high watermark passed it, leadership changes, or `deadline`.
    /// Returns the code to answer: NONE, NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    /// NOT_LEADER_OR_FOLLOWER or REQUEST_TIMED_OUT.
    pub async fn wait_replicated(
        &self,
        required: i64,
        leader_epoch: i32,
        deadline: tokio::time::Instant,
    ) -> i16 {
        loop {
            let changed = self.high_watermark_changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(code) = self.completion(required, leader_epoch) {
                return code;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return self
                        .completion(required, leader_epoch)
                        .unwrap_or(codes::REQUEST_TIMED_OUT);
                }
            }
        }
    }

    /// ISR, maximal ISR and whether the partition is under-replicated / under min ISR (leader
    /// only).
    pub fn leader_view(&self) -> Option<(Vec<i32>, bool, bool)> {
        self.lock_leader()
            .as_ref()
            .map(|l| (l.isr().to_vec(), l.under_replicated(), l.under_min_isr()))
    }

    /// The high watermark: offsets below it are committed and visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Moves the high watermark forward to `to` (never back) and wakes the fetches parked on
    /// this partition. Returns whether it moved.
    pub fn advance_high_watermark(&self, to: i64) -> bool {
        let prev = self.high_watermark.fetch_max(to, Ordering::AcqRel);
        if to > prev {
            self.hw_changed.notify_waiters();
            true
        } else {
            false
        }
    }

    /// A future that completes at the next high-watermark change of this partition. Call
    /// `enable()` on it (or poll it) *before* reading, so a change between the read and the
    /// wait is not missed.
    pub fn high_watermark_changed(&self) -> Notified<'_> {
        self.hw_changed.notified()
    }

    /// A future that completes at the next append to this partition's log (what a
    /// follower's fetch parked at the leader waits for). Enable it before reading.
    pub fn appended(&self) -> Notified<'_> {
        self.appended.notified()
    }

    /// Wakes every fetch parked on this partition without moving the high watermark (the
    /// reconciler's call when the partition closes or changes role, so parked fetches look it
    /// up again and answer the new error at once instead of at their deadline).
    pub fn wake_waiters(&self) {
        self.hw_changed.notify_waiters();
        self.appended.notify_waiters();
    }

    /// Appends a batch as leader at the current leader epoch, then advances the high
    /// watermark. NOT_LEADER_OR_FOLLOWER (as [`PartitionError::NotLeader`]) when not leader.
    /// Blocking when the log's flush policy syncs.
    pub fn append_as_leader(
        &self,
        records: &sluice_storage::batch::Checked,
    ) -> Result<AppendInfo, PartitionError> {
        let s = self.read_state();
        if s.role != Role::Leader {
            return Err(PartitionError::NotLeader {
                topic: self.topic.clone(),
                index: self.index,
                role: s.role,
            });
        }
        let info = self.log.append_checked(records, s.leader_epoch)?;
        if !info.duplicate {
            self.appended.notify_waiters();
            let hw = self
                .lock_leader()
                .as_mut()
                .and_then(|l| l.on_local_append(self.log.log_end_offset()));
            if let Some(hw) = hw {
                self.advance_high_watermark(hw);
            }
        }
        Ok(info)
    }

    /// Appends batches fetched from `leader` at `leader_epoch`, byte for byte, if this broker
    /// still follows that leader at that epoch (checked under the role lock, so a role change
    /// never interleaves with the append). Then takes the leader's high watermark, capped at
    /// the local log end. Blocking when the log's flush policy syncs.
    pub fn append_as_follower(
        &self,
        records: &[u8],
        leader: i32,
        leader_epoch: i32,
        leader_high_watermark: i64,
    ) -> Result<AppendInfo, PartitionError> {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        if s.role != (Role::Follower { leader }) || s.leader_epoch != leader_epoch {
            return Err(PartitionError::NotLeader {
                topic: self.topic.clone(),
                index: self.index,
                role: s.role,
            });
        }
        let info = self.log.append_as_follower(records)?;
        drop(s);
        if info.record_count > 0 {
            self.appended.notify_waiters();
        }
        self.advance_high_watermark(leader_high_watermark.min(self.log.log_end_offset()));
        Ok(info)
    }

    /// Whether this broker follows `leader` at `leader_epoch`.
    pub fn follows(&self, leader: i32, leader_epoch: i32) -> bool {
        let s = self.read_state();
        s.role == (Role::Follower { leader }) && s.leader_epoch == leader_epoch
    }

    /// A cheap copy of the effective topic config.
    pub fn config(&self) -> Arc<TopicConfig> {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the effective topic config (and the log's storage settings).
    pub fn set_config(&self, tc: Arc<TopicConfig>) {
        self.log.set_config(log_config(&tc));
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = tc;
        self.refresh_replication_config();
    }
}

/// How a request names a topic.
#[derive(Debug, Clone, Copy)]
pub enum TopicRef<'a> {
    /// By name (most APIs, Produce/Fetch before v13).
    Name(&'a str),
    /// By topic id (Produce/Fetch from v13).
    Id(Uuid),
}

type Key = (String, i32);

/// The partitions hosted here: open ones, and those whose log failed to open (offline).
#[derive(Default)]
pub struct PartitionTable {
    online: RwLock<HashMap<Key, Arc<Partition>>>,
    offline: RwLock<HashMap<Key, String>>,
}

impl PartitionTable {
    fn read_online(&self) -> RwLockReadGuard<'_, HashMap<Key, Arc<Partition>>> {
        self.online.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_online(&self) -> RwLockWriteGuard<'_, HashMap<Key, Arc<Partition>>> {
        self.online.write().unwrap_or_else(|p| p.into_inner())
    }
    fn read_offline(&self) -> RwLockReadGuard<'_, HashMap<Key, String>> {
        self.offline.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_offline(&self) -> RwLockWriteGuard<'_, HashMap<Key, String>> {
        self.offline.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The open partition, if any.
    pub fn get(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.read_online().get(&(topic.to_string(), index)).cloned()
    }

    /// Whether the partition is hosted here but offline.
    pub fn is_offline(&self, topic: &str, index: i32) -> bool {
        self.read_offline()
            .contains_key(&(topic.to_string(), index))
    }

    /// Adds an open partition (clearing an offline mark).
    pub fn insert(&self, p: Arc<Partition>) {
        let key = (p.topic.clone(), p.index);
        self.write_offline().remove(&key);
        self.write_online().insert(key, p);
    }

    /// Marks a partition offline (its log could not be opened).
    pub fn mark_offline(&self, topic: &str, index: i32, reason: String) {
        let key = (topic.to_string(), index);
        self.write_online().remove(&key);
        self.write_offline().insert(key, reason);
    }

    /// Forgets a partition (open or offline); returns the open one.
    pub fn remove(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let key = (topic.to_string(), index);
        self.write_offline().remove(&key);
        self.write_online().remove(&key)
    }

    /// Every open partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.read_online().values().cloned().collect()
    }

    /// THE lookup: the hosted partition named by `topic`/`index`, whatever its role, or the
    /// code to answer: UNKNOWN_TOPIC_ID (no topic with that id), KAFKA_STORAGE_ERROR
    /// (hosted here but offline), NOT_LEADER_OR_FOLLOWER (exists in the cluster but not hosted
    /// here), UNKNOWN_TOPIC_OR_PARTITION (no such partition).
    pub fn lookup(
        &self,
        md: &Metadata,
        topic: TopicRef<'_>,
        index: i32,
    ) -> Result<Arc<Partition>, i16> {
        let (name, id) = match topic {
            TopicRef::Name(n) => (n, None),
            TopicRef::Id(id) => match md.topic_by_id(&id) {
                Some(t) => (t.name.as_str(), Some(id)),
                None => return Err(codes::UNKNOWN_TOPIC_ID),
            },
        };
        if let Some(p) = self.get(name, index) {
            if id.is_some_and(|id| id != p.topic_id) {
                return Err(codes::UNKNOWN_TOPIC_ID);
            }
            return Ok(p);
        }
        if self.is_offline(name, index) {
            return Err(codes::KAFKA_STORAGE_ERROR);
        }
        let in_cluster = md
            .topics
            .get(name)
            .is_some_and(|t| t.partitions.iter().any(|p| p.index == index));
        if in_cluster {
            Err(codes::NOT_LEADER_OR_FOLLOWER)
        } else {
            Err(codes::UNKNOWN_TOPIC_OR_PARTITION)
        }
    }

    /// [`PartitionTable::lookup`] plus the role check: the partition only if this broker
    /// leads it, else NOT_LEADER_OR_FOLLOWER.
    pub fn leader(
        &self,
        md: &Metadata,
        topic: TopicRef<'_>,
        index: i32,
    ) -> Result<Arc<Partition>, i16> {
        let p = self.lookup(md, topic, index)?;
        p.check_leader()?;
        Ok(p)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sluice_controller::{BrokerSettings, MetadataCommand, PartitionInfo};
    use sluice_storage::MemoryBackend;
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::path::Path;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    /// (index, leader, leader epoch, replicas) of a test partition.
    pub(crate) type P<'a> = (i32, i32, i32, &'a [i32]);

    /// Metadata with `(name, id, partitions)` topics.
    pub(crate) fn metadata_with(topics: &[(&str, Uuid, &[P<'_>])]) -> Metadata {
        let mut md = Metadata::default();
        // Brokers 1-3, registered unfenced (a nil incarnation registers as the single-node
        // version did), so the state machine keeps the leaders the tests name.
        for node_id in 1..=3 {
            md.apply(&MetadataCommand::RegisterBroker(
                sluice_controller::BrokerRegistration {
                    node_id,
                    incarnation_id: Uuid::nil(),
                    host: "127.0.0.1".into(),
                    port: 9092 + node_id,
                    rack: None,
                    inter_broker: None,
                },
            ))
            .expect("register broker");
        }
        for (name, id, parts) in topics {
            let partitions = parts
                .iter()
                .map(|(index, leader, epoch, replicas)| PartitionInfo {
                    index: *index,
                    leader: *leader,
                    leader_epoch: *epoch,
                    replicas: replicas.to_vec(),
                    isr: replicas.to_vec(),
                    partition_epoch: 0,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                })
                .collect();
            md.apply(&MetadataCommand::CreateTopic {
                name: name.to_string(),
                id: *id,
                partitions,
                configs: BTreeMap::new(),
                internal: false,
            })
            .expect("create topic");
        }
        md
    }

    fn open_log(topic: &str, index: i32) -> (Log, Arc<TopicConfig>) {
        let backend = Arc::new(MemoryBackend::new());
        let tc = Arc::new(sluice_controller::effective_topic_config(
            &BTreeMap::new(),
            &BrokerSettings::default(),
        ));
        let dir = Path::new("/mem").join(format!("{topic}-{index}"));
        let log = Log::open(backend, &dir, log_config(&tc)).expect("open log");
        (log, tc)
    }

    fn partition(topic: &str, id: Uuid, index: i32, role: Role) -> Arc<Partition> {
        let (log, tc) = open_log(topic, index);
        Arc::new(Partition::new(
            topic.to_string(),
            id,
            index,
            log,
            tc,
            role,
            0,
            1,
            ReplicaSet::solo(1),
            30_000,
        ))
    }

    use bytes::BytesMut;

    fn checked(b: BytesMut) -> sluice_storage::batch::Checked {
        sluice_storage::batch::Checked::new(b.freeze()).expect("a valid batch")
    }

    fn batch() -> BytesMut {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let r = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 1,
            key: None,
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            [r].iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
        buf
    }

    fn is_ready(f: Pin<&mut Notified<'_>>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(f.poll(&mut cx), Poll::Ready(()))
    }

    #[test]
    fn lookup_errors() {
        let id = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let md = metadata_with(&[(
            "t",
            id,
            &[(0, 1, 0, &[1]), (1, 1, 0, &[1]), (2, 2, 0, &[2])],
        )]);
        let table = PartitionTable::default();
        table.insert(partition("t", id, 0, Role::Leader));
        table.mark_offline("t", 1, "corrupt".into());

        assert!(table.lookup(&md, TopicRef::Name("t"), 0).is_ok());
        assert!(table.lookup(&md, TopicRef::Id(id), 0).is_ok());
        assert_eq!(
            table.lookup(&md, TopicRef::Name("t"), 1).err(),
            Some(codes::KAFKA_STORAGE_ERROR)
        );
        // In the cluster, hosted elsewhere.
        assert_eq!(
            table.lookup(&md, TopicRef::Name("t"), 2).err(),
            Some(codes::NOT_LEADER_OR_FOLLOWER)
        );
        assert_eq!(
            table.lookup(&md, TopicRef::Name("t"), 3).err(),
            Some(codes::UNKNOWN_TOPIC_OR_PARTITION)
        );
        assert_eq!(
            table.lookup(&md, TopicRef::Name("nope"), 0).err(),
            Some(codes::UNKNOWN_TOPIC_OR_PARTITION)
        );
        assert_eq!(
            table.lookup(&md, TopicRef::Id(other), 0).err(),
            Some(codes::UNKNOWN_TOPIC_ID)
        );
        table.remove("t", 1);
        assert_eq!(
            table.lookup(&md, TopicRef::Name("t"), 1).err(),
            Some(codes::NOT_LEADER_OR_FOLLOWER)
        );
    }

    #[test]
    fn role_checks() {
        let id = Uuid::from_u128(1);
        let md = metadata_with(&[("t", id, &[(0, 2, 3, &[1, 2])])]);
        let table = PartitionTable::default();
        let p = partition("t", id, 0, Role::Follower { leader: 2 });
        table.insert(p.clone());
        assert!(table.lookup(&md, TopicRef::Name("t"), 0).is_ok());
        assert_eq!(
            table.leader(&md, TopicRef::Name("t"), 0).err(),
            Some(codes::NOT_LEADER_OR_FOLLOWER)
        );
        let err = p
            .append_as_leader(&checked(batch()))
            .err()
            .map(|e| e.code());
        assert_eq!(err, Some(codes::NOT_LEADER_OR_FOLLOWER));
        assert_eq!(p.log.log_end_offset(), 0);

        p.set_role(Role::None, 4, 1, &ReplicaSet::solo(1))
            .expect("role");
        assert_eq!(p.check_leader(), Err(codes::NOT_LEADER_OR_FOLLOWER));
        p.set_role(Role::Leader, 5, 1, &ReplicaSet::solo(1))
            .expect("role");
        assert!(table.leader(&md, TopicRef::Name("t"), 0).is_ok());
        assert_eq!(p.leader_epoch(), 5);
        assert_eq!(p.check_leader_epoch(5), codes::NONE);
        assert_eq!(p.check_leader_epoch(-1), codes::NONE);
        assert_eq!(p.check_leader_epoch(4), codes::FENCED_LEADER_EPOCH);
        assert_eq!(p.check_leader_epoch(6), codes::UNKNOWN_LEADER_EPOCH);
        assert_eq!(p.log.latest_epoch(), Some(5));
    }

    #[test]
    fn leader_append_advances_high_watermark_and_wakes_only_its_waiters() {
        let id = Uuid::from_u128(1);
        let a = partition("t", id, 0, Role::Leader);
        let b = partition("t", id, 1, Role::Leader);
        assert_eq!(a.high_watermark(), 0);

        let wa = a.high_watermark_changed();
        let wb = b.high_watermark_changed();
        tokio::pin!(wa);
        tokio::pin!(wb);
        wa.as_mut().enable();
        wb.as_mut().enable();

        let info = a.append_as_leader(&checked(batch())).expect("append");
        assert_eq!(info.base_offset, 0);
        assert_eq!(a.high_watermark(), 1);
        assert_eq!(b.high_watermark(), 0);
        assert!(
            is_ready(wa.as_mut()),
            "waiter of the appended partition wakes"
        );
        assert!(!is_ready(wb.as_mut()), "waiter of another partition sleeps");

        // The high watermark never moves back, and an unchanged one wakes nobody.
        let wa2 = a.high_watermark_changed();
        tokio::pin!(wa2);
        wa2.as_mut().enable();
        assert!(!a.advance_high_watermark(0));
        assert!(!is_ready(wa2.as_mut()));
        assert_eq!(a.high_watermark(), 1);
    }

    #[test]
    fn follower_high_watermark_does_not_follow_its_log() {
        let (log, tc) = open_log("t", 0);
        log.append(batch(), 0).expect("append");
        log.append(batch(), 0).expect("append");
        let p = Partition::new(
            "t".into(),
            Uuid::from_u128(1),
            0,
            log,
            tc,
            Role::Follower { leader: 9 },
            0,
            1,
            ReplicaSet::solo(1),
            30_000,
        );
        assert_eq!(p.high_watermark(), 0);
        // Promoted: the leader's high watermark follows its log.
        p.set_role(Role::Leader, 1, 1, &ReplicaSet::solo(1))
            .expect("role");
        assert_eq!(p.high_watermark(), 2);
    }

    fn three(isr: &[i32]) -> ReplicaSet {
        ReplicaSet {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            partition_epoch: 0,
        }
    }

    #[test]
    fn replicated_leader_commits_what_the_isr_has_fetched() {
        let (log, tc) = open_log("t", 0);
        let mut cfg = (*tc).clone();
        cfg.min_insync_replicas = 2;
        let p = Partition::new(
            "t".into(),
            Uuid::from_u128(1),
            0,
            log,
            Arc::new(cfg),
            Role::Leader,
            3,
            1,
            three(&[1, 2, 3]),
            30_000,
        );
        let eligible: std::collections::BTreeMap<i32, i64> =
            [(1, 10), (2, 20), (3, 30)].into_iter().collect();
        p.set_eligible_brokers(&eligible);
        assert_eq!(p.check_enough_replicas(), Ok(()));
        let info = p.append_as_leader(&checked(batch())).expect("append");
        let required = info.last_offset + 1;
        // Nothing is committed until every ISR member has fetched past the write.
        assert_eq!(p.high_watermark(), 0);
        assert_eq!(p.completion(required, 3), None);
        assert!(p.on_follower_fetch(2, 20, 1).is_none());
        assert_eq!(p.high_watermark(), 0);
        assert!(p.on_follower_fetch(3, 30, 1).is_none());
        assert_eq!(p.high_watermark(), 1);
        assert_eq!(p.completion(required, 3), Some(codes::NONE));
        // Another epoch's completion answers NOT_LEADER_OR_FOLLOWER.
        assert_eq!(
            p.completion(required, 2),
            Some(codes::NOT_LEADER_OR_FOLLOWER)
        );
        // The ISR shrinks to the leader: acks=all is refused before the append.
        p.update_replicas(&ReplicaSet {
            replicas: vec![1, 2, 3],
            isr: vec![1],
            partition_epoch: 1,
        });
        assert_eq!(p.check_enough_replicas(), Err(codes::NOT_ENOUGH_REPLICAS));
        // Stepping down: no completion is ever answered NONE again.
        p.set_role(Role::Follower { leader: 2 }, 4, 1, &three(&[2, 3]))
            .expect("role");
        assert_eq!(
            p.completion(required, 4),
            Some(codes::NOT_LEADER_OR_FOLLOWER)
        );
        assert_eq!(
            p.check_enough_replicas(),
            Err(codes::NOT_LEADER_OR_FOLLOWER)
        );
    }

    #[test]
    fn follower_appends_only_for_its_leader_and_epoch() {
        let (leader_log, _) = open_log("t", 0);
        leader_log.append(batch(), 5).expect("append");
        leader_log.append(batch(), 5).expect("append");
        let bytes = leader_log.read(0, usize::MAX, i64::MAX).expect("read").data;
        let (log, tc) = open_log("t", 1);
        let p = Partition::new(
            "t".into(),
            Uuid::from_u128(1),
            1,
            log,
            tc,
            Role::Follower { leader: 2 },
            5,
            1,
            three(&[1, 2, 3]),
            30_000,
        );
        let wrong_leader = p.append_as_follower(&bytes, 3, 5, 2);
        assert_eq!(
            wrong_leader.err().map(|e| e.code()),
            Some(codes::NOT_LEADER_OR_FOLLOWER)
        );
        assert!(
            p.append_as_follower(&bytes, 2, 4, 2).is_err(),
            "stale epoch"
        );
        assert_eq!(p.log.log_end_offset(), 0);
        p.append_as_follower(&bytes, 2, 5, 1).expect("append");
        assert_eq!(p.log.log_end_offset(), 2);
        // The follower takes the leader's high watermark, capped at its own log end.
        assert_eq!(p.high_watermark(), 1);
        p.append_as_follower(&[], 2, 5, 99).expect("empty");
        assert_eq!(p.high_watermark(), 2);
        // Truncation caps it again.
        p.truncate_to(1).expect("truncate");
        assert_eq!((p.log.log_end_offset(), p.high_watermark()), (1, 1));
    }
}
