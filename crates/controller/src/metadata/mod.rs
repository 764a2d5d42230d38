//! The cluster metadata state machine ([`Metadata::apply`]) and the pure planners that turn
//! user requests into [`MetadataCommand`]s.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{
    self, parse_list, resolve_topic_config, validate_topic_configs, BrokerSettings, ConfigType,
};
use crate::error::ControllerError;

mod brokers;
mod partitions;
mod placement;

pub use brokers::{new_incarnation_id, NO_LEADER};
use placement::assign_replicas;

/// Largest partition count a topic may have in Sluice (guards memory against huge requests).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;
/// Longest legal topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// The group coordinator's offsets topic.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The transaction coordinator's state topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if any.
    #[serde(default)]
    pub rack: Option<String>,
    /// Incarnation id chosen by the broker process at start (nil for registrations written
    /// by the single-node versions).
    #[serde(default)]
    pub incarnation_id: Uuid,
    /// Broker epoch, assigned by the controller at (re-)registration.
    #[serde(default)]
    pub broker_epoch: i64,
    /// A fenced broker leads nothing and cannot join an ISR.
    #[serde(default)]
    pub fenced: bool,
    /// The broker asked to shut down: it leads nothing and cannot join an ISR.
    #[serde(default)]
    pub in_controlled_shutdown: bool,
}

impl BrokerInfo {
    /// Whether the broker may lead partitions and be added to ISRs.
    pub fn is_eligible(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// A broker's registration request (the `RegisterBroker` command). The JSON shape is a
/// superset of the single-node `BrokerInfo`, so old metadata logs still replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// Node id.
    pub node_id: i32,
    /// Incarnation id of the broker process. Nil = the legacy single-node registration,
    /// which registers the broker unfenced.
    #[serde(default)]
    pub incarnation_id: Uuid,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if any.
    #[serde(default)]
    pub rack: Option<String>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition index.
    pub index: i32,
    /// Leader node id, -1 when the partition is offline.
    pub leader: i32,
    /// Leader epoch, bumped on every leader change.
    pub leader_epoch: i32,
    /// Replica node ids; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids; never empty.
    pub isr: Vec<i32>,
    /// Kafka's partition epoch: bumped on every change of leader or ISR.
    #[serde(default)]
    pub partition_epoch: i32,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Partitions, `partitions[i].index == i`.
    pub partitions: Vec<PartitionInfo>,
    /// Topic config overrides (validated).
    pub configs: BTreeMap<String, String>,
    /// Internal topic (`__consumer_offsets`, `__transaction_state`).
    pub internal: bool,
}

impl TopicInfo {
    /// `unclean.leader.election.enable` as set on the topic (the broker default is not part
    /// of the replicated state, so only the override counts; Kafka's default is false).
    pub fn unclean_leader_election(&self) -> bool {
        self.configs
            .get("unclean.leader.election.enable")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

/// Size of a producer id block handed to a broker (KIP-730).
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

/// A block of producer ids `first..first + size` assigned to a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    /// The broker the block was allocated for.
    pub assigned_broker_id: i32,
    /// First producer id of the block.
    pub first_producer_id: i64,
    /// Number of ids in the block.
    pub size: i32,
}

impl ProducerIdBlock {
    /// One past the last id of the block.
    pub fn end(&self) -> i64 {
        self.first_producer_id.saturating_add(i64::from(self.size))
    }
}

/// Names a topic by id or by name (AlterPartition v2+ uses ids, older versions names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicRef {
    /// By topic id.
    Id(Uuid),
    /// By name.
    Name(String),
}

/// The whole cluster metadata. Cheap to share behind an `Arc`; changed only through
/// [`Metadata::apply`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// Cluster id.
    pub cluster_id: String,
    /// Node id of the active controller.
    pub controller_id: i32,
    /// Registered brokers by node id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
    /// The last broker epoch handed out; the next registration gets `last_broker_epoch + 1`.
    #[serde(default)]
    pub last_broker_epoch: i64,
    /// The first producer id of the next block (KIP-730).
    #[serde(default)]
    pub next_producer_id: i64,
    /// The block produced by the last `AllocateProducerIds`.
    #[serde(default)]
    pub last_producer_id_block: Option<ProducerIdBlock>,
    /// Topic id → name index, kept in step by `apply`.
    #[serde(skip)]
    topic_ids: BTreeMap<Uuid, String>,
}

/// Equality of the replicated state; the id index is derived and not compared.
impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        let Metadata {
            cluster_id,
            controller_id,
            brokers,
            topics,
            last_broker_epoch,
            next_producer_id,
            last_producer_id_block,
            topic_ids: _,
        } = self;
        *cluster_id == other.cluster_id
            && *controller_id == other.controller_id
            && *brokers == other.brokers
            && *topics == other.topics
            && *last_broker_epoch == other.last_broker_epoch
            && *next_producer_id == other.next_producer_id
            && *last_producer_id_block == other.last_producer_id_block
    }
}

