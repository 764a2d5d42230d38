//! The reconciler: the one place where committed metadata becomes local partition state.
//!
//! Given the previously applied and the newly committed [`Metadata`] and this broker's node
//! id, [`plan`] decides (purely) what changes here: open partitions newly assigned to this
//! node, change role/leader epoch of hosted ones, close those no longer assigned here, delete
//! the logs of deleted (or recreated) topics, and refresh topic configs. [`Reconciler::apply`]
//! carries the plan out on the [`PartitionTable`] and tells the group coordinator when a
//! `__consumer_offsets` partition becomes led here or stops being led here.
//!
//! Today `Broker::commit` calls it synchronously after each commit (so an admin request is
//! answered after its partitions exist). A replicated metadata log will feed it from a
//! `tokio::sync::watch` of committed metadata instead ([`spawn_watch`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sluice_controller::{effective_topic_config, BrokerSettings, Metadata, PartitionInfo};
use sluice_storage::{Backend, Log, StorageError};
use uuid::Uuid;

use crate::groups::{Groups, OFFSETS_TOPIC};
use crate::partition::{log_config, Partition, PartitionTable, ReplicaSet, Role};

/// One local change decided by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Delete the partition's log: its topic was deleted (or recreated under a new id).
    Delete {
        /// Topic name.
        topic: String,
        /// Partition index.
        index: i32,
    },
    /// Close the partition and delete its log: a reassignment moved it off this node.
    Close {
        /// Topic name.
        topic: String,
        /// Partition index.
        index: i32,
    },
    /// Open the partition's log (creating it if needed) and take `role` at `leader_epoch`.
    Open {
        /// Topic name.
        topic: String,
        /// Topic id.
        topic_id: Uuid,
        /// Partition index.
        index: i32,
        /// Role to take.
        role: Role,
        /// Leader epoch.
        leader_epoch: i32,
    },
    /// A hosted partition's leader or leader epoch changed.
    SetRole {
        /// Topic name.
        topic: String,
        /// Partition index.
        index: i32,
        /// New role.
        role: Role,
        /// New leader epoch.
        leader_epoch: i32,
    },
    /// A hosted partition's ISR, replicas or partition epoch changed (same leader and epoch).
    UpdateReplicas {
        /// Topic name.
        topic: String,
        /// Partition index.
        index: i32,
    },
    /// A topic's config overrides changed.
    RefreshConfig {
        /// Topic name.
        topic: String,
    },
}

/// This node's role for a partition, from its metadata leader.
pub fn role_of(p: &PartitionInfo, node_id: i32) -> Role {
    if p.leader == node_id {
        Role::Leader
    } else if p.leader >= 0 {
        Role::Follower { leader: p.leader }
    } else {
        Role::None
    }
}

/// Partition `index` of `t`: partitions are stored in index order, so this is one slot
/// lookup (with a search as the fallback), never a scan per partition of a large topic.
pub fn partition_of(t: &sluice_controller::TopicInfo, index: i32) -> Option<&PartitionInfo> {
    usize::try_from(index)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .filter(|p| p.index == index)
        .or_else(|| t.partitions.iter().find(|p| p.index == index))
}

/// Whether `p` is assigned to (hosted by) `node_id`.
pub fn assigned_here(p: &PartitionInfo, node_id: i32) -> bool {
    p.leader == node_id || p.replicas.contains(&node_id)
}

/// Topics of `prev` that `next` no longer has under the same id (deleted, or recreated). Pure.
pub fn deleted_topics(prev: &Metadata, next: &Metadata) -> BTreeSet<String> {
    prev.topics
        .values()
        .filter(|old| next.topics.get(&old.name).is_none_or(|t| t.id != old.id))
        .map(|old| old.name.clone())
        .collect()
}

