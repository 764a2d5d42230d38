//! Broker-wide state: the metadata controller, the hosted partitions (see `crate::partition`)
//! and the reconciler that keeps them in step with committed metadata.

use std::path::Path;
use std::sync::Arc;

use sluice_controller::{Controller, ControllerError, Metadata, MetadataCommand};
use sluice_storage::{Backend, FileBackend};
use uuid::Uuid;

use crate::dirs::{DirLock, MetaProperties};
use crate::metrics::Metrics;
use crate::partition::{Partition, PartitionTable, TopicRef};
use crate::producer_ids::ProducerIds;
use crate::reconcile::{partition_dir, Reconciler};
use crate::{BrokerConfig, BrokerError};

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
    /// Producer id allocator.
    pub producer_ids: ProducerIds,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// Serializes metadata-changing admin operations.
    pub admin_lock: tokio::sync::Mutex<()>,
    /// Consumer-group coordinator (started on the first group request).
    pub groups: crate::groups::Groups,
    /// The partitions hosted here.
    pub partitions: PartitionTable,
    /// Turns committed metadata into local partition state.
    pub reconciler: Reconciler,
    _lock: DirLock,
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
        let backend = backend.unwrap_or_else(|| Arc::new(FileBackend::new()) as Arc<dyn Backend>);
        let reconciler = Reconciler::new(
            config.node_id,
            config.data_dir.clone(),
            config.settings.clone(),
            backend,
        );
        let broker = Broker {
            cluster_id: meta.cluster_id,
            advertised_host,
            advertised_port,
            controller,
            producer_ids,
            metrics: Metrics::default(),
            admin_lock: tokio::sync::Mutex::new(()),
            groups: crate::groups::Groups::new(&config.settings),
            partitions: PartitionTable::default(),
            reconciler,
            _lock: lock,
            config,
        };
        broker.register_self()?;
        let md = broker.controller.metadata();
        broker.remove_stray_dirs(&md);
        // From nothing to the committed state: opens every partition assigned here.
        broker.apply_committed(md);
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

    /// Reconciles local partitions from the last applied metadata to `next` (blocking: opens,
    /// closes and deletes logs). See `crate::reconcile`.
    pub fn apply_committed(&self, next: Arc<Metadata>) {
        self.reconciler
            .apply_committed(&self.partitions, &self.groups, next);
    }

    /// Reconciles local partitions from `prev` to `next` (blocking).
    #[allow(dead_code)] // the explicit (old, new) form, for callers that track their own prev
    pub fn reconcile(&self, prev: &Metadata, next: &Metadata) {
        self.reconciler
            .reconcile(&self.partitions, &self.groups, prev, next);
    }

    /// THE partition lookup, whatever this broker's role: see [`PartitionTable::lookup`].
    pub fn local_partition(&self, topic: TopicRef<'_>, index: i32) -> Result<Arc<Partition>, i16> {
        self.partitions
            .lookup(&self.controller.metadata(), topic, index)
    }

    /// THE partition lookup for "act as leader" paths (produce, fetch, list offsets, delete
    /// records, group writes): NOT_LEADER_OR_FOLLOWER unless this broker leads it.
    pub fn leader_partition(&self, topic: TopicRef<'_>, index: i32) -> Result<Arc<Partition>, i16> {
        self.partitions
            .leader(&self.controller.metadata(), topic, index)
    }

    /// Every open partition (for metrics and shutdown).
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.all()
    }

    /// Commits a metadata command through the controller, then reconciles local partitions
    /// with the result before returning it (so a created topic's partitions exist when its
    /// creator answers). Must run on a multi-threaded runtime (reconciling blocks).
    pub fn commit(&self, cmd: MetadataCommand) -> Result<Arc<Metadata>, ControllerError> {
        let md = self.controller.commit(cmd)?;
        tokio::task::block_in_place(|| self.apply_committed(md.clone()));
        Ok(md)
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close_all(&self) {
        for h in self.all_partitions() {
            if let Err(e) = h.log.close() {
                tracing::warn!(topic = %h.topic, partition = h.index, "close failed: {e}");
            }
        }
    }
}

pub(crate) fn read_partition_metadata(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join("partition.metadata")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
}