/// A change to the metadata. Commands are the unit of the metadata log (and of the
/// replicated log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// Sets the cluster id once (the quorum's first leader chooses it). Refused with
    /// INCONSISTENT_CLUSTER_ID if another id is set already; the same id is a no-op.
    InitCluster {
        /// The cluster id.
        cluster_id: String,
    },
    /// Registers (or re-registers) a broker. A new incarnation gets a new broker epoch and
    /// starts fenced (its old incarnation's leaderships move away first); the same
    /// incarnation again only updates the endpoint.
    RegisterBroker(BrokerRegistration),
    /// Unfences a broker (it caught up with the metadata log). Stale epoch refused.
    UnfenceBroker {
        /// Node id.
        node_id: i32,
        /// The broker epoch the broker registered with.
        broker_epoch: i64,
    },
    /// Fences a broker (session expired, or it asked to be): its leaderships move to other
    /// ISR members and it leaves the ISRs where another member remains.
    FenceBroker {
        /// Node id.
        node_id: i32,
    },
    /// The broker asked to shut down: moves its leaderships away as `FenceBroker` does, but
    /// the broker stays unfenced until it is told to shut down.
    BeginControlledShutdown {
        /// Node id.
        node_id: i32,
        /// Broker epoch.
        broker_epoch: i64,
    },
    /// Kafka's AlterPartition (KIP-497): the leader changes the ISR.
    AlterPartition {
        /// The topic.
        topic: TopicRef,
        /// Partition index.
        partition: i32,
        /// The requesting broker, which must be the leader.
        leader_id: i32,
        /// The requesting broker's epoch; -1 = not checked (AlterPartition v0).
        broker_epoch: i64,
        /// The leader epoch the leader knows.
        leader_epoch: i32,
        /// The partition epoch the leader knows.
        partition_epoch: i32,
        /// The new ISR.
        new_isr: Vec<i32>,
    },
    /// Allocates the next block of [`PRODUCER_ID_BLOCK_SIZE`] producer ids for a broker;
    /// read the block with [`Metadata::last_producer_id_block`].
    AllocateProducerIds {
        /// The broker asking.
        broker_id: i32,
        /// Its broker epoch.
        broker_epoch: i64,
    },
    /// Creates a topic with its full partition assignment.
    CreateTopic {
        /// Name.
        name: String,
        /// Topic id.
        id: Uuid,
        /// Partitions `0..n`.
        partitions: Vec<PartitionInfo>,
        /// Config overrides.
        configs: BTreeMap<String, String>,
        /// Internal topic.
        internal: bool,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Appends partitions to a topic.
    CreatePartitions {
        /// Name.
        name: String,
        /// New partitions, continuing the existing indexes.
        new_partitions: Vec<PartitionInfo>,
    },
    /// Sets (`Some`) or removes (`None`) topic config overrides.
    AlterTopicConfigs {
        /// Name.
        name: String,
        /// Changes.
        configs: BTreeMap<String, Option<String>>,
    },
}

impl Metadata {
    /// Empty metadata for a cluster.
    pub fn new(cluster_id: &str, controller_id: i32) -> Metadata {
        Metadata {
            cluster_id: cluster_id.to_string(),
            controller_id,
            ..Metadata::default()
        }
    }

