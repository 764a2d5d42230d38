//! Type configuration for openraft, the public configuration and status types, and the
//! conversion of errors to and from their wire form.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{ControllerError, Metadata, MetadataCommand};

/// What the replicated log carries. Only [`RaftCommand::Metadata`] is visible to users; `Seed`
/// is how a node migrated from an old single-node data dir hands its state to the quorum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RaftCommand {
    /// A metadata command, applied with [`Metadata::apply`].
    Metadata(MetadataCommand),
    /// Replace the whole state with this one. Applied only while the state machine has
    /// applied no `Metadata` or `Seed` entry yet; refused (a no-op) otherwise.
    Seed(Box<Metadata>),
}

/// The result of applying one log entry, as returned to the proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// `Some((kafka error code, message))` when the state machine refused the command.
    pub error: Option<WireError>,
}

/// A [`ControllerError`] on the wire: its Kafka error code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Kafka error code.
    pub code: i16,
    /// Message.
    pub message: String,
}

impl From<&ControllerError> for WireError {
    fn from(e: &ControllerError) -> Self {
        WireError {
            code: e.error_code(),
            message: e.message(),
        }
    }
}

impl From<WireError> for ControllerError {
    fn from(w: WireError) -> Self {
        let m = w.message;
        match w.code {
            36 => ControllerError::TopicAlreadyExists(m),
            3 => ControllerError::UnknownTopic(m),
            100 => ControllerError::UnknownTopicId(m),
            17 => ControllerError::InvalidTopic(m),
            37 => ControllerError::InvalidPartitions(m),
            38 => ControllerError::InvalidReplicationFactor(m),
            40 => ControllerError::InvalidConfig(m),
            73 => ControllerError::TopicDeletionDisabled(m),
            56 => ControllerError::Storage(m),
            41 => ControllerError::NotController(m),
            7 => ControllerError::RequestTimedOut(m),
            _ => ControllerError::InvalidRequest(m),
        }
    }
}

openraft::declare_raft_types!(
    /// Sluice's openraft type configuration (node ids are Kafka node ids as `u64`).
    pub TypeConfig:
        D = RaftCommand,
        R = ApplyResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Openraft's node id.
pub type NodeId = u64;
/// Openraft's log id for our config.
pub type LogId = openraft::LogId<NodeId>;
/// Openraft's storage error for our config.
pub type StorageError = openraft::StorageError<NodeId>;
/// Stored membership for our config.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// Openraft's entry for our config.
pub type Entry = openraft::Entry<TypeConfig>;
/// The openraft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Configuration of one quorum member.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id (≥ 0).
    pub node_id: i32,
    /// Where the quorum RPC listens.
    pub listen: SocketAddr,
    /// The voters: node id → `host:port` of their quorum RPC. A voter must list itself.
    pub voters: BTreeMap<i32, String>,
    /// `false`: a broker-only node that asks the leader to add it as a learner and follows.
    pub voter: bool,
    /// The data dir; the quorum lives in `<data_dir>/__cluster_metadata/raft/`.
    pub data_dir: PathBuf,
    /// Cluster id the first leader records; a fresh random one when `None`.
    pub cluster_id: Option<String>,
    /// State migrated from an old single-node data dir; used only if the quorum log is empty.
    pub initial: Option<Metadata>,
    /// Election timeout range in ms.
    pub election_timeout_ms: (u64, u64),
    /// Leader heartbeat interval in ms.
    pub heartbeat_ms: u64,
    /// How long `propose`/`propose_via_leader` wait for a commit before
    /// [`ControllerError::RequestTimedOut`].
    pub request_timeout_ms: u64,
    /// Take a snapshot after this many applied entries (the log before it is then purged,
    /// keeping half as many for lagging followers; older ones get the snapshot).
    pub snapshot_every: u64,
}

impl QuorumConfig {
    /// A single-voter config with default timings.
    pub fn single(node_id: i32, listen: SocketAddr, data_dir: PathBuf) -> QuorumConfig {
        QuorumConfig {
            node_id,
            listen,
            voters: BTreeMap::from([(node_id, listen.to_string())]),
            voter: true,
            data_dir,
            cluster_id: None,
            initial: None,
            election_timeout_ms: (1000, 2000),
            heartbeat_ms: 250,
            request_timeout_ms: 5000,
            snapshot_every: 1000,
        }
    }
}

/// The applied state after an apply: the log index of the last applied entry and the state.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Index of the last applied log entry (0 before anything was applied).
    pub offset: u64,
    /// The metadata after applying it.
    pub metadata: Arc<Metadata>,
}

/// One replica of the metadata log as seen from this node (full data only on the leader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Node id.
    pub node_id: i32,
    /// `host:port` of its quorum RPC.
    pub endpoint: String,
    /// Log end offset: the index the leader knows it has replicated (matched index + 1).
    pub log_end_offset: Option<u64>,
    /// Last successful AppendEntries answered to the leader, ms since the epoch.
    pub last_fetch_ms: Option<u64>,
    /// Last time it had everything the leader had, ms since the epoch.
    pub last_caught_up_ms: Option<u64>,
    /// Voter (`true`) or observer/learner (`false`).
    pub voter: bool,
}

/// What [`super::Quorum::status`] reports (DescribeQuorum material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    /// This node.
    pub node_id: i32,
    /// Current leader, if known.
    pub leader_id: Option<i32>,
    /// Current term (Kafka's leader epoch).
    pub term: u64,
    /// High watermark: one past the last committed index known here.
    pub high_watermark: u64,
    /// Voters, then observers, in id order.
    pub replicas: Vec<ReplicaStatus>,
}

/// A Kafka node id as an openraft node id.
pub fn to_raft_id(id: i32) -> Result<NodeId, ControllerError> {
    u64::try_from(id).map_err(|_| ControllerError::InvalidRequest(format!("invalid node id {id}")))
}

/// An openraft node id as a Kafka node id (ids are validated on the way in).
pub fn to_kafka_id(id: NodeId) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
