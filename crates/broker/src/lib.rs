//! The Sluice broker: the Kafka-protocol network server, its request handlers and the HTTP
//! health/metrics listener.
//!
//! Layering: this crate owns sockets and turns requests into calls on `sluice-storage` (the
//! partition logs) and `sluice-controller` (cluster metadata). Handlers stay thin: they map wire
//! types to those calls and errors to Kafka error codes; they never hold a lock across I/O that
//! other connections wait on.
//!
//! Entry point: [`run`] with a [`BrokerConfig`].

mod alloc_stats;
mod cluster;
mod cluster_config;
mod codes;
mod dirs;
mod groups;
mod handlers;
mod http;
mod lag;
mod lifecycle;
mod memory;
mod metrics;
mod partition;
mod producer_ids;
mod reconcile;
mod replica;
mod server;
mod state;

use std::future::Future;
use std::path::PathBuf;

pub use alloc_stats::{set_allocator_stats, AllocatorStats, AllocatorStatsFn};
pub use cluster_config::{parse_quorum, ClusterConfig, NodeRole};
pub use sluice_controller::BrokerSettings;

/// Everything a broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address to bind the Kafka listener to, `HOST:PORT`.
    pub listen: String,
    /// Address advertised to clients in Metadata; defaults to `listen`.
    pub advertised: Option<String>,
    /// Data directory (logs, metadata, meta.properties).
    pub data_dir: PathBuf,
    /// This broker's node id.
    pub node_id: i32,
    /// HTTP listener for health and metrics; `None` disables it.
    pub http: Option<String>,
    /// Broker settings with Kafka's names (`num.partitions`, `message.max.bytes`, ...).
    pub settings: BrokerSettings,
    /// Roles and metadata quorum (default: a single combined node, a quorum of one).
    pub cluster: ClusterConfig,
}

/// Why the broker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The data directory is locked by another process.
    #[error("data directory {0} is in use by another broker process (lock held on {0}/.lock); stop that broker or pick another --data-dir")]
    DataDirLocked(PathBuf),
    /// meta.properties disagrees with our configuration.
    #[error("{0}")]
    MetaProperties(String),
    /// File system problem with a path.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Could not bind a listener.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The advertised or listen address is malformed.
    #[error("invalid address {0:?}: expected HOST:PORT")]
    BadAddress(String),
    /// The metadata store failed.
    #[error("metadata: {0}")]
    Controller(#[from] sluice_controller::ControllerError),
    /// A partition log failed to open for a reason other than corruption.
    #[error("storage: {0}")]
    Storage(#[from] sluice_storage::StorageError),
}

/// Runs a broker until `shutdown` completes, then stops accepting, finishes in-flight requests,
/// flushes every log and returns.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    server::run(config, None, shutdown).await
}

/// Like [`run`], with partition logs stored through `backend` instead of the file system
/// (tests use `sluice_storage::MemoryBackend` to inject disk-full and I/O faults).
pub async fn run_with_backend(
    config: BrokerConfig,
    backend: std::sync::Arc<dyn sluice_storage::Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    server::run(config, Some(backend), shutdown).await
}