    /// Looks a topic up by id.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicInfo> {
        if let Some(t) = self.topic_ids.get(id).and_then(|n| self.topics.get(n)) {
            if t.id == *id {
                return Some(t);
            }
        }
        // Index missing or stale (e.g. the public fields were edited directly).
        self.topics.values().find(|t| t.id == *id)
    }

    /// Looks a topic up by name.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// Total number of partitions over all topics.
    pub fn partition_count(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }

    /// The block of producer ids produced by the last `AllocateProducerIds` command.
    pub fn last_producer_id_block(&self) -> Option<ProducerIdBlock> {
        self.last_producer_id_block
    }

    /// Rebuilds the id index (after deserialisation; `topic_by_id` works without it, only
    /// slower).
    pub fn rebuild_index(&mut self) {
        self.topic_ids = self
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
    }

    /// Applies a command. Pure and deterministic: validates the command against the current
    /// state and either changes nothing and returns an error, or applies it completely.
    pub fn apply(&mut self, cmd: &MetadataCommand) -> Result<(), ControllerError> {
        match cmd {
            MetadataCommand::InitCluster { cluster_id } => self.init_cluster(cluster_id),
            MetadataCommand::RegisterBroker(reg) => self.register_broker(reg),
            MetadataCommand::UnfenceBroker {
                node_id,
                broker_epoch,
            } => self.unfence_broker(*node_id, *broker_epoch),
            MetadataCommand::FenceBroker { node_id } => self.fence_broker(*node_id),
            MetadataCommand::BeginControlledShutdown {
                node_id,
                broker_epoch,
            } => self.begin_controlled_shutdown(*node_id, *broker_epoch),
            MetadataCommand::AlterPartition {
                topic,
                partition,
                leader_id,
                broker_epoch,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => self.alter_partition(
                topic,
                *partition,
                *leader_id,
                *broker_epoch,
                *leader_epoch,
                *partition_epoch,
                new_isr,
            ),
            MetadataCommand::AllocateProducerIds {
                broker_id,
                broker_epoch,
            } => self.allocate_producer_ids(*broker_id, *broker_epoch),
            MetadataCommand::CreateTopic {
                name,
                id,
                partitions,
                configs,
                internal,
            } => {
                validate_topic_name(name)?;
                if self.topics.contains_key(name) {
                    return Err(topic_exists(name));
                }
                if id.is_nil() || self.topic_by_id(id).is_some() {
                    return Err(ControllerError::InvalidRequest(format!(
                        "Topic id {id} is nil or already in use"
                    )));
                }
                if partitions.is_empty() {
                    return Err(ControllerError::InvalidPartitions(
                        "A topic needs at least one partition.".into(),
                    ));
                }
                check_partitions(partitions, 0)?;
                validate_topic_configs(configs)?;
                let mut topic = TopicInfo {
                    name: name.clone(),
                    id: *id,
                    partitions: partitions.clone(),
                    configs: configs.clone(),
                    internal: *internal,
                };
                let unclean = topic.unclean_leader_election();
                for p in &mut topic.partitions {
                    brokers::settle_new_partition(&self.brokers, p, unclean);
                }
                self.topics.insert(name.clone(), topic);
                self.topic_ids.insert(*id, name.clone());
                Ok(())
            }
            MetadataCommand::DeleteTopic { name } => match self.topics.remove(name) {
                Some(t) => {
                    self.topic_ids.remove(&t.id);
                    Ok(())
                }
                None => Err(unknown_topic(name)),
            },
            MetadataCommand::CreatePartitions {
                name,
                new_partitions,
            } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| unknown_topic(name))?;
                let first = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
                if new_partitions.is_empty() {
                    return Err(ControllerError::InvalidPartitions(
                        "No partitions to add.".into(),
                    ));
                }
                let total = topic.partitions.len() + new_partitions.len();
                if total > MAX_PARTITIONS_PER_TOPIC as usize {
                    return Err(too_many_partitions(total));
                }
                check_partitions(new_partitions, first)?;
                let unclean = topic.unclean_leader_election();
                for p in new_partitions {
                    let mut p = p.clone();
                    brokers::settle_new_partition(&self.brokers, &mut p, unclean);
                    topic.partitions.push(p);
                }
                Ok(())
            }
            MetadataCommand::AlterTopicConfigs { name, configs } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| unknown_topic(name))?;
                let mut merged = topic.configs.clone();
                apply_config_changes(&mut merged, configs);
                validate_topic_configs(&merged)?;
                topic.configs = merged;
                Ok(())
            }
        }
    }
}

fn apply_config_changes(
    target: &mut BTreeMap<String, String>,
    changes: &BTreeMap<String, Option<String>>,
) {
    for (k, v) in changes {
        match v {
            Some(v) => {
                target.insert(k.clone(), v.clone());
            }
            None => {
                target.remove(k);
            }
        }
    }
}

fn topic_exists(name: &str) -> ControllerError {
    ControllerError::TopicAlreadyExists(format!("Topic '{name}' already exists."))
}

/// Kafka's own text for UNKNOWN_TOPIC_OR_PARTITION does not name the topic.
fn unknown_topic(_name: &str) -> ControllerError {
    ControllerError::UnknownTopic("This server does not host this topic-partition.".into())
}

pub(crate) fn too_many_partitions(n: usize) -> ControllerError {
    ControllerError::InvalidPartitions(format!(
        "Requested {n} partitions; Sluice allows at most {MAX_PARTITIONS_PER_TOPIC} per topic."
    ))
}

/// Checks that `parts` are numbered `first..`, and that each has a sane replica set.
fn check_partitions(parts: &[PartitionInfo], first: i32) -> Result<(), ControllerError> {
    if parts.len() > MAX_PARTITIONS_PER_TOPIC as usize {
        return Err(too_many_partitions(parts.len()));
    }
    for (i, p) in parts.iter().enumerate() {
        let expected = i32::try_from(i)
            .ok()
            .and_then(|i| first.checked_add(i))
            .ok_or_else(|| too_many_partitions(parts.len()))?;
        if p.index != expected {
            return Err(ControllerError::InvalidRequest(format!(
                "Partition index {} where {expected} was expected",
                p.index
            )));
        }
        let distinct: BTreeSet<i32> = p.replicas.iter().copied().collect();
        if p.replicas.is_empty() || distinct.len() != p.replicas.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "Partition {} has an empty or duplicated replica list",
                p.index
            )));
        }
        let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
        if (p.leader != -1 && !p.isr.contains(&p.leader))
            || p.isr.is_empty()
            || isr.len() != p.isr.len()
            || !isr.is_subset(&distinct)
        {
            return Err(ControllerError::InvalidRequest(format!(
                "Partition {}: the ISR must be a non-empty set of replicas holding the leader",
                p.index
            )));
        }
    }
    Ok(())
}

