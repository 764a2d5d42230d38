//! Broker-wide state: the metadata controller, the open partition logs and the append signal
//! that wakes long-polling fetches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sluice_controller::{
    effective_topic_config, Controller, ControllerError, Metadata, MetadataCommand, TopicConfig,
    TopicInfo,
};
use sluice_storage::{Backend, FileBackend, Log, LogConfig, StorageError};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::dirs::{DirLock, MetaProperties};
use crate::metrics::Metrics;
use crate::producer_ids::ProducerIds;
use crate::{BrokerConfig, BrokerError};

/// One partition this broker leads, with its log.
pub struct PartitionHandle {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub index: i32,
    /// Leader epoch from metadata.
    pub leader_epoch: i32,
    /// The log.
    pub log: Log,
    /// Effective topic config (topic overrides over broker settings over defaults).
    pub config: RwLock<Arc<TopicConfig>>,
}

impl PartitionHandle {
    /// KIP-320 fencing of a client's `current_leader_epoch` (-1 = not given): NONE, or
    /// UNKNOWN_LEADER_EPOCH when the client is ahead of us, FENCED_LEADER_EPOCH when behind.
    pub fn check_leader_epoch(&self, current: i32) -> i16 {
        use crate::codes;
        if current < 0 || current == self.leader_epoch {
            codes::NONE
        } else if current > self.leader_epoch {
            codes::UNKNOWN_LEADER_EPOCH
        } else {
            codes::FENCED_LEADER_EPOCH
        }
    }

