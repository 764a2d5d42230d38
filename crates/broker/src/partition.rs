//! The partition layer: one [`Partition`] per partition this broker hosts (its log, its role,
//! its leader epoch, its high watermark and the waiters parked on it), and the
//! [`PartitionTable`] that turns "topic, partition" into a usable partition or a Kafka error
//! code. Handlers never look partitions up any other way.
//!
//! Roles change only through the reconciler (`crate::reconcile`); the high watermark only
//! through [`Partition::maybe_advance_high_watermark`] (one node: the leader's log end offset)
//! or [`Partition::advance_high_watermark`] (replication, later: from follower positions).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::BytesMut;
use sluice_controller::{Metadata, TopicConfig};
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
    /// Replicates from `leader` (replication itself is part 2).
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
    config: RwLock<Arc<TopicConfig>>,
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
    /// Wraps an open log. The high watermark starts at the log start offset and, for a leader,
    /// is advanced at once (a leader's committed data is everything in its log on one node).
    pub fn new(
        topic: String,
        topic_id: Uuid,
        index: i32,
        log: Log,
        config: Arc<TopicConfig>,
        role: Role,
        leader_epoch: i32,
    ) -> Partition {
        let start = log.log_start_offset();
        let p = Partition {
            topic,
            topic_id,
            index,
            log,
            state: RwLock::new(RoleState { role, leader_epoch }),
            high_watermark: AtomicI64::new(start),
            hw_changed: Notify::new(),
            config: RwLock::new(config),
        };
        p.maybe_advance_high_watermark();
        p
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
    /// epoch records where that epoch starts in the log (KIP-101) and advances the high
    /// watermark. Blocking (may write the leader-epoch checkpoint).
    pub fn set_role(&self, role: Role, leader_epoch: i32) -> Result<(), StorageError> {
        {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            s.role = role;
            s.leader_epoch = leader_epoch;
        }
        if role == Role::Leader {
            if self.log.latest_epoch().is_none_or(|e| e < leader_epoch) {
                self.log.assign_epoch(leader_epoch)?;
            }
            self.maybe_advance_high_watermark();
        }
        Ok(())
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

    /// The one place a leader's high watermark follows its log: on one node every appended
    /// record is committed, so the high watermark becomes the log end offset. (Replication
    /// will instead advance it from the in-sync followers' fetch positions.) No-op unless
    /// leader.
    pub fn maybe_advance_high_watermark(&self) {
        if self.is_leader() {
            self.advance_high_watermark(self.log.log_end_offset());
        }
    }

    /// A future that completes at the next high-watermark change of this partition. Call
    /// `enable()` on it (or poll it) *before* reading, so a change between the read and the
    /// wait is not missed.
    pub fn high_watermark_changed(&self) -> Notified<'_> {
        self.hw_changed.notified()
    }

    /// Wakes every fetch parked on this partition without moving the high watermark (the
    /// reconciler's call when the partition closes or changes role, so parked fetches look it
    /// up again and answer the new error at once instead of at their deadline).
    pub fn wake_waiters(&self) {
        self.hw_changed.notify_waiters();
    }

    /// Appends a batch as leader at the current leader epoch, then advances the high
    /// watermark. NOT_LEADER_OR_FOLLOWER (as [`PartitionError::NotLeader`]) when not leader.
    /// Blocking when the log's flush policy syncs.
    pub fn append_as_leader(&self, records: BytesMut) -> Result<AppendInfo, PartitionError> {
        let s = self.read_state();
        if s.role != Role::Leader {
            return Err(PartitionError::NotLeader {
                topic: self.topic.clone(),
                index: self.index,
                role: s.role,
            });
        }
        let info = self.log.append(records, s.leader_epoch)?;
        self.maybe_advance_high_watermark();
        Ok(info)
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
        ))
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
        let err = p.append_as_leader(batch()).err().map(|e| e.code());
        assert_eq!(err, Some(codes::NOT_LEADER_OR_FOLLOWER));
        assert_eq!(p.log.log_end_offset(), 0);

        p.set_role(Role::None, 4).expect("role");
        assert_eq!(p.check_leader(), Err(codes::NOT_LEADER_OR_FOLLOWER));
        p.set_role(Role::Leader, 5).expect("role");
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

        let info = a.append_as_leader(batch()).expect("append");
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
        a.maybe_advance_high_watermark();
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
        );
        assert_eq!(p.high_watermark(), 0);
        p.maybe_advance_high_watermark();
        assert_eq!(p.high_watermark(), 0);
        // Promoted: the leader's high watermark follows its log.
        p.set_role(Role::Leader, 1).expect("role");
        assert_eq!(p.high_watermark(), 2);
    }
}