/// Validates a topic name: 1..=249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    if name.is_empty() {
        return Err(ControllerError::InvalidTopic(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(ControllerError::InvalidTopic(
            "Topic name cannot be \".\" or \"..\"".into(),
        ));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        )));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name is invalid: '{name}' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Whether `name` is one of Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    name == CONSUMER_OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Kafka's base64 (url-safe) form of a topic id must not start with '-': that is the case
/// when the top 6 bits of the first byte are 62.
fn acceptable_topic_id(md: &Metadata, id: &Uuid) -> bool {
    let first = id.as_bytes()[0];
    !id.is_nil() && (first >> 2) != 62 && md.topic_by_id(id).is_none()
}

fn new_topic_id(md: &Metadata) -> Result<Uuid, ControllerError> {
    for _ in 0..64 {
        let id = Uuid::new_v4();
        if acceptable_topic_id(md, &id) {
            return Ok(id);
        }
    }
    Err(ControllerError::InvalidRequest(
        "could not generate a unique topic id".into(),
    ))
}

/// Plans the creation of a topic: validates the name, uniqueness, partition count and
/// replication factor (`-1` = broker default) and config overrides, then assigns replicas.
pub fn plan_create_topic(
    md: &Metadata,
    name: &str,
    num_partitions: i32,
    replication_factor: i16,
    configs: &BTreeMap<String, String>,
    broker: &BrokerSettings,
) -> Result<MetadataCommand, ControllerError> {
    validate_topic_name(name)?;
    if md.topics.contains_key(name) {
        return Err(topic_exists(name));
    }
    let key = collision_key(name);
    if let Some(other) = md.topics.keys().find(|t| collision_key(t) == key) {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic '{name}' collides with existing topic: {other}"
        )));
    }
    let partitions = match num_partitions {
        -1 => broker.num_partitions(),
        n if n <= 0 => {
            return Err(ControllerError::InvalidPartitions(
                "Number of partitions was set to an invalid non-positive value.".into(),
            ))
        }
        n => n,
    };
    if partitions > MAX_PARTITIONS_PER_TOPIC {
        return Err(too_many_partitions(
            usize::try_from(partitions).unwrap_or(0),
        ));
    }
    let rf = match replication_factor {
        -1 => broker.default_replication_factor(),
        r if r <= 0 => {
            return Err(ControllerError::InvalidReplicationFactor(
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ))
        }
        r => r,
    };
    validate_topic_configs(configs)?;
    let assignment = assign_replicas(md, 0, partitions, rf, broker.max_replication_factor())?;
    Ok(MetadataCommand::CreateTopic {
        name: name.to_string(),
        id: new_topic_id(md)?,
        partitions: assignment,
        configs: configs.clone(),
        internal: is_internal_topic(name),
    })
}

/// Plans growing a topic to `new_total` partitions, keeping its replication factor.
pub fn plan_create_partitions(
    md: &Metadata,
    name: &str,
    new_total: i32,
) -> Result<MetadataCommand, ControllerError> {
    let topic = md.topics.get(name).ok_or_else(|| unknown_topic(name))?;
    let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if new_total < current {
        return Err(ControllerError::InvalidPartitions(format!(
            "The topic {name} currently has {current} partition(s); {new_total} would not be an increase."
        )));
    }
    if new_total == current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic already has {current} partition(s)."
        )));
    }
    if new_total > MAX_PARTITIONS_PER_TOPIC {
        return Err(too_many_partitions(usize::try_from(new_total).unwrap_or(0)));
    }
    let rf = topic
        .partitions
        .first()
        .map(|p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX))
        .unwrap_or(1);
    let new_partitions = assign_replicas(md, current, new_total - current, rf, None)?;
    Ok(MetadataCommand::CreatePartitions {
        name: name.to_string(),
        new_partitions,
    })
}

/// Plans deleting a topic by name. Internal topics cannot be deleted (INVALID_REQUEST).
pub fn plan_delete_topic(md: &Metadata, name: &str) -> Result<MetadataCommand, ControllerError> {
    let topic = md.topics.get(name).ok_or_else(|| unknown_topic(name))?;
    if topic.internal {
        return Err(ControllerError::InvalidRequest(format!(
            "Topic {name} is an internal topic and cannot be deleted."
        )));
    }
    Ok(MetadataCommand::DeleteTopic {
        name: name.to_string(),
    })
}

/// Plans deleting a topic by id (DeleteTopics v6+); UNKNOWN_TOPIC_ID if there is none.
pub fn plan_delete_topic_by_id(
    md: &Metadata,
    id: &Uuid,
) -> Result<MetadataCommand, ControllerError> {
    let topic = md
        .topic_by_id(id)
        .ok_or_else(|| ControllerError::UnknownTopicId(format!("Topic id {id} does not exist.")))?;
    plan_delete_topic(md, &topic.name)
}