/// What changes locally when the metadata goes from `prev` to `next`: deletions and closes
/// first (so a topic deleted and recreated under the same name starts from an empty
/// directory), then opens, role changes and config refreshes. Pure.
pub fn plan(prev: &Metadata, next: &Metadata, node_id: i32) -> Vec<Change> {
    let mut removals = Vec::new();
    let mut rest = Vec::new();
    for old in prev.topics.values() {
        let new = next.topics.get(&old.name).filter(|t| t.id == old.id);
        for p in old.partitions.iter().filter(|p| assigned_here(p, node_id)) {
            let (topic, index) = (old.name.clone(), p.index);
            match new {
                None => removals.push(Change::Delete { topic, index }),
                Some(t) => {
                    let still = partition_of(t, p.index).is_some_and(|q| assigned_here(q, node_id));
                    if !still {
                        removals.push(Change::Close { topic, index });
                    }
                }
            }
        }
    }
    for t in next.topics.values() {
        let old = prev.topics.get(&t.name).filter(|o| o.id == t.id);
        for p in t.partitions.iter().filter(|p| assigned_here(p, node_id)) {
            let role = role_of(p, node_id);
            let before = old
                .and_then(|o| partition_of(o, p.index))
                .filter(|q| assigned_here(q, node_id));
            match before {
                None => rest.push(Change::Open {
                    topic: t.name.clone(),
                    topic_id: t.id,
                    index: p.index,
                    role,
                    leader_epoch: p.leader_epoch,
                }),
                Some(q) if q.leader != p.leader || q.leader_epoch != p.leader_epoch => {
                    rest.push(Change::SetRole {
                        topic: t.name.clone(),
                        index: p.index,
                        role,
                        leader_epoch: p.leader_epoch,
                    })
                }
                Some(q)
                    if q.isr != p.isr
                        || q.replicas != p.replicas
                        || q.partition_epoch != p.partition_epoch =>
                {
                    rest.push(Change::UpdateReplicas {
                        topic: t.name.clone(),
                        index: p.index,
                    })
                }
                Some(_) => {}
            }
        }
        if old.is_some_and(|o| o.configs != t.configs) {
            rest.push(Change::RefreshConfig {
                topic: t.name.clone(),
            });
        }
    }
    removals.extend(rest);
    removals
}

/// Partition directory name, as Kafka names them.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

/// Carries out [`plan`]s on this broker's partitions.
pub struct Reconciler {
    node_id: i32,
    data_dir: PathBuf,
    settings: BrokerSettings,
    backend: Arc<dyn Backend>,
    /// The metadata last reconciled; held while reconciling, so reconciles never interleave
    /// (only metadata appliers wait on it, never a request path).
    applied: Mutex<Arc<Metadata>>,
}

impl Reconciler {
    /// A reconciler that has applied nothing yet (empty metadata).
    pub fn new(
        node_id: i32,
        data_dir: PathBuf,
        settings: BrokerSettings,
        backend: Arc<dyn Backend>,
    ) -> Reconciler {
        Reconciler {
            node_id,
            data_dir,
            settings,
            backend,
            applied: Mutex::new(Arc::new(Metadata::default())),
        }
    }

    /// Reconciles from the last applied metadata to `next` and remembers `next`. Blocking
    /// (opens, recovers, closes and deletes logs).
    pub fn apply_committed(&self, table: &PartitionTable, groups: &Groups, next: Arc<Metadata>) {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        self.reconcile(table, groups, &applied, &next);
        *applied = next;
    }

    /// Makes local partitions match `next`, given that they matched `prev`. Blocking.
    pub fn reconcile(
        &self,
        table: &PartitionTable,
        groups: &Groups,
        prev: &Metadata,
        next: &Metadata,
    ) {
        let mut opened = Vec::new();
        for change in plan(prev, next, self.node_id) {
            if let Some(p) = self.apply(table, groups, next, change) {
                opened.push(p);
            }
        }
        // The logs opened or given a new role above deferred their fsyncs: new (empty) logs
        // and logs reopened after a clean shutdown need none, the others (a new leader
        // epoch's checkpoint, a recovery's rewritten files) get theirs on many threads.
        on_threads(&opened, |p| {
            if let Err(e) = p.log.end_deferred_sync() {
                tracing::error!(topic = %p.topic, partition = p.index, "could not sync the partition's files: {e}");
            }
        });
        groups.on_topics_deleted(&deleted_topics(prev, next));
        // Leaders admit to the ISR only brokers that are eligible now, at their current epoch.
        let eligible = eligible_brokers(next);
        for p in table.all().into_iter().filter(|p| p.is_leader()) {
            p.set_eligible_brokers(&eligible);
        }
    }

