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
mod dynamic_configs;
mod elect;
mod partitions;
mod placement;
mod reassign;

pub use brokers::{new_incarnation_id, NO_LEADER};
pub use dynamic_configs::{plan_alter_broker_configs, DYNAMIC_BROKER_CONFIGS};
pub use elect::{
    plan_elect_leaders, plan_leader_rebalance, ElectionPlan, ElectionType, PartitionElection,
};
use placement::assign_replicas;
pub use reassign::{plan_reassignments, Reassignment, ReassignmentPlan};

/// Largest partition count a topic may have in Sluice (guards memory against huge requests).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;
/// Longest legal topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// The group coordinator's offsets topic.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The transaction coordinator's state topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Registered brokers by node id.
pub(crate) type BrokersById = BTreeMap<i32, BrokerInfo>;

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
    /// Inter-broker address (`HOST:PORT`) followers fetch from, when it differs from the
    /// client one (Kafka's `inter.broker.listener.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inter_broker: Option<String>,
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
    /// The address other brokers fetch from: the inter-broker one if registered, else the
    /// client one.
    pub fn replication_addr(&self) -> String {
        self.inter_broker
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.host, self.port))
    }

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
    /// Inter-broker address (`HOST:PORT`) followers fetch from; `None` = the client one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inter_broker: Option<String>,
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
    /// Kafka's partition epoch: bumped on every change of leader, ISR or replicas.
    #[serde(default)]
    pub partition_epoch: i32,
    /// Replicas a reassignment in progress adds (they are in `replicas` too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas a reassignment in progress removes once the added ones are in sync (they are
    /// in `replicas` too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionInfo {
    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }
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
    /// Dynamic broker configs (Kafka's BROKER config resources): by resource name, `""` for
    /// the cluster-wide default, else a node id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
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
            broker_configs,
            topic_ids: _,
        } = self;
        *cluster_id == other.cluster_id
            && *controller_id == other.controller_id
            && *brokers == other.brokers
            && *topics == other.topics
            && *last_broker_epoch == other.last_broker_epoch
            && *next_producer_id == other.next_producer_id
            && *last_producer_id_block == other.last_producer_id_block
            && *broker_configs == other.broker_configs
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
    /// Kafka's ElectLeaders (KIP-460) for the named partitions, and the automatic
    /// preferred-leader rebalance. All or nothing: every partition must be electable now
    /// ([`Metadata::election_outcome`]); each then gets its new leader and both epochs are
    /// bumped. Plan it with [`plan_elect_leaders`] / [`plan_leader_rebalance`].
    ElectLeaders {
        /// PREFERRED or UNCLEAN.
        election_type: ElectionType,
        /// (topic, partition), each at most once.
        partitions: Vec<(String, i32)>,
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
    /// Starts, changes or cancels partition reassignments (Kafka's
    /// AlterPartitionReassignments). All or nothing; plan it with [`plan_reassignments`].
    AlterPartitionReassignments {
        /// The changes, each partition at most once.
        changes: Vec<Reassignment>,
    },
    /// Sets (`Some`) or removes (`None`) dynamic broker configs of one BROKER resource
    /// (`""` = the cluster-wide default, else a node id). Plan it with
    /// [`plan_alter_broker_configs`].
    AlterBrokerConfigs {
        /// Resource name.
        resource: String,
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
            MetadataCommand::ElectLeaders {
                election_type,
                partitions,
            } => self.elect_leaders(*election_type, partitions),
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
            MetadataCommand::AlterPartitionReassignments { changes } => self.reassign(changes),
            MetadataCommand::AlterBrokerConfigs { resource, configs } => {
                dynamic_configs::check_changes(resource, configs)?;
                let entry = self.broker_configs.entry(resource.clone()).or_default();
                apply_config_changes(entry, configs);
                if entry.is_empty() {
                    self.broker_configs.remove(resource);
                }
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

/// Plans CreateTopics with a manual replica assignment (`assignment[i]` = the replicas of
/// partition `i`, the first one the leader), as Kafka checks it: every list non-empty, of the
/// same length, without duplicates, naming registered brokers (INVALID_REPLICA_ASSIGNMENT).
pub fn plan_create_topic_with_assignment(
    md: &Metadata,
    name: &str,
    assignment: &[Vec<i32>],
    configs: &BTreeMap<String, String>,
    broker: &BrokerSettings,
) -> Result<MetadataCommand, ControllerError> {
    let bad = |msg: String| Err(ControllerError::InvalidReplicaAssignment(msg));
    let Some(first) = assignment.first() else {
        return bad("The manual partition assignment is empty.".into());
    };
    for (i, replicas) in assignment.iter().enumerate() {
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        if replicas.is_empty() || distinct.len() != replicas.len() {
            return bad(format!(
                "The manual partition assignment of partition {i} is empty or names a broker twice: {replicas:?}."
            ));
        }
        if replicas.len() != first.len() {
            return bad(format!(
                "The manual partition assignment of partition {i} has {} replicas, partition 0 has {}.",
                replicas.len(),
                first.len()
            ));
        }
        if let Some(b) = replicas.iter().find(|b| !md.brokers.contains_key(b)) {
            return bad(format!(
                "The manual partition assignment includes broker {b}, but no such broker is registered."
            ));
        }
    }
    let n = i32::try_from(assignment.len()).map_err(|_| too_many_partitions(assignment.len()))?;
    // The usual checks (name, collisions, counts, configs) with one replica per partition,
    // then the placement is replaced by the manual one.
    let mut relaxed = broker.clone();
    relaxed.set_max_replication_factor(None);
    let mut cmd = plan_create_topic(md, name, n, 1, configs, &relaxed)?;
    if let MetadataCommand::CreateTopic { partitions, .. } = &mut cmd {
        for (p, replicas) in partitions.iter_mut().zip(assignment) {
            p.replicas = replicas.clone();
            p.isr = replicas.clone();
            p.leader = replicas.first().copied().unwrap_or(NO_LEADER);
        }
    }
    Ok(cmd)
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

/// Turns IncrementalAlterConfigs operations into changes (`Some` = set, `None` = remove), on top
/// of those already in `changes`. `is_list(key)` is whether the config is a list (or the error
/// for a key the resource does not know); APPEND/SUBTRACT work on `current(key)` and only on
/// lists. A key named twice is INVALID_REQUEST, a SET without a value too.
pub(super) fn apply_config_ops(
    ops: &[(String, AlterConfigOp, Option<String>)],
    changes: &mut BTreeMap<String, Option<String>>,
    is_list: impl Fn(&str) -> Result<bool, ControllerError>,
    current: impl Fn(&str) -> String,
) -> Result<(), ControllerError> {
    let mut seen = BTreeSet::new();
    for (key, op, value) in ops {
        if !seen.insert(key.as_str()) {
            return Err(ControllerError::InvalidRequest(format!(
                "Error due to duplicate config keys: {key}"
            )));
        }
        let list = is_list(key)?;
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
                if !list {
                    return Err(ControllerError::InvalidConfig(format!(
                        "Config value append/subtract is not allowed for config key: {key}"
                    )));
                }
                let mut items = parse_list(&current(key));
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
    Ok(())
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
    let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
    apply_config_ops(
        ops,
        &mut changes,
        |key| {
            config::topic_config_def(key)
                .map(|d| d.kind == ConfigType::List)
                .ok_or_else(|| ControllerError::from(config::ConfigError::Unknown(key.into())))
        },
        |key| {
            resolve_topic_config(key, &topic.configs, broker)
                .and_then(|r| r.value)
                .unwrap_or_default()
        },
    )?;
    plan_alter_configs(md, name, &changes)
}

#[cfg(test)]
mod tests;
