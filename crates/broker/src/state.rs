//! Broker-wide state: the metadata quorum handle and the applied metadata, the hosted
//! partitions (see `crate::partition`) and the reconciler that keeps them in step with
//! committed metadata.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_controller::{Committed, ControllerError, Metadata, MetadataCommand, Quorum};
use sluice_storage::{Backend, FileBackend, VolatileBackend};
use tokio::sync::watch;
use uuid::Uuid;

use crate::dirs::DirLock;
use crate::metrics::Metrics;
use crate::partition::{Partition, PartitionTable, TopicRef};
use crate::producer_ids::ProducerIds;
use crate::reconcile::{partition_dir, Reconciler};
use crate::{BrokerConfig, BrokerError};

/// This broker's registration with the active controller.
#[derive(Debug)]
pub struct Membership {
    /// This process's incarnation id (new at every start).
    pub incarnation_id: Uuid,
    /// The incarnation last registered from this data dir (a previous process).
    pub previous_incarnation: Option<Uuid>,
    /// Broker epoch of the current registration; -1 before the first.
    pub broker_epoch: AtomicI64,
    /// Whether the controller still has this broker fenced.
    pub fenced: AtomicBool,
}

/// Shared state of a running broker.
pub struct Broker {
    /// Static configuration.
    pub config: BrokerConfig,
    /// Cluster id (the quorum's, recorded in meta.properties).
    pub cluster_id: String,
    /// Advertised host.
    pub advertised_host: String,
    /// Advertised port.
    pub advertised_port: i32,
    /// The metadata quorum (this node is a voter or a follower of it).
    pub quorum: Quorum,
    /// The metadata this broker has applied and reconciled its partitions with.
    applied: watch::Sender<Committed>,
    /// Registration state.
    pub membership: Membership,
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
    /// Replica fetchers and their stop flag.
    pub replication: crate::replica::Replication,
    /// Memory of large requests being read (`queued.max.request.bytes`).
    pub memory: Arc<crate::memory::MemoryPool>,
    /// Memory of fetch responses being assembled or written (a pool of the same size).
    pub fetch_memory: Arc<crate::memory::MemoryPool>,
    _lock: DirLock,
}

/// How long a metadata change may take to commit and reach this broker before the request
/// that made it fails with REQUEST_TIMED_OUT.
pub const METADATA_WAIT: Duration = Duration::from_secs(30);

impl Broker {
    /// Opens every partition log assigned here by `committed` (running recovery), removing
    /// partition directories that no longer belong to a topic.
    pub fn open(
        config: BrokerConfig,
        cluster_id: String,
        lock: DirLock,
        advertised_host: String,
        advertised_port: i32,
        backend: Option<Arc<dyn Backend>>,
        quorum: Quorum,
    ) -> Result<Broker, BrokerError> {
        let backend = backend.unwrap_or_else(default_backend);
        let reconciler = Reconciler::new(
            config.node_id,
            config.data_dir.clone(),
            config.settings.clone(),
            backend,
        );
        let committed = quorum.committed().borrow().clone();
        let (applied, _) = watch::channel(Committed::default());
        let broker = Broker {
            cluster_id,
            advertised_host,
            advertised_port,
            quorum,
            applied,
            membership: Membership {
                incarnation_id: sluice_controller::new_incarnation_id(),
                previous_incarnation: crate::cluster::previous_incarnation(&config.data_dir),
                broker_epoch: AtomicI64::new(-1),
                fenced: AtomicBool::new(true),
            },
            producer_ids: ProducerIds::new(),
            metrics: Metrics::default(),
            admin_lock: tokio::sync::Mutex::new(()),
            groups: crate::groups::Groups::new(&config.settings),
            partitions: PartitionTable::default(),
            reconciler,
            replication: crate::replica::Replication::default(),
            memory: crate::memory::MemoryPool::new(crate::memory::pool_bytes(&config.settings)),
            fetch_memory: crate::memory::MemoryPool::new(crate::memory::pool_bytes(
                &config.settings,
            )),
            _lock: lock,
            config,
        };
        broker.remove_stray_dirs(&committed.metadata);
        // From nothing to the committed state: opens every partition assigned here.
        broker.apply_committed_at(committed);
        Ok(broker)
    }