    /// Flushes and closes every log (clean shutdown), on many threads: each close waits
    /// for a few fsyncs, and those of different partitions overlap.
    pub fn close_all(&self, table: &PartitionTable) {
        on_threads(&table.all(), close);
    }

    /// `replica.lag.time.max.ms` of this broker.
    pub fn lag_time_max_ms(&self) -> i64 {
        self.settings.replica_lag_time_max_ms()
    }

    /// Carries out one change; returns the partition it opened or gave a new role (with
    /// deferred syncs), if any.
    fn apply(
        &self,
        table: &PartitionTable,
        groups: &Groups,
        next: &Metadata,
        change: Change,
    ) -> Option<Arc<Partition>> {
        match change {
            // A deleted topic, or a replica a reassignment removed: Kafka deletes the
            // replica's log (StopReplica with delete), so a later move back starts afresh.
            Change::Delete { topic, index } | Change::Close { topic, index } => {
                let p = table.remove(&topic, index);
                if let Some(p) = p {
                    resign_if_leader(groups, &p);
                    close(&p);
                }
                let dir = partition_dir(&self.data_dir, &topic, index);
                if dir.exists() {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(dir = %dir.display(), "could not delete partition directory: {e}");
                    }
                }
                None
            }
            Change::Open {
                topic,
                topic_id,
                index,
                role,
                leader_epoch,
            } => self.open_or_set_role(
                table,
                groups,
                next,
                &topic,
                topic_id,
                index,
                role,
                leader_epoch,
            ),
            Change::SetRole {
                topic,
                index,
                role,
                leader_epoch,
            } => {
                let topic_id = next.topics.get(&topic).map(|t| t.id).unwrap_or_default();
                self.open_or_set_role(
                    table,
                    groups,
                    next,
                    &topic,
                    topic_id,
                    index,
                    role,
                    leader_epoch,
                )
            }
            Change::UpdateReplicas { topic, index } => {
                if let (Some(p), Some(info)) = (table.get(&topic, index), find(next, &topic, index))
                {
                    p.update_replicas(&ReplicaSet::of(info));
                }
                None
            }
            Change::RefreshConfig { topic } => {
                let t = next.topics.get(&topic)?;
                let tc = Arc::new(effective_topic_config(&t.configs, &self.settings));
                for p in table.all().into_iter().filter(|p| p.topic == topic) {
                    p.set_config(tc.clone());
                }
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open_or_set_role(
        &self,
        table: &PartitionTable,
        groups: &Groups,
        next: &Metadata,
        topic: &str,
        topic_id: Uuid,
        index: i32,
        role: Role,
        leader_epoch: i32,
    ) -> Option<Arc<Partition>> {
        let replicas =
            find(next, topic, index).map_or_else(|| ReplicaSet::solo(self.node_id), ReplicaSet::of);
        if let Some(p) = table.get(topic, index) {
            // A new leader epoch is checkpointed: `reconcile` syncs all of them at the end.
            p.log.begin_deferred_sync();
            let was_leader = p.is_leader();
            if let Err(e) = p.set_role(role, leader_epoch, self.node_id, &replicas) {
                tracing::error!(
                    topic,
                    partition = index,
                    "could not take role {role:?}: {e}"
                );
            }
            p.wake_waiters();
            if was_leader && !p.is_leader() {
                resign(groups, &p);
            } else if !was_leader && p.is_leader() {
                become_leader(groups, &p);
            }
            return Some(p);
        }
        let t = next.topics.get(topic)?;
        let tc = Arc::new(effective_topic_config(&t.configs, &self.settings));
        let dir = partition_dir(&self.data_dir, topic, index);
        let opened = self.open_log(&dir, &topic_id, &tc, role, leader_epoch);
        match opened {
            Ok(log) => {
                let p = Arc::new(Partition::new(
                    topic.to_string(),
                    topic_id,
                    index,
                    log,
                    tc,
                    role,
                    leader_epoch,
                    self.node_id,
                    replicas,
                    self.lag_time_max_ms(),
                ));
                table.insert(p.clone());
                if p.is_leader() {
                    become_leader(groups, &p);
                }
                Some(p)
            }
            Err(e) => {
                tracing::error!(topic, partition = index, dir = %dir.display(),
                    "partition is offline (KAFKA_STORAGE_ERROR): {e}");
                table.mark_offline(topic, index, e.to_string());
                None
            }
        }
    }

    fn open_log(
        &self,
        dir: &Path,
        id: &Uuid,
        tc: &sluice_controller::TopicConfig,
        role: Role,
        leader_epoch: i32,
    ) -> Result<Log, StorageError> {
        // Deferred syncs: `reconcile` ends them once every change is applied.
        let log = Log::open_deferred(self.backend.clone(), dir, log_config(tc))?;
        // As leader, record where our epoch starts (KIP-101), so OffsetForLeaderEpoch answers
        // correctly even before the first append of this epoch.
        if role == Role::Leader && log.latest_epoch().is_none_or(|e| e < leader_epoch) {
            log.assign_epoch(leader_epoch)?;
        }
        if crate::state::read_partition_metadata(dir).as_ref() != Some(id) {
            let text = format!("version: 0\ntopic_id: {id}\n");
            let path = dir.join("partition.metadata");
            if let Err(e) = crate::dirs::write_atomically_unsynced(&path, text.as_bytes()) {
                tracing::warn!("could not write {}: {e}", path.display());
            }
        }
        Ok(log)
    }
}

/// The partition `topic`-`index` of `md`, if any.
fn find<'a>(md: &'a Metadata, topic: &str, index: i32) -> Option<&'a PartitionInfo> {
    partition_of(md.topics.get(topic)?, index)
}