/// Plans setting (`Some`) / removing (`None`) topic config overrides. Every name must be a
/// known topic config and the resulting override set must be valid.
pub fn plan_alter_configs(
    md: &Metadata,
    name: &str,
    changes: &BTreeMap<String, Option<String>>,
) -> Result<MetadataCommand, ControllerError> {
    let topic = md.topics.get(name).ok_or_else(|| unknown_topic(name))?;
    for (k, v) in changes {
        match v {
            Some(v) => config::validate_topic_config(k, v)?,
            None => {
                if config::topic_config_def(k).is_none() {
                    return Err(config::ConfigError::Unknown(k.clone()).into());
                }
            }
        }
    }
    let mut merged = topic.configs.clone();
    apply_config_changes(&mut merged, changes);
    validate_topic_configs(&merged)?;
    Ok(MetadataCommand::AlterTopicConfigs {
        name: name.to_string(),
        configs: changes.clone(),
    })
}

/// Plans the legacy AlterConfigs semantics: `configs` becomes the complete override set
/// (overrides not named are removed).
pub fn plan_replace_configs(
    md: &Metadata,
    name: &str,
    configs: &BTreeMap<String, String>,
) -> Result<MetadataCommand, ControllerError> {
    let topic = md.topics.get(name).ok_or_else(|| unknown_topic(name))?;
    let mut changes: BTreeMap<String, Option<String>> = topic
        .configs
        .keys()
        .filter(|k| !configs.contains_key(*k))
        .map(|k| (k.clone(), None))
        .collect();
    for (k, v) in configs {
        changes.insert(k.clone(), Some(v.clone()));
    }
    plan_alter_configs(md, name, &changes)
}

/// IncrementalAlterConfigs operation (`config_operation` codes 0..=3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// SET (0).
    Set,
    /// DELETE (1): remove the override.
    Delete,
    /// APPEND (2): add items to a list config.
    Append,
    /// SUBTRACT (3): remove items from a list config.
    Subtract,
}

impl AlterConfigOp {
    /// From the wire code; `None` for an unknown code.
    pub fn from_wire(code: i8) -> Option<AlterConfigOp> {
        match code {
            0 => Some(AlterConfigOp::Set),
            1 => Some(AlterConfigOp::Delete),
            2 => Some(AlterConfigOp::Append),
            3 => Some(AlterConfigOp::Subtract),
            _ => None,
        }
    }
}

