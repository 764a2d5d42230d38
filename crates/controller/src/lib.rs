//! Sluice cluster metadata: brokers, topics (with UUID ids), partitions (leader, leader epoch,
//! replicas, ISR) and topic config overrides, plus the registry of Kafka config names,
//! defaults and validators for topics and brokers.
//!
//! # Layers
//!
//! * [`config`]: the Kafka 4 topic config registry ([`topic_config_defs`]), the broker
//!   settings Sluice understands ([`BrokerSettings`], [`broker_config_defs`]) and resolution of
//!   a topic's effective config (topic override > static broker setting > Kafka default), both
//!   for DescribeConfigs ([`resolve_topic_configs`]) and typed ([`effective_topic_config`]).
//! * [`metadata`]: a pure, deterministic state machine. [`Metadata`] is the whole cluster
//!   state; it only changes through [`Metadata::apply`] of a [`MetadataCommand`]
//!   (`InitCluster`, `RegisterBroker`, `UnfenceBroker`, `FenceBroker`,
//!   `BeginControlledShutdown`, `AlterPartition`, `ElectLeaders`, `AllocateProducerIds`, `CreateTopic`,
//!   `DeleteTopic`, `CreatePartitions`, `AlterTopicConfigs`). Fencing or shutting down a
//!   broker moves its leaderships to other ISR members in the same command. `apply` validates the command against the current state and either
//!   applies it completely or changes nothing. The `plan_*` functions turn user requests
//!   (CreateTopics, CreatePartitions, DeleteTopics, AlterConfigs, IncrementalAlterConfigs)
//!   into commands or a [`ControllerError`] carrying the Kafka error code. Planning is where
//!   non-deterministic choices are made (the random topic id, replica placement), so replaying
//!   commands always yields the same state — the property a replicated log needs later.
//! * [`heartbeats`]: the active controller's soft state ([`BrokerHeartbeats`]): broker
//!   sessions, unfencing once caught up, session expiry, controlled shutdown. Pure (time is a
//!   parameter); it returns commands for the caller to commit.
//! * [`store`]: single-node persistence. [`Controller`] owns the current metadata behind a
//!   copy-on-write `Arc` and appends every committed command to a metadata log with fsync.
//! * [`quorum`]: the same commands replicated by a Raft quorum (openraft) over a small
//!   versioned TCP RPC; [`Quorum`] is the handle.
//!
//! # On-disk format
//!
//! Everything lives in `<data_dir>/__cluster_metadata/`:
//!
//! * `metadata.log`: one line per command, `CCCCCCCC {"offset":N,"cmd":{...}}\n`, where
//!   `CCCCCCCC` is the CRC-32C of the JSON text in lowercase hex. Offsets start at 1 and
//!   increase by one. On open, a last line that lacks its newline or fails its CRC/JSON check
//!   is a torn write and is truncated away; a bad line followed by more data is corruption
//!   and the store refuses to open (KAFKA_STORAGE_ERROR).
//! * `snapshot.json`: one line in the same framing holding
//!   `{"format":1,"last_offset":N,"metadata":{...}}`. It is written to `snapshot.json.tmp`,
//!   fsynced, renamed over the old one and the directory fsynced; then the log is emptied.
//!   Log entries with an offset at or below the snapshot's are skipped on replay (a crash
//!   between the rename and the truncation leaves them behind). Compaction happens once the
//!   log holds [`store::StoreOptions::snapshot_every`] entries (default 1000). A snapshot is
//!   written when the store is created, so the cluster id is recorded from the start and a
//!   store of another cluster is refused.

pub mod config;
mod error;
pub mod heartbeats;
pub mod metadata;
pub mod quorum;
#[cfg(test)]
mod sim;
pub mod status;
pub mod store;

pub use config::{
    broker_config_defs, effective_topic_config, resolve_broker_configs, resolve_topic_configs,
    topic_config_defs, validate_topic_config, BrokerSettings, ConfigDef, ConfigError, ConfigSource,
    ConfigType, ResolvedConfig, TopicConfig,
};
pub use error::ControllerError;
pub use heartbeats::{BrokerHeartbeats, HeartbeatReply, DEFAULT_BROKER_SESSION_TIMEOUT_MS};
pub use metadata::{
    is_internal_topic, new_incarnation_id, plan_alter_broker_configs, plan_alter_configs,
    plan_create_partitions, plan_create_topic, plan_create_topic_with_assignment,
    plan_delete_topic, plan_delete_topic_by_id, plan_elect_leaders, plan_incremental_alter_configs,
    plan_leader_rebalance, plan_reassignments, plan_replace_configs, validate_topic_name,
    AlterConfigOp, BrokerInfo, BrokerRegistration, ElectionPlan, ElectionType, Metadata,
    MetadataCommand, PartitionElection, PartitionInfo, ProducerIdBlock, Reassignment,
    ReassignmentPlan, TopicInfo, TopicRef, DYNAMIC_BROKER_CONFIGS, NO_LEADER,
    PRODUCER_ID_BLOCK_SIZE,
};
pub use quorum::{Committed, Quorum, QuorumConfig, QuorumStatus, ReplicaStatus};
pub use store::{Controller, StoreOptions};