/// Brokers that may join an ISR (registered, unfenced, not shutting down) and their epochs.
pub fn eligible_brokers(md: &Metadata) -> std::collections::BTreeMap<i32, i64> {
    md.brokers
        .values()
        .filter(|b| b.is_eligible())
        .map(|b| (b.node_id, b.broker_epoch))
        .collect()
}

/// Runs `f` on every partition of `all`, spread over up to 16 threads (at least 64
/// partitions each): for work that mostly waits for fsyncs, which overlap across files.
fn on_threads(all: &[Arc<Partition>], f: impl Fn(&Partition) + Sync) {
    let threads = all.len().div_ceil(64).clamp(1, 16);
    let chunk = all.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        for part in all.chunks(chunk) {
            s.spawn(move || {
                for p in part {
                    f(p);
                }
            });
        }
    });
}

fn close(p: &Partition) {
    p.wake_waiters();
    if let Err(e) = p.log.close() {
        tracing::warn!(topic = %p.topic, partition = p.index, "close failed: {e}");
    }
}

fn become_leader(groups: &Groups, p: &Partition) {
    if p.topic == OFFSETS_TOPIC {
        groups.on_become_leader(p.index, p.leader_epoch());
    }
}

fn resign(groups: &Groups, p: &Partition) {
    if p.topic == OFFSETS_TOPIC {
        groups.on_resign(p.index);
    }
}