    /// The metadata this broker has applied.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.applied.borrow().metadata.clone()
    }

    /// The metadata offset this broker has applied.
    pub fn applied_offset(&self) -> u64 {
        self.applied.borrow().offset
    }

    /// Waits until this broker has applied metadata offset `offset` (bounded by `timeout`).
    pub async fn wait_applied(
        &self,
        offset: u64,
        timeout: Duration,
    ) -> Result<Arc<Metadata>, ControllerError> {
        self.wait_committed(timeout, |c| c.offset >= offset)
            .await
            .ok_or_else(|| {
                ControllerError::RequestTimedOut(format!(
                    "metadata offset {offset} did not reach this broker within {} ms",
                    timeout.as_millis()
                ))
            })
    }

    /// Waits (bounded) until this broker's applied metadata satisfies `pred`; false on timeout.
    pub async fn wait_metadata(&self, timeout: Duration, pred: impl Fn(&Metadata) -> bool) -> bool {
        self.wait_committed(timeout, |c| pred(&c.metadata))
            .await
            .is_some()
    }

    /// The one wait on the applied view: its metadata once `pred` holds, `None` on timeout.
    async fn wait_committed(
        &self,
        timeout: Duration,
        pred: impl Fn(&Committed) -> bool,
    ) -> Option<Arc<Metadata>> {
        let mut rx = self.applied.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|c| pred(c))).await;
        match waited {
            Ok(Ok(c)) => Some(c.metadata.clone()),
            _ => None,
        }
    }

    /// Applies committed metadata to local partitions (blocking: opens, closes and deletes
    /// logs), then publishes it as this broker's view.
    pub fn apply_committed_at(&self, c: Committed) {
        if c.offset < self.applied_offset() {
            return;
        }
        self.reconciler
            .apply_committed(&self.partitions, &self.groups, c.metadata.clone());
        self.applied.send_replace(c);
    }

    /// Follows the quorum's committed metadata for as long as the broker lives: every change
    /// is reconciled on a blocking thread, in order.
    pub fn spawn_metadata_follower(self: &Arc<Broker>) {
        let mut rx = self.quorum.committed();
        let weak = Arc::downgrade(self);
        crate::replica::fetcher::sync(self);
        tokio::spawn(async move {
            loop {
                let c = rx.borrow_and_update().clone();
                let Some(b) = weak.upgrade() else { return };
                if c.offset > b.applied_offset() {
                    let b2 = b.clone();
                    let r = tokio::task::spawn_blocking(move || b2.apply_committed_at(c)).await;
                    if let Err(e) = r {
                        tracing::error!("applying metadata failed: {e}");
                    }
                    crate::replica::fetcher::sync(&b);
                }
                drop(b);
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Deletes partition dirs (those with a `partition.metadata` file) whose topic no longer
    /// exists or was recreated with another id, or whose partition is no longer assigned to
    /// this broker (reassigned away while it was down).
    fn remove_stray_dirs(&self, md: &Metadata) {
        let Ok(entries) = std::fs::read_dir(&self.config.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = read_partition_metadata(&path) else {
                continue;
            };
            let node = self.config.node_id;
            // `<topic>-<index>`: one lookup of that partition, not a scan of the topic's.
            let index = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('-'))
                .and_then(|(_, i)| i.parse::<i32>().ok());
            let keep = md.topic_by_id(&id).is_some_and(|t| {
                index
                    .and_then(|i| crate::reconcile::partition_of(t, i))
                    .is_some_and(|p| {
                        crate::reconcile::assigned_here(p, node)
                            && partition_dir(&self.config.data_dir, &t.name, p.index) == path
                    })
            });
            if !keep {
                tracing::info!(dir = %path.display(), "removing the directory of a deleted topic or of a replica reassigned away");
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), "could not remove: {e}");
                }
            }
        }
    }

    /// Reconciles local partitions from `prev` to `next` (blocking).
    #[allow(dead_code)] // the explicit (old, new) form, for callers that track their own prev
    pub fn reconcile(&self, prev: &Metadata, next: &Metadata) {
        self.reconciler
            .reconcile(&self.partitions, &self.groups, prev, next);
    }

    /// THE partition lookup, whatever this broker's role: see [`PartitionTable::lookup`].
    pub fn local_partition(&self, topic: TopicRef<'_>, index: i32) -> Result<Arc<Partition>, i16> {
        self.partitions.lookup(&self.metadata(), topic, index)
    }

    /// THE partition lookup for "act as leader" paths (produce, fetch, list offsets, delete
    /// records, group writes): NOT_LEADER_OR_FOLLOWER unless this broker leads it.
    pub fn leader_partition(&self, topic: TopicRef<'_>, index: i32) -> Result<Arc<Partition>, i16> {
        self.partitions.leader(&self.metadata(), topic, index)
    }

    /// Every open partition (for metrics and shutdown).
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.all()
    }

    /// Commits a metadata command through the active controller (this node when it leads
    /// the quorum, else forwarded to the leader), then waits until this broker has applied
    /// it, so a created topic's local partitions exist when its creator answers.
    pub async fn commit(&self, cmd: MetadataCommand) -> Result<Arc<Metadata>, ControllerError> {
        let offset = self.quorum.propose_via_leader(cmd).await?;
        self.wait_applied(offset, METADATA_WAIT).await
    }

    /// This broker's current broker epoch (-1 before it registered).
    pub fn broker_epoch(&self) -> i64 {
        self.membership.broker_epoch.load(Ordering::Relaxed)
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close_all(&self) {
        self.reconciler.close_all(&self.partitions);
    }
}

pub(crate) fn read_partition_metadata(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join("partition.metadata")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
}

/// The logs' file system: the real one, or for power-loss tests
/// (`SLUICE_TEST_VOLATILE_WRITES=1`) one that keeps unsynced bytes in memory, so SIGKILL loses
/// exactly what a power cut would.
fn default_backend() -> Arc<dyn Backend> {
    if std::env::var("SLUICE_TEST_VOLATILE_WRITES").is_ok_and(|v| v == "1") {
        tracing::warn!(
            "SLUICE_TEST_VOLATILE_WRITES=1: unsynced log writes stay in memory (tests only)"
        );
        Arc::new(VolatileBackend::new())
    } else {
        Arc::new(FileBackend::new())
    }
}