/// Plans an IncrementalAlterConfigs request for one topic. APPEND/SUBTRACT start from the
/// current effective value (override, broker setting or default) and are only allowed for
/// list configs. A config named twice is INVALID_REQUEST.
pub fn plan_incremental_alter_configs(
    md: &Metadata,
    name: &str,
    ops: &[(String, AlterConfigOp, Option<String>)],
    broker: &BrokerSettings,
) -> Result<MetadataCommand, ControllerError> {
    let topic = md.topics.get(name).ok_or_else(|| unknown_topic(name))?;
    let mut seen = BTreeSet::new();
    let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (key, op, value) in ops {
        if !seen.insert(key.as_str()) {
            return Err(ControllerError::InvalidRequest(format!(
                "Error due to duplicate config keys: {key}"
            )));
        }
        let def = config::topic_config_def(key)
            .ok_or_else(|| ControllerError::from(config::ConfigError::Unknown(key.clone())))?;
        match op {
            AlterConfigOp::Set => {
                let v = value.clone().ok_or_else(|| {
                    ControllerError::InvalidRequest(format!("Null value not supported for {key}"))
                })?;
                changes.insert(key.clone(), Some(v));
            }
            AlterConfigOp::Delete => {
                changes.insert(key.clone(), None);
            }
            AlterConfigOp::Append | AlterConfigOp::Subtract => {
                if def.kind != ConfigType::List {
                    return Err(ControllerError::InvalidConfig(format!(
                        "Config value append/subtract is not allowed for config key: {key}"
                    )));
                }
                let current = resolve_topic_config(key, &topic.configs, broker)
                    .and_then(|r| r.value)
                    .unwrap_or_default();
                let mut items = parse_list(&current);
                let given = parse_list(value.as_deref().unwrap_or(""));
                if *op == AlterConfigOp::Append {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                changes.insert(key.clone(), Some(items.join(",")));
            }
        }
    }
    plan_alter_configs(md, name, &changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> MetadataCommand {
        MetadataCommand::RegisterBroker(BrokerRegistration {
            node_id: id,
            incarnation_id: Uuid::nil(),
            host: "127.0.0.1".into(),
            port: 9092 + id,
            rack: None,
        })
    }

    fn md_with_brokers(n: i32) -> Metadata {
        let mut md = Metadata::new("cluster", 1);
        for i in 1..=n {
            md.apply(&broker(i)).unwrap();
        }
        md
    }

    fn defaults() -> BrokerSettings {
        BrokerSettings::default()
    }

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn create(md: &mut Metadata, name: &str, p: i32, rf: i16) -> Uuid {
        let cmd = plan_create_topic(md, name, p, rf, &BTreeMap::new(), &defaults()).unwrap();
        md.apply(&cmd).unwrap();
        md.topics[name].id
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("a.b_c-D9").is_ok());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            let e = validate_topic_name(bad).unwrap_err();
            assert_eq!(e.error_code(), 17, "{bad:?}");
        }
    }

    #[test]
    fn create_topic_defaults_and_placement() {
        let mut md = md_with_brokers(3);
        let (b, _) = BrokerSettings::from_map(&cfg(&[
            ("num.partitions", "4"),
            ("default.replication.factor", "2"),
        ]))
        .unwrap();
        let cmd = plan_create_topic(&md, "t", -1, -1, &BTreeMap::new(), &b).unwrap();
        md.apply(&cmd).unwrap();
        let t = &md.topics["t"];
        assert!(!t.internal);
        assert_eq!(t.partitions.len(), 4);
        for (i, p) in t.partitions.iter().enumerate() {
            assert_eq!(p.index, i as i32);
            assert_eq!(p.replicas.len(), 2);
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.leader_epoch, 0);
            assert_eq!(p.isr, p.replicas);
            assert_ne!(p.replicas[0], p.replicas[1]);
        }
        // Leaders rotate over the brokers.
        let leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1]);
        // The next topic starts at a rotated broker.
        create(&mut md, "u", 1, 1);
        assert_eq!(md.topics["u"].partitions[0].leader, 2); // 4 existing partitions % 3 = 1
        assert_eq!(md.topic_by_id(&md.topics["t"].id).unwrap().name, "t");
    }

    #[test]
    fn create_topic_errors() {
        let mut md = md_with_brokers(1);
        create(&mut md, "a.b", 1, 1);
        let d = defaults();
        let none = BTreeMap::new();
        let code = |r: Result<MetadataCommand, ControllerError>| r.unwrap_err().error_code();
        assert_eq!(code(plan_create_topic(&md, "a.b", 1, 1, &none, &d)), 36);
        assert_eq!(code(plan_create_topic(&md, "a_b", 1, 1, &none, &d)), 17);
        assert_eq!(
            code(plan_create_topic(&md, "bad name", 1, 1, &none, &d)),
            17
        );
        assert_eq!(code(plan_create_topic(&md, "x", 0, 1, &none, &d)), 37);
        assert_eq!(code(plan_create_topic(&md, "x", -2, 1, &none, &d)), 37);
        assert_eq!(
            code(plan_create_topic(&md, "x", i32::MAX, 1, &none, &d)),
            37
        );
        assert_eq!(code(plan_create_topic(&md, "x", 1, 0, &none, &d)), 38);
        assert_eq!(code(plan_create_topic(&md, "x", 1, -2, &none, &d)), 38);
        assert_eq!(code(plan_create_topic(&md, "x", 1, 2, &none, &d)), 38);
        let bad = cfg(&[("segment.bytes", "100")]);
        assert_eq!(code(plan_create_topic(&md, "x", 1, 1, &bad, &d)), 40);
        let unknown = cfg(&[("nope", "1")]);
        assert_eq!(code(plan_create_topic(&md, "x", 1, 1, &unknown, &d)), 40);
        // No brokers at all.
        let empty = Metadata::new("c", 1);
        assert_eq!(code(plan_create_topic(&empty, "x", 1, -1, &none, &d)), 38);
        // Internal topic flag.
        let cmd = plan_create_topic(&md, CONSUMER_OFFSETS_TOPIC, 2, 1, &none, &d).unwrap();
        md.apply(&cmd).unwrap();
        assert!(md.topics[CONSUMER_OFFSETS_TOPIC].internal);
    }

    #[test]
    fn apply_rejects_without_change() {
        let mut md = md_with_brokers(1);
        let id = create(&mut md, "t", 1, 1);
        let before = md.clone();
        let dup = MetadataCommand::CreateTopic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: before.topics["t"].partitions.clone(),
            configs: BTreeMap::new(),
            internal: false,
        };
        assert_eq!(md.apply(&dup).unwrap_err().error_code(), 36);
        let dup_id = MetadataCommand::CreateTopic {
            name: "t2".into(),
            id,
            partitions: before.topics["t"].partitions.clone(),
            configs: BTreeMap::new(),
            internal: false,
        };
        assert_eq!(md.apply(&dup_id).unwrap_err().error_code(), 42);
        let bad_idx = MetadataCommand::CreatePartitions {
            name: "t".into(),
            new_partitions: vec![PartitionInfo {
                index: 5,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1],
                isr: vec![1],
                partition_epoch: 0,
            }],
        };
        assert_eq!(md.apply(&bad_idx).unwrap_err().error_code(), 42);
        let bad_cfg = MetadataCommand::AlterTopicConfigs {
            name: "t".into(),
            configs: [("cleanup.policy".to_string(), Some("nope".to_string()))].into(),
        };
        assert_eq!(md.apply(&bad_cfg).unwrap_err().error_code(), 40);
        let bad_broker = MetadataCommand::RegisterBroker(BrokerRegistration {
            node_id: -1,
            incarnation_id: Uuid::new_v4(),
            host: "h".into(),
            port: 1,
            rack: None,
        });
        assert_eq!(md.apply(&bad_broker).unwrap_err().error_code(), 42);
        assert_eq!(
            md.apply(&MetadataCommand::DeleteTopic { name: "zz".into() })
                .unwrap_err()
                .error_code(),
            3
        );
        assert_eq!(md, before);
    }

    #[test]
    fn create_partitions() {
        let mut md = md_with_brokers(2);
        create(&mut md, "t", 2, 2);
        assert_eq!(
            plan_create_partitions(&md, "t", 1)
                .unwrap_err()
                .error_code(),
            37
        );
        assert_eq!(
            plan_create_partitions(&md, "t", 2)
                .unwrap_err()
                .error_code(),
            37
        );
        assert_eq!(
            plan_create_partitions(&md, "zz", 5)
                .unwrap_err()
                .error_code(),
            3
        );
        assert_eq!(
            plan_create_partitions(&md, "t", MAX_PARTITIONS_PER_TOPIC + 1)
                .unwrap_err()
                .error_code(),
            37
        );
        let cmd = plan_create_partitions(&md, "t", 5).unwrap();
        md.apply(&cmd).unwrap();
        let t = &md.topics["t"];
        assert_eq!(t.partitions.len(), 5);
        assert!(t
            .partitions
            .iter()
            .enumerate()
            .all(|(i, p)| p.index == i as i32 && p.replicas.len() == 2));
        // RF 2 topic cannot grow when only one broker remains registered.
        let mut one = md_with_brokers(1);
        one.topics = md.topics.clone();
        one.rebuild_index();
        assert_eq!(
            plan_create_partitions(&one, "t", 6)
                .unwrap_err()
                .error_code(),
            38
        );
    }

    #[test]
    fn delete_topic() {
        let mut md = md_with_brokers(1);
        let id = create(&mut md, "t", 1, 1);
        create(&mut md, CONSUMER_OFFSETS_TOPIC, 1, 1);
        assert_eq!(plan_delete_topic(&md, "zz").unwrap_err().error_code(), 3);
        assert_eq!(
            plan_delete_topic(&md, CONSUMER_OFFSETS_TOPIC)
                .unwrap_err()
                .error_code(),
            42
        );
        assert_eq!(
            plan_delete_topic_by_id(&md, &Uuid::new_v4())
                .unwrap_err()
                .error_code(),
            100
        );
        let cmd = plan_delete_topic_by_id(&md, &id).unwrap();
        md.apply(&cmd).unwrap();
        assert!(md.topic("t").is_none());
        assert!(md.topic_by_id(&id).is_none());
        // Name can be reused with a new id.
        let id2 = create(&mut md, "t", 1, 1);
        assert_ne!(id, id2);
    }

    #[test]
    fn alter_configs() {
        let mut md = md_with_brokers(1);
        create(&mut md, "t", 1, 1);
        let set = [("retention.ms".to_string(), Some("1000".to_string()))].into();
        md.apply(&plan_alter_configs(&md, "t", &set).unwrap())
            .unwrap();
        assert_eq!(md.topics["t"].configs["retention.ms"], "1000");
        let unknown = [("foo".to_string(), Some("1".to_string()))].into();
        assert_eq!(
            plan_alter_configs(&md, "t", &unknown)
                .unwrap_err()
                .error_code(),
            40
        );
        let unknown_del = [("foo".to_string(), None)].into();
        assert_eq!(
            plan_alter_configs(&md, "t", &unknown_del)
                .unwrap_err()
                .error_code(),
            40
        );
        assert_eq!(
            plan_alter_configs(&md, "zz", &set)
                .unwrap_err()
                .error_code(),
            3
        );
        // Cross-config rule against existing overrides.
        let max = [("max.compaction.lag.ms".to_string(), Some("5".to_string()))].into();
        md.apply(&plan_alter_configs(&md, "t", &max).unwrap())
            .unwrap();
        let min = [("min.compaction.lag.ms".to_string(), Some("6".to_string()))].into();
        assert_eq!(
            plan_alter_configs(&md, "t", &min).unwrap_err().error_code(),
            40
        );

        // Replace semantics drop unnamed overrides.
        let cmd = plan_replace_configs(&md, "t", &cfg(&[("segment.ms", "100")])).unwrap();
        md.apply(&cmd).unwrap();
        assert_eq!(md.topics["t"].configs, cfg(&[("segment.ms", "100")]));
        let del = [("segment.ms".to_string(), None)].into();
        md.apply(&plan_alter_configs(&md, "t", &del).unwrap())
            .unwrap();
        assert!(md.topics["t"].configs.is_empty());
    }

    #[test]
    fn incremental_alter() {
        let mut md = md_with_brokers(1);
        create(&mut md, "t", 1, 1);
        let d = defaults();
        let ops = vec![(
            "cleanup.policy".to_string(),
            AlterConfigOp::Append,
            Some("compact".to_string()),
        )];
        md.apply(&plan_incremental_alter_configs(&md, "t", &ops, &d).unwrap())
            .unwrap();
        assert_eq!(md.topics["t"].configs["cleanup.policy"], "delete,compact");
        let ops = vec![(
            "cleanup.policy".to_string(),
            AlterConfigOp::Subtract,
            Some("delete".to_string()),
        )];
        md.apply(&plan_incremental_alter_configs(&md, "t", &ops, &d).unwrap())
            .unwrap();
        assert_eq!(md.topics["t"].configs["cleanup.policy"], "compact");
        // Subtracting everything leaves an empty policy (accepted, as in Kafka 4.1).
        let ops = vec![(
            "cleanup.policy".to_string(),
            AlterConfigOp::Subtract,
            Some("compact".to_string()),
        )];
        md.apply(&plan_incremental_alter_configs(&md, "t", &ops, &d).unwrap())
            .unwrap();
        assert_eq!(md.topics["t"].configs["cleanup.policy"], "");
        let ops = vec![(
            "retention.ms".to_string(),
            AlterConfigOp::Append,
            Some("1".to_string()),
        )];
        assert_eq!(
            plan_incremental_alter_configs(&md, "t", &ops, &d)
                .unwrap_err()
                .error_code(),
            40
        );
        let ops = vec![
            (
                "retention.ms".to_string(),
                AlterConfigOp::Set,
                Some("1".to_string()),
            ),
            ("retention.ms".to_string(), AlterConfigOp::Delete, None),
        ];
        assert_eq!(
            plan_incremental_alter_configs(&md, "t", &ops, &d)
                .unwrap_err()
                .error_code(),
            42
        );
        let ops = vec![
            (
                "retention.ms".to_string(),
                AlterConfigOp::Set,
                Some("1".to_string()),
            ),
            ("cleanup.policy".to_string(), AlterConfigOp::Delete, None),
        ];
        md.apply(&plan_incremental_alter_configs(&md, "t", &ops, &d).unwrap())
            .unwrap();
        assert_eq!(md.topics["t"].configs, cfg(&[("retention.ms", "1")]));
        assert_eq!(AlterConfigOp::from_wire(3), Some(AlterConfigOp::Subtract));
        assert_eq!(AlterConfigOp::from_wire(4), None);
    }

    #[test]
    fn commands_roundtrip_json() {
        let mut md = md_with_brokers(1);
        let cmd =
            plan_create_topic(&md, "t", 2, 1, &cfg(&[("retention.ms", "5")]), &defaults()).unwrap();
        let json = serde_json::to_string(&cmd).unwrap();
        let back: MetadataCommand = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cmd);
        md.apply(&back).unwrap();
        let snap = serde_json::to_string(&md).unwrap();
        let mut md2: Metadata = serde_json::from_str(&snap).unwrap();
        md2.rebuild_index();
        assert_eq!(md2, md);
    }

    #[test]
    fn old_json_still_replays() {
        // Written by the single-node version: no incarnation, epochs or fencing.
        let old_cmd = r#"{"RegisterBroker":{"node_id":1,"host":"h","port":9092,"rack":null}}"#;
        let cmd: MetadataCommand = serde_json::from_str(old_cmd).unwrap();
        let mut md = Metadata::new("c", 1);
        md.apply(&cmd).unwrap();
        let b = &md.brokers[&1];
        assert!(b.is_eligible() && b.incarnation_id.is_nil());
        let old_topic = r#"{"CreateTopic":{"name":"t","id":"0b9a6c4e-7f39-4a36-9c1e-5d0d2f7b1c11","partitions":[{"index":0,"leader":1,"leader_epoch":3,"replicas":[1],"isr":[1]}],"configs":{},"internal":false}}"#;
        let cmd: MetadataCommand = serde_json::from_str(old_topic).unwrap();
        md.apply(&cmd).unwrap();
        assert_eq!(md.topics["t"].partitions[0].leader, 1);
        assert_eq!(md.topics["t"].partitions[0].partition_epoch, 0);
        let old_snapshot = r#"{"cluster_id":"c","controller_id":1,"brokers":{"1":{"node_id":1,"host":"h","port":9092,"rack":null}},"topics":{}}"#;
        let snap: Metadata = serde_json::from_str(old_snapshot).unwrap();
        assert!(snap.brokers[&1].is_eligible());
        assert_eq!((snap.last_broker_epoch, snap.next_producer_id), (0, 0));
        // The next real registration gets an epoch above the legacy 0.
        let mut snap = snap;
        snap.apply(&MetadataCommand::RegisterBroker(BrokerRegistration {
            node_id: 1,
            incarnation_id: Uuid::new_v4(),
            host: "h".into(),
            port: 9092,
            rack: None,
        }))
        .unwrap();
        assert_eq!(snap.brokers[&1].broker_epoch, 1);
        assert!(snap.brokers[&1].fenced);
    }

    #[test]
    fn topic_ids_are_kafka_safe() {
        let md = md_with_brokers(1);
        for _ in 0..200 {
            let id = new_topic_id(&md).unwrap();
            assert!(!id.is_nil());
            assert_ne!(id.as_bytes()[0] >> 2, 62);
        }
    }
}