fn resign_if_leader(groups: &Groups, p: &Partition) {
    if p.is_leader() {
        resign(groups, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::tests::metadata_with;
    use sluice_controller::MetadataCommand;
    use std::collections::BTreeMap;

    const ME: i32 = 1;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn open(topic: &str, tid: Uuid, index: i32, role: Role, leader_epoch: i32) -> Change {
        Change::Open {
            topic: topic.into(),
            topic_id: tid,
            index,
            role,
            leader_epoch,
        }
    }

    #[test]
    fn opens_assigned_partitions_with_their_roles() {
        let prev = Metadata::default();
        let mut next = metadata_with(&[(
            "t",
            id(1),
            &[
                (0, ME, 3, &[ME, 2]),
                (1, 2, 4, &[2, ME]),
                (2, 2, 0, &[2, 3]),
                (3, ME, 0, &[ME]),
            ],
        )]);
        // No leader (the state machine can't create one, but a failover can leave one).
        next.topics.get_mut("t").expect("topic").partitions[3].leader = -1;
        assert_eq!(
            plan(&prev, &next, ME),
            vec![
                open("t", id(1), 0, Role::Leader, 3),
                open("t", id(1), 1, Role::Follower { leader: 2 }, 4),
                open("t", id(1), 3, Role::None, 0),
            ]
        );
        assert!(
            plan(&next, &next, ME).is_empty(),
            "no change, nothing to do"
        );
    }

    #[test]
    fn role_and_epoch_changes() {
        let prev = metadata_with(&[("t", id(1), &[(0, ME, 3, &[ME, 2]), (1, 2, 4, &[2, ME])])]);
        let next = metadata_with(&[("t", id(1), &[(0, 2, 4, &[ME, 2]), (1, ME, 5, &[2, ME])])]);
        assert_eq!(
            plan(&prev, &next, ME),
            vec![
                Change::SetRole {
                    topic: "t".into(),
                    index: 0,
                    role: Role::Follower { leader: 2 },
                    leader_epoch: 4
                },
                Change::SetRole {
                    topic: "t".into(),
                    index: 1,
                    role: Role::Leader,
                    leader_epoch: 5
                },
            ]
        );
    }

    #[test]
    fn closes_unassigned_and_deletes_deleted_topics() {
        let prev = metadata_with(&[
            ("gone", id(1), &[(0, ME, 0, &[ME])]),
            ("moved", id(2), &[(0, ME, 0, &[ME]), (1, ME, 0, &[ME])]),
            ("recreated", id(3), &[(0, ME, 0, &[ME])]),
            ("elsewhere", id(4), &[(0, 2, 0, &[2])]),
        ]);
        let next = metadata_with(&[
            ("moved", id(2), &[(0, 2, 1, &[2]), (1, ME, 0, &[ME])]),
            ("recreated", id(5), &[(0, ME, 0, &[ME])]),
        ]);
        assert_eq!(
            plan(&prev, &next, ME),
            vec![
                Change::Delete {
                    topic: "gone".into(),
                    index: 0
                },
                Change::Close {
                    topic: "moved".into(),
                    index: 0
                },
                Change::Delete {
                    topic: "recreated".into(),
                    index: 0
                },
                open("recreated", id(5), 0, Role::Leader, 0),
            ]
        );
        // Group offsets go for every deleted or recreated topic, hosted here or not.
        assert_eq!(
            deleted_topics(&prev, &next),
            BTreeSet::from([
                "elsewhere".to_string(),
                "gone".to_string(),
                "recreated".to_string()
            ])
        );
        assert!(deleted_topics(&next, &next).is_empty());
    }

    #[test]
    fn config_changes_and_new_partitions() {
        let prev = metadata_with(&[("t", id(1), &[(0, ME, 0, &[ME])])]);
        let mut next = prev.clone();
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1000".to_string());
        next.topics.get_mut("t").expect("topic").configs = configs;
        next.topics
            .get_mut("t")
            .expect("topic")
            .partitions
            .push(PartitionInfo {
                index: 1,
                leader: ME,
                leader_epoch: 0,
                replicas: vec![ME],
                isr: vec![ME],
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            });
        assert_eq!(
            plan(&prev, &next, ME),
            vec![
                open("t", id(1), 1, Role::Leader, 0),
                Change::RefreshConfig { topic: "t".into() },
            ]
        );
        // Through the state machine too: every hosted partition of a deleted topic goes.
        let mut after = next.clone();
        after
            .apply(&MetadataCommand::DeleteTopic { name: "t".into() })
            .expect("delete topic");
        assert_eq!(
            plan(&next, &after, ME),
            vec![
                Change::Delete {
                    topic: "t".into(),
                    index: 0
                },
                Change::Delete {
                    topic: "t".into(),
                    index: 1
                },
            ]
        );
    }
}