    /// A cheap copy of the effective topic config.
    pub fn config(&self) -> Arc<TopicConfig> {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

/// Lookup result for a partition.
pub enum PartitionLookup {
    /// Open and serving.
    Online(Arc<PartitionHandle>),
    /// Exists in metadata but its log could not be opened (corruption, I/O error).
    Offline,
    /// Not in metadata.
    Unknown,
}

/// Shared state of a running broker.
pub struct Broker {
    /// Static configuration.
    pub config: BrokerConfig,
    /// Cluster id from meta.properties.
    pub cluster_id: String,
    /// Advertised host.
    pub advertised_host: String,
    /// Advertised port.
    pub advertised_port: i32,
    /// Metadata state machine + store.
    pub controller: Controller,
    /// Signalled after every successful append (wakes fetch long-polls).
    pub appended: Notify,
    /// Producer id allocator.
    pub producer_ids: ProducerIds,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// Serializes metadata-changing admin operations.
    pub admin_lock: tokio::sync::Mutex<()>,
    /// Consumer-group coordinator (started on the first group request).
    pub groups: crate::groups::Groups,
    backend: Arc<dyn Backend>,
    partitions: RwLock<HashMap<(String, i32), Arc<PartitionHandle>>>,
    offline: RwLock<HashMap<(String, i32), String>>,
    _lock: DirLock,
}

fn log_config(tc: &TopicConfig) -> LogConfig {
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

/// Partition directory name, as Kafka names them.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

impl Broker {
    /// Opens the metadata store and every partition log (running recovery), removing partition
    /// directories that no longer belong to a topic.
    pub fn open(
        config: BrokerConfig,
        meta: MetaProperties,
        lock: DirLock,
        advertised_host: String,
        advertised_port: i32,
        backend: Option<Arc<dyn Backend>>,
    ) -> Result<Broker, BrokerError> {
        let controller = Controller::open(&config.data_dir, &meta.cluster_id, config.node_id)?;
        let producer_ids = ProducerIds::open(&config.data_dir)?;
        let broker = Broker {
            cluster_id: meta.cluster_id,
            advertised_host,
            advertised_port,
            controller,
            appended: Notify::new(),
            producer_ids,
            metrics: Metrics::default(),
            admin_lock: tokio::sync::Mutex::new(()),
            groups: crate::groups::Groups::new(&config.settings),
            backend: backend.unwrap_or_else(|| Arc::new(FileBackend::new())),
            partitions: RwLock::new(HashMap::new()),
            offline: RwLock::new(HashMap::new()),
            _lock: lock,
            config,
        };
        broker.register_self()?;
        let md = broker.controller.metadata();
        broker.remove_stray_dirs(&md);
        for topic in md.topics.values() {
            broker.open_topic(topic);
        }
        Ok(broker)
    }

    fn register_self(&self) -> Result<(), BrokerError> {
        let md = self.controller.metadata();
        let me = sluice_controller::BrokerRegistration {
            node_id: self.config.node_id,
            incarnation_id: sluice_controller::new_incarnation_id(),
            host: self.advertised_host.clone(),
            port: self.advertised_port,
            rack: None,
        };
        let same = md
            .brokers
            .get(&self.config.node_id)
            .map(|b| b.host == me.host && b.port == me.port && b.is_eligible())
            .unwrap_or(false);
        if !same {
            // Single node: register, then unfence at once (we are our own controller).
            let md = self
                .controller
                .commit(MetadataCommand::RegisterBroker(me))?;
            if let Some(b) = md.brokers.get(&self.config.node_id) {
                if b.fenced {
                    self.controller.commit(MetadataCommand::UnfenceBroker {
                        node_id: b.node_id,
                        broker_epoch: b.broker_epoch,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Deletes partition dirs (those with a `partition.metadata` file) whose topic no longer
    /// exists or was recreated with another id.
    fn remove_stray_dirs(&self, md: &Metadata) {
        let Ok(entries) = std::fs::read_dir(&self.config.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = read_partition_metadata(&path) else {
                continue;
            };
            let keep = md.topic_by_id(&id).is_some_and(|t| {
                t.partitions
                    .iter()
                    .any(|p| partition_dir(&self.config.data_dir, &t.name, p.index) == path)
            });
            if !keep {
                tracing::info!(dir = %path.display(), "removing partition directory of a deleted topic");
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), "could not remove: {e}");
                }
            }
        }
    }

    /// Opens (creating if needed) the logs of every partition of `topic`. Failures mark the
    /// partition offline; other partitions keep working.
    pub fn open_topic(&self, topic: &TopicInfo) {
        let tc = Arc::new(effective_topic_config(
            &topic.configs,
            &self.config.settings,
        ));
        for p in &topic.partitions {
            let key = (topic.name.clone(), p.index);
            if self.read_partitions().contains_key(&key) {
                continue;
            }
            let dir = partition_dir(&self.config.data_dir, &topic.name, p.index);
            match self.open_log(&dir, &topic.id, &tc, p.leader_epoch) {
                Ok(log) => {
                    let handle = Arc::new(PartitionHandle {
                        topic: topic.name.clone(),
                        index: p.index,
                        leader_epoch: p.leader_epoch,
                        log,
                        config: RwLock::new(tc.clone()),
                    });
                    self.write_partitions().insert(key.clone(), handle);
                    self.write_offline().remove(&key);
                }
                Err(e) => {
                    tracing::error!(topic = %topic.name, partition = p.index, dir = %dir.display(),
                        "partition is offline (KAFKA_STORAGE_ERROR): {e}");
                    self.write_offline().insert(key, e.to_string());
                }
            }
        }
    }

    fn open_log(
        &self,
        dir: &Path,
        id: &Uuid,
        tc: &TopicConfig,
        leader_epoch: i32,
    ) -> Result<Log, StorageError> {
        let log = Log::open(self.backend.clone(), dir, log_config(tc))?;
        // As leader, record where our epoch starts (KIP-101), so OffsetForLeaderEpoch answers
        // correctly even before the first append of this epoch.
        if log.latest_epoch().is_none_or(|e| e < leader_epoch) {
            log.assign_epoch(leader_epoch)?;
        }
        if read_partition_metadata(dir).as_ref() != Some(id) {
            let text = format!("version: 0\ntopic_id: {id}\n");
            let path = dir.join("partition.metadata");
            if let Err(e) = crate::dirs::write_atomically(&path, text.as_bytes()) {
                tracing::warn!("could not write {}: {e}", path.display());
            }
        }
        Ok(log)
    }

    /// Closes and deletes the logs of a topic that was deleted from metadata.
    pub fn drop_topic(&self, name: &str) {
        let removed: Vec<Arc<PartitionHandle>> = {
            let mut parts = self.write_partitions();
            let keys: Vec<_> = parts.keys().filter(|(t, _)| t == name).cloned().collect();
            keys.iter().filter_map(|k| parts.remove(k)).collect()
        };
        self.write_offline().retain(|(t, _), _| t != name);
        for h in removed {
            let dir = h.log.dir().to_path_buf();
            if let Err(e) = h.log.close() {
                tracing::warn!(dir = %dir.display(), "close before delete failed: {e}");
            }
            drop(h);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), "could not delete partition directory: {e}");
            }
        }
    }

    /// Re-reads the effective config of a topic's open partitions after a config change.
    pub fn refresh_topic_config(&self, topic: &TopicInfo) {
        let tc = Arc::new(effective_topic_config(
            &topic.configs,
            &self.config.settings,
        ));
        for h in self
            .read_partitions()
            .values()
            .filter(|h| h.topic == topic.name)
        {
            if let Ok(mut c) = h.config.write() {
                *c = tc.clone();
            }
            h.log.set_config(log_config(&tc));
        }
    }

    /// Finds a partition by topic name.
    pub fn partition(&self, topic: &str, index: i32) -> PartitionLookup {
        let key = (topic.to_string(), index);
        if let Some(h) = self.read_partitions().get(&key) {
            return PartitionLookup::Online(h.clone());
        }
        if self.read_offline().contains_key(&key) {
            return PartitionLookup::Offline;
        }
        PartitionLookup::Unknown
    }

    /// Every open partition (for metrics and shutdown).
    pub fn all_partitions(&self) -> Vec<Arc<PartitionHandle>> {
        self.read_partitions().values().cloned().collect()
    }

    /// Applies a metadata command through the controller and returns the new metadata.
    pub fn commit(&self, cmd: MetadataCommand) -> Result<Arc<Metadata>, ControllerError> {
        self.controller.commit(cmd)
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close_all(&self) {
        for h in self.all_partitions() {
            if let Err(e) = h.log.close() {
                tracing::warn!(topic = %h.topic, partition = h.index, "close failed: {e}");
            }
        }
    }

    fn read_partitions(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<(String, i32), Arc<PartitionHandle>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_partitions(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<(String, i32), Arc<PartitionHandle>>> {
        self.partitions.write().unwrap_or_else(|p| p.into_inner())
    }
    fn read_offline(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, i32), String>> {
        self.offline.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_offline(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(String, i32), String>> {
        self.offline.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_partition_metadata(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join("partition.metadata")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
}
