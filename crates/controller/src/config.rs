//! Registry of Kafka configuration names, defaults and validators, for topics and brokers.
//!
//! Names, types, defaults and valid ranges follow Apache Kafka 4.1 (`LogConfig` for topics,
//! `KafkaConfig` for the broker settings Sluice understands). The doc strings are our own.
//!
//! Resolution of a topic config follows Kafka's precedence:
//! topic override ([`ConfigSource::TopicConfig`]) > broker setting given at startup through a
//! synonym ([`ConfigSource::StaticBrokerConfig`]) > Kafka default ([`ConfigSource::DefaultConfig`]).
//! Sluice has no dynamic broker configs, so sources 2 and 3 are never produced.
//!
//! Topic configs Sluice knows but does not act on (tiered storage: `remote.storage.enable`,
//! `local.retention.*`, `remote.log.*`; throttled replica lists) are listed with their Kafka
//! defaults so DescribeConfigs output matches Kafka; `remote.storage.enable` only accepts `false`.
//! `message.downconversion.enable` is not listed: Kafka 4 removed it.

use std::collections::BTreeMap;
use std::fmt;

/// `Long.MAX_VALUE` as Kafka writes it; used as "never" by several configs.
pub const LONG_MAX: i64 = i64::MAX;

/// Errors from config validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The config name is not known.
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    /// The value does not parse or is out of the valid range.
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    Invalid {
        /// Config name.
        name: String,
        /// Offending value.
        value: String,
        /// Human readable reason.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(name: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Kafka error code for this error: INVALID_CONFIG (40).
    pub fn error_code(&self) -> i16 {
        40
    }
}

/// Type of a config value, as in Kafka's `ConfigDef.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigType {
    /// `true` / `false` (case-insensitive).
    Boolean,
    /// 32-bit signed integer.
    Int,
    /// 16-bit signed integer.
    Short,
    /// 64-bit signed integer.
    Long,
    /// Floating point number.
    Double,
    /// Free-form string.
    String,
    /// Comma-separated list.
    List,
    /// Secret string; never returned by describe.
    Password,
    /// Java class name (kept for wire compatibility).
    Class,
}

impl ConfigType {
    /// DescribeConfigs `config_type` code: BOOLEAN=1, STRING=2, INT=3, SHORT=4, LONG=5,
    /// DOUBLE=6, LIST=7, CLASS=8, PASSWORD=9.
    pub fn wire_code(&self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }
}

/// Where a resolved config value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum ConfigSource {
    /// Source unknown.
    Unknown = 0,
    /// Per-topic override.
    TopicConfig = 1,
    /// Dynamic per-broker config.
    DynamicBrokerConfig = 2,
    /// Dynamic cluster-wide default broker config.
    DynamicDefaultBrokerConfig = 3,
    /// Broker setting given at startup (`--set`, TOML).
    StaticBrokerConfig = 4,
    /// Built-in default.
    DefaultConfig = 5,
}

impl ConfigSource {
    /// The wire code (same as the discriminant).
    pub fn wire_code(self) -> i8 {
        self as i8
    }
}

/// Value constraint of a config, checked after the value parsed as its [`ConfigType`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validator {
    /// Anything that parses as the type.
    Any,
    /// Integer `>= min`.
    AtLeast(i64),
    /// Integer in `[min, max]`.
    Between(i64, i64),
    /// Integer in `[min, max]` or exactly the third value.
    BetweenOr(i64, i64, i64),
    /// Floating point in `[min, max]`.
    RatioBetween(f64, f64),
    /// One of the given strings (case-sensitive).
    OneOf(&'static [&'static str]),
    /// List whose items are all in the given set (an empty list is accepted, as in Kafka 4.1).
    ListOf(&'static [&'static str]),
    /// `*` or a list of `partition:broker` pairs.
    ThrottledReplicas,
    /// Only this (normalised) value is supported by Sluice.
    Only(&'static str),
}

/// Definition of one config: name, type, default, broker synonyms, doc and validator.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    /// Kafka config name.
    pub name: &'static str,
    /// Value type.
    pub kind: ConfigType,
    /// Default value as a string (`None` = no default).
    pub default: Option<&'static str>,
    /// For topic configs: broker configs that provide the default, in priority order. A name
    /// ending in `.hours` or `.minutes` is converted to milliseconds.
    pub broker_synonyms: &'static [&'static str],
    /// Short description.
    pub doc: &'static str,
    /// Value constraint.
    pub validator: Validator,
}

impl ConfigDef {
    /// Checks that `value` parses as this config's type and satisfies its validator.
    pub fn validate(&self, value: &str) -> Result<(), ConfigError> {
        validate_value(self, value)
    }

    /// Whether values of this config must never be returned.
    pub fn sensitive(&self) -> bool {
        self.kind == ConfigType::Password
    }
}

const fn def(
    name: &'static str,
    kind: ConfigType,
    default: Option<&'static str>,
    broker_synonyms: &'static [&'static str],
    validator: Validator,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
        broker_synonyms,
        doc,
        validator,
    }
}

use ConfigType as T;
use Validator as V;

const LONG_MAX_STR: &str = "9223372036854775807";
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];

#[rustfmt::skip]
static TOPIC_CONFIGS: &[ConfigDef] = &[
    def("cleanup.policy", T::List, Some("delete"), &["log.cleanup.policy"], V::ListOf(CLEANUP_POLICIES),
        "How old segments are cleaned up: 'delete' drops segments past the retention limits, 'compact' keeps only the latest record per key; both may be given, comma-separated."),
    def("compression.gzip.level", T::Int, Some("-1"), &["compression.gzip.level"], V::BetweenOr(1, 9, -1),
        "Gzip level used when compression.type is gzip (-1 = codec default)."),
    def("compression.lz4.level", T::Int, Some("9"), &["compression.lz4.level"], V::Between(1, 17),
        "LZ4 level used when compression.type is lz4."),
    def("compression.type", T::String, Some("producer"), &["compression.type"], V::OneOf(COMPRESSION_TYPES),
        "Codec the topic stores batches with; 'producer' keeps whatever the producer sent, 'uncompressed' stores them uncompressed."),
    def("compression.zstd.level", T::Int, Some("3"), &["compression.zstd.level"], V::Between(-131072, 22),
        "Zstandard level used when compression.type is zstd."),
    def("delete.retention.ms", T::Long, Some("86400000"), &["log.cleaner.delete.retention.ms"], V::AtLeast(0),
        "How long tombstones are kept on a compacted topic before they may be removed."),
    def("errors.deadletterqueue.group.enable", T::Boolean, Some("false"), &[], V::Any,
        "Share groups: whether a dead-letter queue is used for the topic's records. Not acted on by Sluice (no share groups)."),
    def("file.delete.delay.ms", T::Long, Some("60000"), &["log.segment.delete.delay.ms"], V::AtLeast(0),
        "Delay before a deleted segment file is removed from disk."),
    def("flush.messages", T::Long, Some(LONG_MAX_STR), &["log.flush.interval.messages"], V::AtLeast(1),
        "Force an fsync after this many messages are appended to a partition (the maximum means never; rely on the OS)."),
    def("flush.ms", T::Long, Some(LONG_MAX_STR), &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"], V::AtLeast(0),
        "Force an fsync when unflushed data is older than this many milliseconds (the maximum means never)."),
    def("follower.replication.throttled.replicas", T::List, Some(""), &[], V::ThrottledReplicas,
        "Follower replicas whose fetching is throttled by follower.replication.throttled.rate while out of sync, as partition:broker pairs or '*'."),
    def("index.interval.bytes", T::Int, Some("4096"), &["log.index.interval.bytes"], V::AtLeast(0),
        "Approximate number of log bytes between two offset-index entries."),
    def("leader.replication.throttled.replicas", T::List, Some(""), &[], V::ThrottledReplicas,
        "Leader replicas whose sending to out-of-sync followers is throttled by leader.replication.throttled.rate, as partition:broker pairs or '*'."),
    def("local.retention.bytes", T::Long, Some("-2"), &["log.local.retention.bytes"], V::AtLeast(-2),
        "Tiered storage: local size limit (-2 = use retention.bytes). Not acted on by Sluice."),
    def("local.retention.ms", T::Long, Some("-2"), &["log.local.retention.ms"], V::AtLeast(-2),
        "Tiered storage: local time limit (-2 = use retention.ms). Not acted on by Sluice."),
    def("max.compaction.lag.ms", T::Long, Some(LONG_MAX_STR), &["log.cleaner.max.compaction.lag.ms"], V::AtLeast(1),
        "Longest time a record may stay uncompacted on a compacted topic."),
    def("max.decompressed.message.bytes", T::Int, Some("2147483639"), &["max.decompressed.message.bytes"], V::AtLeast(0),
        "Largest size a record batch may have once decompressed. Not acted on by Sluice yet."),
    def("max.message.bytes", T::Int, Some("1048588"), &["message.max.bytes"], V::AtLeast(0),
        "Largest record batch (after compression) the topic accepts."),
    def("message.timestamp.after.max.ms", T::Long, Some("3600000"), &["log.message.timestamp.after.max.ms"], V::AtLeast(0),
        "With CreateTime, reject batches whose timestamp is further than this in the future of the broker clock."),
    def("message.timestamp.before.max.ms", T::Long, Some(LONG_MAX_STR), &["log.message.timestamp.before.max.ms"], V::AtLeast(0),
        "With CreateTime, reject batches whose timestamp is further than this in the past of the broker clock."),
    def("message.timestamp.type", T::String, Some("CreateTime"), &["log.message.timestamp.type"], V::OneOf(TIMESTAMP_TYPES),
        "Whether record timestamps are the producer's (CreateTime) or set by the broker on append (LogAppendTime)."),
    def("min.cleanable.dirty.ratio", T::Double, Some("0.5"), &["log.cleaner.min.cleanable.ratio"], V::RatioBetween(0.0, 1.0),
        "Share of uncompacted log above which the cleaner compacts a partition."),
    def("min.compaction.lag.ms", T::Long, Some("0"), &["log.cleaner.min.compaction.lag.ms"], V::AtLeast(0),
        "Shortest time a record stays uncompacted on a compacted topic."),
    def("min.insync.replicas", T::Int, Some("1"), &["min.insync.replicas"], V::AtLeast(1),
        "Replicas that must acknowledge an acks=all write for it to succeed."),
    def("preallocate", T::Boolean, Some("false"), &["log.preallocate"], V::Any,
        "Whether new segment files are preallocated to their full size."),
    def("remote.copy.lag.bytes", T::Long, Some("-1"), &["log.remote.copy.lag.bytes"], V::AtLeast(-1),
        "Tiered storage: bytes a segment may wait before being copied to remote storage. Not acted on by Sluice."),
    def("remote.copy.lag.ms", T::Long, Some("0"), &["log.remote.copy.lag.ms"], V::AtLeast(0),
        "Tiered storage: time a segment may wait before being copied to remote storage. Not acted on by Sluice."),
    def("remote.log.copy.disable", T::Boolean, Some("false"), &[], V::Any,
        "Tiered storage: stop copying segments to remote storage. Not acted on by Sluice."),
    def("remote.log.delete.on.disable", T::Boolean, Some("false"), &[], V::Any,
        "Tiered storage: delete remote data when tiering is disabled. Not acted on by Sluice."),
    def("remote.storage.enable", T::Boolean, Some("false"), &[], V::Only("false"),
        "Tiered storage switch. Sluice has no tiered storage, so only false is accepted."),
    def("retention.bytes", T::Long, Some("-1"), &["log.retention.bytes"], V::Any,
        "Per-partition size above which the oldest segments are deleted (-1 = no size limit)."),
    def("retention.ms", T::Long, Some("604800000"), &["log.retention.ms", "log.retention.minutes", "log.retention.hours"], V::AtLeast(-1),
        "Age after which segments are deleted (-1 = no time limit)."),
    def("segment.bytes", T::Int, Some("1073741824"), &["log.segment.bytes"], V::AtLeast(1024 * 1024),
        "Size at which the active segment is rolled (at least 1 MiB)."),
    def("segment.index.bytes", T::Int, Some("10485760"), &["log.index.size.max.bytes"], V::AtLeast(4),
        "Maximum size of a segment's offset and time indexes."),
    def("segment.jitter.ms", T::Long, Some("0"), &["log.roll.jitter.ms", "log.roll.jitter.hours"], V::AtLeast(0),
        "Random jitter subtracted from segment.ms to avoid rolling every partition at once."),
    def("segment.ms", T::Long, Some("604800000"), &["log.roll.ms", "log.roll.hours"], V::AtLeast(1),
        "Age at which the active segment is rolled even if not full."),
    def("unclean.leader.election.enable", T::Boolean, Some("false"), &["unclean.leader.election.enable"], V::Any,
        "Whether an out-of-sync replica may become leader (risking data loss)."),
];

#[rustfmt::skip]
static BROKER_CONFIGS: &[ConfigDef] = &[
    def("auto.create.topics.enable", T::Boolean, Some("true"), &[], V::Any,
        "Create a topic on first Metadata/Produce request naming it."),
    def("auto.leader.rebalance.enable", T::Boolean, Some("true"), &[], V::Any,
        "The active controller moves leadership back to preferred replicas of imbalanced brokers."),
    def("broker.heartbeat.interval.ms", T::Int, Some("2000"), &[], V::AtLeast(1), "How often a broker heartbeats to the active controller."),
    def("broker.session.timeout.ms", T::Int, Some("9000"), &[], V::AtLeast(1), "A broker that has not heartbeated for this long is fenced."),
    def("compression.gzip.level", T::Int, Some("-1"), &[], V::BetweenOr(1, 9, -1), "Default gzip level for topics."),
    def("compression.lz4.level", T::Int, Some("9"), &[], V::Between(1, 17), "Default LZ4 level for topics."),
    def("compression.type", T::String, Some("producer"), &[], V::OneOf(COMPRESSION_TYPES), "Default topic compression codec."),
    def("compression.zstd.level", T::Int, Some("3"), &[], V::Between(-131072, 22), "Default zstd level for topics."),
    def("connections.max.idle.ms", T::Long, Some("600000"), &[], V::Any, "Idle connections are closed after this long."),
    def("default.replication.factor", T::Int, Some("1"), &[], V::AtLeast(1),
        "Replication factor of topics created without one."),
    def("delete.topic.enable", T::Boolean, Some("true"), &[], V::Any, "Whether topics may be deleted."),
    def("fetch.max.bytes", T::Int, Some("57671680"), &[], V::AtLeast(1024), "Upper bound on the bytes returned by one fetch."),
    def("follower.replication.throttled.rate", T::Long, Some(LONG_MAX_STR), &[], V::AtLeast(0),
        "Bytes per second a follower may fetch for the partitions in follower.replication.throttled.replicas while they are out of sync (dynamic)."),
    def("group.initial.rebalance.delay.ms", T::Int, Some("3000"), &[], V::Any,
        "How long the coordinator waits for more members before the first rebalance of an empty group."),
    def("group.max.session.timeout.ms", T::Int, Some("1800000"), &[], V::Any, "Largest session timeout a member may ask for."),
    def("group.min.session.timeout.ms", T::Int, Some("6000"), &[], V::Any, "Smallest session timeout a member may ask for."),
    def("leader.imbalance.check.interval.seconds", T::Long, Some("300"), &[], V::AtLeast(1), "How often the active controller checks leader imbalance."),
    def("leader.imbalance.per.broker.percentage", T::Int, Some("10"), &[], V::AtLeast(0), "Share of a broker's preferred partitions it may not lead before a rebalance."),
    def("leader.replication.throttled.rate", T::Long, Some(LONG_MAX_STR), &[], V::AtLeast(0),
        "Bytes per second a leader may send to out-of-sync followers of the partitions in leader.replication.throttled.replicas (dynamic)."),
    def("log.cleaner.backoff.ms", T::Long, Some("15000"), &[], V::AtLeast(0), "Pause of the cleaner when no log needs cleaning."),
    def("log.cleaner.delete.retention.ms", T::Long, Some("86400000"), &[], V::AtLeast(0), "Default for delete.retention.ms."),
    def("log.cleaner.enable", T::Boolean, Some("true"), &[], V::Any, "Whether the log cleaner (compaction) runs."),
    def("log.cleaner.io.max.bytes.per.second", T::Double, Some("1.7976931348623157E308"), &[], V::Any, "Read+write rate limit of the log cleaner."),
    def("log.cleaner.max.compaction.lag.ms", T::Long, Some(LONG_MAX_STR), &[], V::AtLeast(1), "Default for max.compaction.lag.ms."),
    def("log.cleaner.min.cleanable.ratio", T::Double, Some("0.5"), &[], V::RatioBetween(0.0, 1.0), "Default for min.cleanable.dirty.ratio."),
    def("log.cleaner.min.compaction.lag.ms", T::Long, Some("0"), &[], V::AtLeast(0), "Default for min.compaction.lag.ms."),
    def("log.cleanup.policy", T::List, Some("delete"), &[], V::ListOf(CLEANUP_POLICIES), "Default for cleanup.policy."),
    def("log.flush.interval.messages", T::Long, Some(LONG_MAX_STR), &[], V::AtLeast(1), "Default for flush.messages."),
    def("log.flush.interval.ms", T::Long, None, &[], V::Any, "Default for flush.ms; falls back to log.flush.scheduler.interval.ms."),
    def("log.flush.scheduler.interval.ms", T::Long, Some(LONG_MAX_STR), &[], V::Any, "How often the flusher looks for partitions to fsync."),
    def("log.index.interval.bytes", T::Int, Some("4096"), &[], V::AtLeast(0), "Default for index.interval.bytes."),
    def("log.index.size.max.bytes", T::Int, Some("10485760"), &[], V::AtLeast(4), "Default for segment.index.bytes."),
    def("log.local.retention.bytes", T::Long, Some("-2"), &[], V::AtLeast(-2), "Default for local.retention.bytes."),
    def("log.local.retention.ms", T::Long, Some("-2"), &[], V::AtLeast(-2), "Default for local.retention.ms."),
    def("log.message.timestamp.after.max.ms", T::Long, Some("3600000"), &[], V::AtLeast(0), "Default for message.timestamp.after.max.ms."),
    def("log.message.timestamp.before.max.ms", T::Long, Some(LONG_MAX_STR), &[], V::AtLeast(0), "Default for message.timestamp.before.max.ms."),
    def("log.message.timestamp.type", T::String, Some("CreateTime"), &[], V::OneOf(TIMESTAMP_TYPES), "Default for message.timestamp.type."),
    def("log.preallocate", T::Boolean, Some("false"), &[], V::Any, "Default for preallocate."),
    def("log.remote.copy.lag.bytes", T::Long, Some("-1"), &[], V::AtLeast(-1), "Default for remote.copy.lag.bytes."),
    def("log.remote.copy.lag.ms", T::Long, Some("0"), &[], V::AtLeast(0), "Default for remote.copy.lag.ms."),
    def("log.retention.bytes", T::Long, Some("-1"), &[], V::Any, "Default for retention.bytes."),
    def("log.retention.check.interval.ms", T::Long, Some("300000"), &[], V::AtLeast(1), "How often retention is enforced."),
    def("log.retention.hours", T::Int, Some("168"), &[], V::Any, "Default retention in hours; used when log.retention.ms and .minutes are unset."),
    def("log.retention.minutes", T::Int, None, &[], V::Any, "Default retention in minutes; used when log.retention.ms is unset."),
    def("log.retention.ms", T::Long, None, &[], V::Any, "Default for retention.ms (-1 = unlimited)."),
    def("log.roll.hours", T::Int, Some("168"), &[], V::AtLeast(1), "Default segment age in hours; used when log.roll.ms is unset."),
    def("log.roll.jitter.hours", T::Int, Some("0"), &[], V::AtLeast(0), "Default segment jitter in hours; used when log.roll.jitter.ms is unset."),
    def("log.roll.jitter.ms", T::Long, None, &[], V::Any, "Default for segment.jitter.ms."),
    def("log.roll.ms", T::Long, None, &[], V::Any, "Default for segment.ms."),
    def("log.segment.bytes", T::Int, Some("1073741824"), &[], V::AtLeast(1024 * 1024), "Default for segment.bytes."),
    def("log.segment.delete.delay.ms", T::Long, Some("60000"), &[], V::AtLeast(0), "Default for file.delete.delay.ms."),
    def("max.connections", T::Int, Some("2147483647"), &[], V::AtLeast(0), "Maximum number of client connections."),
    def("max.connections.per.ip", T::Int, Some("2147483647"), &[], V::AtLeast(0), "Maximum number of client connections from one IP address."),
    def("max.decompressed.message.bytes", T::Int, Some("2147483639"), &[], V::AtLeast(0), "Default for max.decompressed.message.bytes."),
    def("message.max.bytes", T::Int, Some("1048588"), &[], V::AtLeast(0), "Default for max.message.bytes."),
    def("min.insync.replicas", T::Int, Some("1"), &[], V::AtLeast(1), "Default for min.insync.replicas."),
    def("num.io.threads", T::Int, Some("8"), &[], V::AtLeast(1), "Request handler threads."),
    def("num.network.threads", T::Int, Some("3"), &[], V::AtLeast(1), "Network threads."),
    def("num.partitions", T::Int, Some("1"), &[], V::AtLeast(1), "Partition count of topics created without one."),
    def("offset.metadata.max.bytes", T::Int, Some("4096"), &[], V::Any, "Largest metadata string stored with a committed offset."),
    def("offsets.commit.timeout.ms", T::Int, Some("5000"), &[], V::AtLeast(1), "Time an offset commit may wait to be written."),
    def("offsets.retention.minutes", T::Int, Some("10080"), &[], V::AtLeast(1), "How long committed offsets of empty groups are kept."),
    def("offsets.topic.num.partitions", T::Int, Some("50"), &[], V::AtLeast(1), "Partitions of __consumer_offsets."),
    def("offsets.topic.replication.factor", T::Short, Some("3"), &[], V::AtLeast(1),
        "Replication factor of __consumer_offsets (capped to the available brokers by Sluice)."),
    def("producer.id.expiration.ms", T::Int, Some("86400000"), &[], V::AtLeast(1), "Idle producer ids expire after this long."),
    def("queued.max.request.bytes", T::Long, Some("-1"), &[], V::Any,
        "Bytes of large requests (over 64 KiB) being read, broker-wide; a connection waits for room before such a request is read. Fetch responses in flight have a second pool of the same size (-1: an eighth of the machine's memory, between 64 MiB and 1 GiB, and at least socket.request.max.bytes)."),
    def("queued.max.requests", T::Int, Some("500"), &[], V::AtLeast(1), "Requests queued before network threads stop reading."),
    def("replica.alter.log.dirs.io.max.bytes.per.second", T::Long, Some(LONG_MAX_STR), &[], V::AtLeast(0),
        "Rate limit of moves between log directories (dynamic; Sluice has one log directory, so nothing is moved)."),
    def("replica.fetch.backoff.ms", T::Int, Some("1000"), &[], V::AtLeast(0), "Pause of a follower's fetcher after a failed fetch."),
    def("replica.fetch.max.bytes", T::Int, Some("1048576"), &[], V::AtLeast(0), "Bytes a follower asks for per partition in one fetch."),
    def("replica.fetch.response.max.bytes", T::Int, Some("10485760"), &[], V::AtLeast(0), "Bytes a follower asks for in one whole fetch."),
    def("replica.fetch.wait.max.ms", T::Int, Some("500"), &[], V::AtLeast(0), "Longest time a follower's fetch waits at the leader for data."),
    def("replica.lag.time.max.ms", T::Long, Some("30000"), &[], V::AtLeast(0), "A follower that has not caught up for this long leaves the ISR."),
    def("socket.receive.buffer.bytes", T::Int, Some("102400"), &[], V::Any, "SO_RCVBUF of the listener (-1 = OS default)."),
    def("socket.request.max.bytes", T::Int, Some("104857600"), &[], V::AtLeast(1), "Largest request the broker reads."),
    def("socket.send.buffer.bytes", T::Int, Some("102400"), &[], V::Any, "SO_SNDBUF of the listener (-1 = OS default)."),
    def("transaction.max.timeout.ms", T::Int, Some("900000"), &[], V::AtLeast(1), "Largest transaction timeout a producer may ask for."),
    def("transaction.state.log.num.partitions", T::Int, Some("50"), &[], V::AtLeast(1), "Partitions of __transaction_state."),
    def("transaction.state.log.replication.factor", T::Short, Some("3"), &[], V::AtLeast(1), "Replication factor of __transaction_state."),
    def("transactional.id.expiration.ms", T::Int, Some("604800000"), &[], V::AtLeast(1), "Idle transactional ids expire after this long."),
    def("unclean.leader.election.enable", T::Boolean, Some("false"), &[], V::Any, "Default for unclean.leader.election.enable."),
];

/// Every topic config Kafka 4 defines (sorted by name).
pub fn topic_config_defs() -> &'static [ConfigDef] {
    TOPIC_CONFIGS
}

/// Every broker config Sluice understands (sorted by name).
pub fn broker_config_defs() -> &'static [ConfigDef] {
    BROKER_CONFIGS
}

/// Looks up a topic config definition by name.
pub fn topic_config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Looks up a broker config definition by name.
pub fn broker_config_def(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.name == name)
}

/// Validates one topic config: [`ConfigError::Unknown`] for a name Kafka does not define,
/// [`ConfigError::Invalid`] for a value that does not parse or is out of range.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let def = topic_config_def(name).ok_or_else(|| ConfigError::Unknown(name.to_string()))?;
    validate_value(def, value)
}

/// Validates a complete set of topic overrides, including cross-config rules
/// (`min.compaction.lag.ms` must not exceed `max.compaction.lag.ms`).
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (name, value) in configs {
        validate_topic_config(name, value)?;
    }
    let min_lag = configs
        .get("min.compaction.lag.ms")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let max_lag = configs
        .get("max.compaction.lag.ms")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(LONG_MAX);
    if min_lag > max_lag {
        return Err(ConfigError::invalid(
            "min.compaction.lag.ms",
            &min_lag.to_string(),
            format!("must not be greater than max.compaction.lag.ms ({max_lag})"),
        ));
    }
    Ok(())
}

/// A value parsed according to its [`ConfigType`].
#[derive(Debug, Clone, PartialEq)]
enum Parsed {
    Bool(bool),
    Int(i64),
    Double(f64),
    Text(String),
    List(Vec<String>),
}

fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Splits a Kafka list value: comma separated, items trimmed, empty string = empty list.
pub fn parse_list(s: &str) -> Vec<String> {
    let t = s.trim();
    if t.is_empty() {
        return Vec::new();
    }
    t.split(',').map(|x| x.trim().to_string()).collect()
}

fn parse_typed(def: &ConfigDef, value: &str) -> Result<Parsed, ConfigError> {
    let t = value.trim();
    let bad = |what: &str| ConfigError::invalid(def.name, value, format!("expected {what}"));
    Ok(match def.kind {
        ConfigType::Boolean => Parsed::Bool(parse_bool(t).ok_or_else(|| bad("true or false"))?),
        ConfigType::Short => Parsed::Int(i64::from(
            t.parse::<i16>().map_err(|_| bad("a 16-bit integer"))?,
        )),
        ConfigType::Int => Parsed::Int(i64::from(
            t.parse::<i32>().map_err(|_| bad("a 32-bit integer"))?,
        )),
        ConfigType::Long => Parsed::Int(t.parse::<i64>().map_err(|_| bad("a 64-bit integer"))?),
        ConfigType::Double => {
            let d = t.parse::<f64>().map_err(|_| bad("a number"))?;
            if !d.is_finite() {
                return Err(bad("a finite number"));
            }
            Parsed::Double(d)
        }
        ConfigType::List => Parsed::List(parse_list(t)),
        ConfigType::String | ConfigType::Password | ConfigType::Class => {
            Parsed::Text(t.to_string())
        }
    })
}

pub(crate) fn validate_value(def: &ConfigDef, value: &str) -> Result<(), ConfigError> {
    let parsed = parse_typed(def, value)?;
    let fail = |reason: String| Err(ConfigError::invalid(def.name, value, reason));
    match (def.validator, &parsed) {
        (Validator::Any, _) => Ok(()),
        (Validator::AtLeast(min), Parsed::Int(v)) => {
            if *v < min {
                fail(format!("Value must be at least {min}"))
            } else {
                Ok(())
            }
        }
        (Validator::Between(lo, hi), Parsed::Int(v)) => {
            if *v < lo || *v > hi {
                fail(format!("Value must be in [{lo}, {hi}]"))
            } else {
                Ok(())
            }
        }
        (Validator::BetweenOr(lo, hi, or), Parsed::Int(v)) => {
            if (*v < lo || *v > hi) && *v != or {
                fail(format!("Value must be in [{lo}, {hi}] or {or}"))
            } else {
                Ok(())
            }
        }
        (Validator::RatioBetween(lo, hi), Parsed::Double(v)) => {
            if *v < lo || *v > hi {
                fail(format!("Value must be in [{lo}, {hi}]"))
            } else {
                Ok(())
            }
        }
        (Validator::OneOf(allowed), Parsed::Text(s)) => {
            if allowed.contains(&s.as_str()) {
                Ok(())
            } else {
                fail(format!("String must be one of: {}", allowed.join(", ")))
            }
        }
        (Validator::ListOf(allowed), Parsed::List(items)) => {
            for item in items {
                if !allowed.contains(&item.as_str()) {
                    return fail(format!("String must be one of: {}", allowed.join(", ")));
                }
            }
            Ok(())
        }
        (Validator::ThrottledReplicas, Parsed::List(items)) => {
            if items.len() == 1 && items[0] == "*" {
                return Ok(());
            }
            for item in items {
                let ok = item
                    .split_once(':')
                    .map(|(p, b)| {
                        p.trim().parse::<i32>().is_ok() && b.trim().parse::<i32>().is_ok()
                    })
                    .unwrap_or(false);
                if !ok {
                    return fail("must be '*' or a list of partition:broker pairs".to_string());
                }
            }
            Ok(())
        }
        (Validator::Only(only), p) => {
            let normalised = match p {
                Parsed::Bool(b) => b.to_string(),
                Parsed::Int(i) => i.to_string(),
                Parsed::Double(d) => d.to_string(),
                Parsed::Text(s) => s.clone(),
                Parsed::List(l) => l.join(","),
            };
            if normalised == only {
                Ok(())
            } else {
                fail(format!("only {only} is supported by Sluice"))
            }
        }
        // Validator does not apply to this type: the registry pairs them consistently, so
        // treat a mismatch as "no constraint".
        _ => Ok(()),
    }
}

/// Converts a broker synonym's raw value to the unit of the topic config (hours/minutes -> ms).
fn convert_synonym(synonym: &str, raw: &str) -> Option<String> {
    let factor: i64 = if synonym.ends_with(".hours") {
        3_600_000
    } else if synonym.ends_with(".minutes") {
        60_000
    } else {
        return Some(raw.trim().to_string());
    };
    let v = raw.trim().parse::<i64>().ok()?;
    Some(v.saturating_mul(factor).to_string())
}

/// Broker-level settings given with `--set` or TOML, using Kafka names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerSettings {
    explicit: BTreeMap<String, String>,
    /// Largest replication factor the topic planners accept (`None` = no limit). Set by the
    /// broker while partition replication is not implemented.
    max_replication_factor: Option<i16>,
}

impl BrokerSettings {
    /// Builds settings from a name→value map. Unknown names are returned as warnings (Kafka
    /// ignores unknown configs); a known name with an invalid value is an error. Names that
    /// are topic-config synonyms (e.g. `log.retention.hours`) are validated with the broker
    /// definition.
    pub fn from_map(
        map: &BTreeMap<String, String>,
    ) -> Result<(BrokerSettings, Vec<String>), ConfigError> {
        let mut explicit = BTreeMap::new();
        let mut warnings = Vec::new();
        for (name, value) in map {
            match broker_config_def(name) {
                Some(def) => {
                    validate_value(def, value)?;
                    explicit.insert(name.clone(), value.trim().to_string());
                }
                None => warnings.push(format!("unknown broker config '{name}' ignored")),
            }
        }
        Ok((
            BrokerSettings {
                explicit,
                max_replication_factor: None,
            },
            warnings,
        ))
    }

    /// Limits the replication factor of new topics (`None` = no limit): a larger one is
    /// refused with INVALID_REPLICATION_FACTOR ("... is not supported yet").
    pub fn set_max_replication_factor(&mut self, max: Option<i16>) {
        self.max_replication_factor = max;
    }

    /// The limit set with [`BrokerSettings::set_max_replication_factor`].
    pub fn max_replication_factor(&self) -> Option<i16> {
        self.max_replication_factor
    }

    /// The explicitly set value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.explicit.get(name).map(String::as_str)
    }

    /// All explicitly set values.
    pub fn explicit(&self) -> &BTreeMap<String, String> {
        &self.explicit
    }

    /// Explicit value or the broker default of a known config.
    pub fn effective(&self, name: &str) -> Option<&str> {
        self.get(name)
            .or_else(|| broker_config_def(name).and_then(|d| d.default))
    }

    /// Effective value parsed as `i64` (Int/Short/Long configs), `None` if unset with no default.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.effective(name).and_then(|v| v.trim().parse().ok())
    }

    /// Effective value parsed as `i32`.
    pub fn get_i32(&self, name: &str) -> Option<i32> {
        self.effective(name).and_then(|v| v.trim().parse().ok())
    }

    /// Effective value parsed as a boolean.
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.effective(name).and_then(parse_bool)
    }

    fn i32_or(&self, name: &str, fallback: i32) -> i32 {
        self.get_i32(name).unwrap_or(fallback)
    }

    fn i64_or(&self, name: &str, fallback: i64) -> i64 {
        self.get_i64(name).unwrap_or(fallback)
    }

    /// `num.partitions` (default 1).
    pub fn num_partitions(&self) -> i32 {
        self.i32_or("num.partitions", 1)
    }

    /// `default.replication.factor` (default 1).
    pub fn default_replication_factor(&self) -> i16 {
        i16::try_from(self.i32_or("default.replication.factor", 1)).unwrap_or(i16::MAX)
    }

    /// `auto.create.topics.enable` (default true).
    pub fn auto_create_topics_enable(&self) -> bool {
        self.get_bool("auto.create.topics.enable").unwrap_or(true)
    }

    /// `message.max.bytes` (default 1048588).
    pub fn message_max_bytes(&self) -> i32 {
        self.i32_or("message.max.bytes", 1_048_588)
    }

    /// `log.segment.bytes` (default 1 GiB).
    pub fn log_segment_bytes(&self) -> i64 {
        self.i64_or("log.segment.bytes", 1_073_741_824)
    }

    /// Segment roll age: `log.roll.ms`, else `log.roll.hours` (default 168) in ms.
    pub fn log_roll_ms(&self) -> i64 {
        match self.get("log.roll.ms").and_then(|v| v.parse::<i64>().ok()) {
            Some(ms) => ms,
            None => self.i64_or("log.roll.hours", 168).saturating_mul(3_600_000),
        }
    }

    /// Segment roll jitter: `log.roll.jitter.ms`, else `log.roll.jitter.hours` (default 0) in ms.
    pub fn log_roll_jitter_ms(&self) -> i64 {
        match self
            .get("log.roll.jitter.ms")
            .and_then(|v| v.parse::<i64>().ok())
        {
            Some(ms) => ms,
            None => self
                .i64_or("log.roll.jitter.hours", 0)
                .saturating_mul(3_600_000),
        }
    }

    /// `log.flush.interval.messages`; `None` when it is `Long.MAX` (never).
    pub fn log_flush_interval_messages(&self) -> Option<i64> {
        let v = self.i64_or("log.flush.interval.messages", LONG_MAX);
        (v != LONG_MAX).then_some(v)
    }

    /// `log.flush.interval.ms`, else `log.flush.scheduler.interval.ms`; `None` when `Long.MAX`.
    pub fn log_flush_interval_ms(&self) -> Option<i64> {
        let v = self
            .get("log.flush.interval.ms")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| self.i64_or("log.flush.scheduler.interval.ms", LONG_MAX));
        (v != LONG_MAX).then_some(v)
    }

    /// `compression.type` (default `producer`).
    pub fn compression_type(&self) -> String {
        self.effective("compression.type")
            .unwrap_or("producer")
            .to_string()
    }

    /// Retention: `log.retention.ms`, else `.minutes`, else `.hours` (default 168), in ms;
    /// any negative value means unlimited and is returned as -1.
    pub fn log_retention_ms(&self) -> i64 {
        let ms = if let Some(ms) = self
            .get("log.retention.ms")
            .and_then(|v| v.parse::<i64>().ok())
        {
            ms
        } else if let Some(m) = self
            .get("log.retention.minutes")
            .and_then(|v| v.parse::<i64>().ok())
        {
            m.saturating_mul(60_000)
        } else {
            self.i64_or("log.retention.hours", 168)
                .saturating_mul(3_600_000)
        };
        if ms < 0 {
            -1
        } else {
            ms
        }
    }

    /// `log.retention.bytes` (default -1 = unlimited).
    pub fn log_retention_bytes(&self) -> i64 {
        self.i64_or("log.retention.bytes", -1)
    }

    /// `socket.request.max.bytes` (default 100 MiB).
    pub fn socket_request_max_bytes(&self) -> i32 {
        self.i32_or("socket.request.max.bytes", 104_857_600)
    }

    /// `log.index.interval.bytes` (default 4096).
    pub fn log_index_interval_bytes(&self) -> i32 {
        self.i32_or("log.index.interval.bytes", 4096)
    }

    /// `log.index.size.max.bytes` (default 10 MiB).
    pub fn log_index_size_max_bytes(&self) -> i32 {
        self.i32_or("log.index.size.max.bytes", 10_485_760)
    }

    /// `offsets.topic.num.partitions` (default 50).
    pub fn offsets_topic_num_partitions(&self) -> i32 {
        self.i32_or("offsets.topic.num.partitions", 50)
    }

    /// `offsets.topic.replication.factor` (default 3; callers cap it to the broker count).
    pub fn offsets_topic_replication_factor(&self) -> i16 {
        i16::try_from(self.i32_or("offsets.topic.replication.factor", 3)).unwrap_or(i16::MAX)
    }

    /// `group.initial.rebalance.delay.ms` (default 3000).
    pub fn group_initial_rebalance_delay_ms(&self) -> i32 {
        self.i32_or("group.initial.rebalance.delay.ms", 3000)
    }

    /// `log.message.timestamp.type` (default `CreateTime`).
    pub fn log_message_timestamp_type(&self) -> String {
        self.effective("log.message.timestamp.type")
            .unwrap_or("CreateTime")
            .to_string()
    }

    /// `min.insync.replicas` (default 1).
    pub fn min_insync_replicas(&self) -> i32 {
        self.i32_or("min.insync.replicas", 1)
    }

    /// `offsets.commit.timeout.ms` (default 5000).
    pub fn offsets_commit_timeout_ms(&self) -> i32 {
        self.i32_or("offsets.commit.timeout.ms", 5000)
    }

    /// `replica.lag.time.max.ms` (default 30000).
    pub fn replica_lag_time_max_ms(&self) -> i64 {
        self.i64_or("replica.lag.time.max.ms", 30_000)
    }

    /// `replica.fetch.wait.max.ms` (default 500).
    pub fn replica_fetch_wait_max_ms(&self) -> i32 {
        self.i32_or("replica.fetch.wait.max.ms", 500)
    }

    /// `replica.fetch.max.bytes` (default 1 MiB).
    pub fn replica_fetch_max_bytes(&self) -> i32 {
        self.i32_or("replica.fetch.max.bytes", 1_048_576)
    }

    /// `replica.fetch.response.max.bytes` (default 10 MiB).
    pub fn replica_fetch_response_max_bytes(&self) -> i32 {
        self.i32_or("replica.fetch.response.max.bytes", 10_485_760)
    }

    /// `replica.fetch.backoff.ms` (default 1000).
    pub fn replica_fetch_backoff_ms(&self) -> i32 {
        self.i32_or("replica.fetch.backoff.ms", 1000)
    }

    /// `log.retention.check.interval.ms` (default 300000).
    pub fn log_retention_check_interval_ms(&self) -> i64 {
        self.i64_or("log.retention.check.interval.ms", 300_000)
    }

    /// `auto.leader.rebalance.enable` (default true).
    pub fn auto_leader_rebalance_enable(&self) -> bool {
        self.get_bool("auto.leader.rebalance.enable")
            .unwrap_or(true)
    }

    /// `leader.imbalance.check.interval.seconds` (default 300, at least 1).
    pub fn leader_imbalance_check_interval_seconds(&self) -> i64 {
        self.i64_or("leader.imbalance.check.interval.seconds", 300)
            .max(1)
    }

    /// `leader.imbalance.per.broker.percentage` (default 10).
    pub fn leader_imbalance_per_broker_percentage(&self) -> i32 {
        self.i32_or("leader.imbalance.per.broker.percentage", 10)
    }

    /// `delete.topic.enable` (default true).
    pub fn delete_topic_enable(&self) -> bool {
        self.get_bool("delete.topic.enable").unwrap_or(true)
    }
}

/// One config entry as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    /// Config name.
    pub name: String,
    /// Effective value (`None` for sensitive configs or when there is no value).
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// True when the value is the built-in default.
    pub is_default: bool,
    /// True when the config cannot be altered at runtime.
    pub read_only: bool,
    /// True for secrets.
    pub sensitive: bool,
    /// Value type.
    pub kind: ConfigType,
    /// Description.
    pub doc: &'static str,
    /// Synonyms in precedence order, the entry itself first: (name, value, source).
    pub synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

fn resolve_one_topic(
    def: &ConfigDef,
    overrides: &BTreeMap<String, String>,
    broker: &BrokerSettings,
) -> ResolvedConfig {
    let mut synonyms = Vec::new();
    let mut chosen: Option<(String, ConfigSource)> = None;

    if let Some(v) = overrides.get(def.name) {
        synonyms.push((
            def.name.to_string(),
            Some(v.clone()),
            ConfigSource::TopicConfig,
        ));
        chosen = Some((v.clone(), ConfigSource::TopicConfig));
    }
    for syn in def.broker_synonyms {
        if let Some(raw) = broker.get(syn) {
            synonyms.push((
                syn.to_string(),
                Some(raw.to_string()),
                ConfigSource::StaticBrokerConfig,
            ));
            if chosen.is_none() {
                if let Some(conv) = convert_synonym(syn, raw) {
                    chosen = Some((conv, ConfigSource::StaticBrokerConfig));
                }
            }
        }
    }
    for syn in def.broker_synonyms {
        if let Some(d) = broker_config_def(syn).and_then(|d| d.default) {
            synonyms.push((
                syn.to_string(),
                Some(d.to_string()),
                ConfigSource::DefaultConfig,
            ));
        }
    }
    let (value, source) = match chosen {
        Some((v, s)) => (Some(v), s),
        None => (def.default.map(str::to_string), ConfigSource::DefaultConfig),
    };
    let sensitive = def.sensitive();
    if sensitive {
        for s in &mut synonyms {
            s.1 = None;
        }
    }
    ResolvedConfig {
        name: def.name.to_string(),
        value: if sensitive { None } else { value },
        source,
        is_default: source == ConfigSource::DefaultConfig,
        read_only: false,
        sensitive,
        kind: def.kind,
        doc: def.doc,
        synonyms,
    }
}

/// The effective config of a topic: every topic config with its value, source, default flag
/// and synonyms. Precedence: topic override > broker static setting (synonym) > Kafka default.
pub fn resolve_topic_configs(
    overrides: &BTreeMap<String, String>,
    broker: &BrokerSettings,
) -> Vec<ResolvedConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| resolve_one_topic(def, overrides, broker))
        .collect()
}

/// Resolves a single topic config by name (`None` if unknown).
pub fn resolve_topic_config(
    name: &str,
    overrides: &BTreeMap<String, String>,
    broker: &BrokerSettings,
) -> Option<ResolvedConfig> {
    topic_config_def(name).map(|def| resolve_one_topic(def, overrides, broker))
}

/// Broker configs for DescribeConfigs on a BROKER resource: explicit values are
/// STATIC_BROKER_CONFIG, the rest DEFAULT_CONFIG; all are read-only (no dynamic broker configs).
pub fn resolve_broker_configs(
    broker: &BrokerSettings,
    dynamic_node: Option<&BTreeMap<String, String>>,
    dynamic_default: Option<&BTreeMap<String, String>>,
) -> Vec<ResolvedConfig> {
    BROKER_CONFIGS
        .iter()
        .map(|def| {
            let sensitive = def.sensitive();
            let shown = |v: &str| (!sensitive).then(|| v.to_string());
            let mut synonyms = Vec::new();
            let layers = [
                (
                    dynamic_node
                        .and_then(|m| m.get(def.name))
                        .map(String::as_str),
                    ConfigSource::DynamicBrokerConfig,
                ),
                (
                    dynamic_default
                        .and_then(|m| m.get(def.name))
                        .map(String::as_str),
                    ConfigSource::DynamicDefaultBrokerConfig,
                ),
                (broker.get(def.name), ConfigSource::StaticBrokerConfig),
                (def.default, ConfigSource::DefaultConfig),
            ];
            for (v, source) in layers {
                if let Some(v) = v {
                    synonyms.push((def.name.to_string(), shown(v), source));
                }
            }
            let (value, source) = layers
                .iter()
                .find_map(|(v, s)| v.map(|v| (Some(v.to_string()), *s)))
                .unwrap_or((None, ConfigSource::DefaultConfig));
            ResolvedConfig {
                name: def.name.to_string(),
                value: if sensitive { None } else { value },
                source,
                is_default: source == ConfigSource::DefaultConfig,
                read_only: !crate::metadata::DYNAMIC_BROKER_CONFIGS.contains(&def.name),
                sensitive,
                kind: def.kind,
                doc: def.doc,
                synonyms,
            }
        })
        .collect()
}

/// Typed effective config of a topic, for the broker and storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// `max.message.bytes`.
    pub max_message_bytes: i32,
    /// `segment.bytes`.
    pub segment_bytes: i64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `segment.jitter.ms`.
    pub segment_jitter_ms: i64,
    /// `segment.index.bytes`.
    pub segment_index_bytes: i32,
    /// `index.interval.bytes`.
    pub index_interval_bytes: i32,
    /// `flush.messages`; `None` = never (Long.MAX).
    pub flush_messages: Option<i64>,
    /// `flush.ms`; `None` = never (Long.MAX).
    pub flush_ms: Option<i64>,
    /// `compression.type`.
    pub compression_type: String,
    /// `compression.gzip.level`.
    pub compression_gzip_level: i32,
    /// `compression.lz4.level`.
    pub compression_lz4_level: i32,
    /// `compression.zstd.level`.
    pub compression_zstd_level: i32,
    /// `cleanup.policy` as written (e.g. `delete`, `compact,delete`; empty = neither).
    pub cleanup_policy: String,
    /// Whether `cleanup.policy` contains `delete`.
    pub cleanup_delete: bool,
    /// Whether `cleanup.policy` contains `compact`.
    pub cleanup_compact: bool,
    /// `retention.ms` (-1 = unlimited).
    pub retention_ms: i64,
    /// `retention.bytes` (-1 = unlimited).
    pub retention_bytes: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: f64,
    /// `file.delete.delay.ms`.
    pub file_delete_delay_ms: i64,
    /// `message.timestamp.type` (`CreateTime` or `LogAppendTime`).
    pub message_timestamp_type: String,
    /// `message.timestamp.before.max.ms`.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub message_timestamp_after_max_ms: i64,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `preallocate`.
    pub preallocate: bool,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election_enable: bool,
}

/// The typed effective config of a topic (same precedence as [`resolve_topic_configs`]).
/// Values were validated when stored; anything unparsable falls back to the Kafka default.
pub fn effective_topic_config(
    overrides: &BTreeMap<String, String>,
    broker: &BrokerSettings,
) -> TopicConfig {
    let resolved: BTreeMap<String, Option<String>> = resolve_topic_configs(overrides, broker)
        .into_iter()
        .map(|r| (r.name, r.value))
        .collect();
    let text = |name: &str| -> String {
        resolved
            .get(name)
            .cloned()
            .flatten()
            .or_else(|| {
                topic_config_def(name)
                    .and_then(|d| d.default)
                    .map(str::to_string)
            })
            .unwrap_or_default()
    };
    fn num<N: std::str::FromStr + Default>(s: String, fallback: &str) -> N {
        s.trim()
            .parse()
            .ok()
            .or_else(|| fallback.parse().ok())
            .unwrap_or_default()
    }
    let default_of = |name: &str| -> &'static str {
        topic_config_def(name)
            .and_then(|d| d.default)
            .unwrap_or("0")
    };
    let i32v = |name: &str| -> i32 { num(text(name), default_of(name)) };
    let i64v = |name: &str| -> i64 { num(text(name), default_of(name)) };
    let boolv = |name: &str| -> bool { parse_bool(&text(name)).unwrap_or(false) };
    let never_max = |v: i64| (v != LONG_MAX).then_some(v);
    let cleanup_policy = text("cleanup.policy");
    let policies = parse_list(&cleanup_policy);
    TopicConfig {
        max_message_bytes: i32v("max.message.bytes"),
        segment_bytes: i64v("segment.bytes"),
        segment_ms: i64v("segment.ms"),
        segment_jitter_ms: i64v("segment.jitter.ms"),
        segment_index_bytes: i32v("segment.index.bytes"),
        index_interval_bytes: i32v("index.interval.bytes"),
        flush_messages: never_max(i64v("flush.messages")),
        flush_ms: never_max(i64v("flush.ms")),
        compression_type: text("compression.type"),
        compression_gzip_level: i32v("compression.gzip.level"),
        compression_lz4_level: i32v("compression.lz4.level"),
        compression_zstd_level: i32v("compression.zstd.level"),
        cleanup_delete: policies.iter().any(|p| p == "delete"),
        cleanup_compact: policies.iter().any(|p| p == "compact"),
        cleanup_policy,
        retention_ms: i64v("retention.ms"),
        retention_bytes: i64v("retention.bytes"),
        delete_retention_ms: i64v("delete.retention.ms"),
        min_compaction_lag_ms: i64v("min.compaction.lag.ms"),
        max_compaction_lag_ms: i64v("max.compaction.lag.ms"),
        min_cleanable_dirty_ratio: num(text("min.cleanable.dirty.ratio"), "0.5"),
        file_delete_delay_ms: i64v("file.delete.delay.ms"),
        message_timestamp_type: text("message.timestamp.type"),
        message_timestamp_before_max_ms: i64v("message.timestamp.before.max.ms"),
        message_timestamp_after_max_ms: i64v("message.timestamp.after.max.ms"),
        min_insync_replicas: i32v("min.insync.replicas"),
        preallocate: boolv("preallocate"),
        unclean_leader_election_enable: boolv("unclean.leader.election.enable"),
    }
}

impl fmt::Display for ConfigType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ConfigType::Boolean => "boolean",
            ConfigType::Int => "int",
            ConfigType::Short => "short",
            ConfigType::Long => "long",
            ConfigType::Double => "double",
            ConfigType::String => "string",
            ConfigType::List => "list",
            ConfigType::Password => "password",
            ConfigType::Class => "class",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn find<'a>(v: &'a [ResolvedConfig], name: &str) -> &'a ResolvedConfig {
        v.iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn registries_sorted_unique_and_defaults_valid() {
        for defs in [topic_config_defs(), broker_config_defs()] {
            for w in defs.windows(2) {
                assert!(w[0].name < w[1].name, "{} !< {}", w[0].name, w[1].name);
            }
            for d in defs {
                if let Some(v) = d.default {
                    // Empty list defaults are allowed for throttled replicas.
                    if !(d.kind == ConfigType::List && v.is_empty()) {
                        d.validate(v).unwrap_or_else(|e| panic!("{}: {e}", d.name));
                    }
                }
            }
        }
        // Every broker synonym of a topic config is a known broker config.
        for d in topic_config_defs() {
            for s in d.broker_synonyms {
                assert!(broker_config_def(s).is_some(), "{} synonym {s}", d.name);
            }
        }
        assert!(topic_config_def("message.downconversion.enable").is_none());
    }

    #[test]
    fn wire_codes() {
        assert_eq!(ConfigType::Boolean.wire_code(), 1);
        assert_eq!(ConfigType::String.wire_code(), 2);
        assert_eq!(ConfigType::Int.wire_code(), 3);
        assert_eq!(ConfigType::Short.wire_code(), 4);
        assert_eq!(ConfigType::Long.wire_code(), 5);
        assert_eq!(ConfigType::Double.wire_code(), 6);
        assert_eq!(ConfigType::List.wire_code(), 7);
        assert_eq!(ConfigType::Class.wire_code(), 8);
        assert_eq!(ConfigType::Password.wire_code(), 9);
        assert_eq!(ConfigSource::TopicConfig as i8, 1);
        assert_eq!(ConfigSource::StaticBrokerConfig.wire_code(), 4);
        assert_eq!(ConfigSource::DefaultConfig.wire_code(), 5);
    }

    #[test]
    fn validators() {
        assert!(validate_topic_config("segment.bytes", "1048576").is_ok());
        assert!(matches!(
            validate_topic_config("segment.bytes", "1048575"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(validate_topic_config("segment.bytes", "3000000000").is_err()); // > i32
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_topic_config("cleanup.policy", " delete , compact ").is_ok());
        assert!(validate_topic_config("cleanup.policy", "remove").is_err());
        assert!(validate_topic_config("cleanup.policy", "").is_ok()); // Kafka 4.1 accepts it
        assert_eq!(
            validate_topic_config("no.such.config", "1"),
            Err(ConfigError::Unknown("no.such.config".into()))
        );
        assert!(validate_topic_config("compression.type", "zstd").is_ok());
        assert!(validate_topic_config("compression.type", "brotli").is_err());
        assert!(validate_topic_config("compression.gzip.level", "-1").is_ok());
        assert!(validate_topic_config("compression.gzip.level", "0").is_err());
        assert!(validate_topic_config("compression.gzip.level", "9").is_ok());
        assert!(validate_topic_config("compression.zstd.level", "-131072").is_ok());
        assert!(validate_topic_config("compression.zstd.level", "23").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "0.9").is_ok());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "NaN").is_err());
        assert!(validate_topic_config("min.insync.replicas", "0").is_err());
        assert!(validate_topic_config("retention.ms", "-1").is_ok());
        assert!(validate_topic_config("retention.ms", "-2").is_err());
        assert!(validate_topic_config("retention.bytes", "-5").is_ok());
        assert!(validate_topic_config("preallocate", "TRUE").is_ok());
        assert!(validate_topic_config("preallocate", "yes").is_err());
        assert!(validate_topic_config("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_topic_config("message.timestamp.type", "logappendtime").is_err());
        assert!(validate_topic_config("leader.replication.throttled.replicas", "*").is_ok());
        assert!(validate_topic_config("leader.replication.throttled.replicas", "0:1,1:2").is_ok());
        assert!(validate_topic_config("leader.replication.throttled.replicas", "0-1").is_err());
        assert!(validate_topic_config("remote.storage.enable", "false").is_ok());
        assert!(validate_topic_config("remote.storage.enable", "true").is_err());
        assert!(validate_topic_config("flush.messages", "0").is_err());
    }

    #[test]
    fn cross_validation_compaction_lag() {
        let ok = map(&[
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "20"),
        ]);
        assert!(validate_topic_configs(&ok).is_ok());
        let bad = map(&[
            ("min.compaction.lag.ms", "30"),
            ("max.compaction.lag.ms", "20"),
        ]);
        assert!(validate_topic_configs(&bad).is_err());
    }

    #[test]
    fn broker_settings_defaults() {
        let (b, w) = BrokerSettings::from_map(&BTreeMap::new()).unwrap();
        assert!(w.is_empty());
        assert_eq!(b.num_partitions(), 1);
        assert_eq!(b.default_replication_factor(), 1);
        assert!(b.auto_create_topics_enable());
        assert_eq!(b.message_max_bytes(), 1_048_588);
        assert_eq!(b.log_segment_bytes(), 1_073_741_824);
        assert_eq!(b.log_roll_ms(), 604_800_000);
        assert_eq!(b.log_flush_interval_messages(), None);
        assert_eq!(b.log_flush_interval_ms(), None);
        assert_eq!(b.compression_type(), "producer");
        assert_eq!(b.log_retention_ms(), 604_800_000);
        assert_eq!(b.log_retention_bytes(), -1);
        assert_eq!(b.socket_request_max_bytes(), 104_857_600);
        assert_eq!(b.log_index_interval_bytes(), 4096);
        assert_eq!(b.log_index_size_max_bytes(), 10_485_760);
        assert_eq!(b.offsets_topic_num_partitions(), 50);
        assert_eq!(b.group_initial_rebalance_delay_ms(), 3000);
        assert_eq!(b.log_message_timestamp_type(), "CreateTime");
        assert_eq!(b.get("num.partitions"), None);
        assert!(b.auto_leader_rebalance_enable());
        assert_eq!(b.leader_imbalance_check_interval_seconds(), 300);
        assert_eq!(b.leader_imbalance_per_broker_percentage(), 10);
    }

    #[test]
    fn leader_rebalance_settings() {
        let (b, w) = BrokerSettings::from_map(&map(&[
            ("auto.leader.rebalance.enable", "false"),
            ("leader.imbalance.check.interval.seconds", "2"),
            ("leader.imbalance.per.broker.percentage", "0"),
        ]))
        .unwrap();
        assert!(w.is_empty());
        assert!(!b.auto_leader_rebalance_enable());
        assert_eq!(b.leader_imbalance_check_interval_seconds(), 2);
        assert_eq!(b.leader_imbalance_per_broker_percentage(), 0);
        for bad in [
            ("leader.imbalance.check.interval.seconds", "0"),
            ("leader.imbalance.per.broker.percentage", "-1"),
            ("auto.leader.rebalance.enable", "maybe"),
        ] {
            assert!(BrokerSettings::from_map(&map(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn broker_settings_explicit_unknown_invalid() {
        let (b, w) = BrokerSettings::from_map(&map(&[
            ("num.partitions", "3"),
            ("log.retention.minutes", "5"),
            ("log.roll.hours", "2"),
            ("log.flush.interval.messages", "10"),
            ("log.flush.scheduler.interval.ms", "500"),
            ("foo.bar", "x"),
        ]))
        .unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("foo.bar"));
        assert_eq!(b.num_partitions(), 3);
        assert_eq!(b.get("num.partitions"), Some("3"));
        assert_eq!(b.log_retention_ms(), 300_000);
        assert_eq!(b.log_roll_ms(), 7_200_000);
        assert_eq!(b.log_flush_interval_messages(), Some(10));
        assert_eq!(b.log_flush_interval_ms(), Some(500));

        let (b, _) = BrokerSettings::from_map(&map(&[
            ("log.retention.ms", "-5"),
            ("log.retention.hours", "1"),
        ]))
        .unwrap();
        assert_eq!(
            b.log_retention_ms(),
            -1,
            "ms wins over hours; negative = unlimited"
        );

        assert!(BrokerSettings::from_map(&map(&[("num.partitions", "0")])).is_err());
        assert!(BrokerSettings::from_map(&map(&[("log.segment.bytes", "1000")])).is_err());
        assert!(BrokerSettings::from_map(&map(&[("auto.create.topics.enable", "maybe")])).is_err());
    }

    #[test]
    fn resolve_sources_and_synonyms() {
        let (broker, _) = BrokerSettings::from_map(&map(&[("log.retention.hours", "1")])).unwrap();
        let none = BTreeMap::new();
        let r = resolve_topic_configs(&none, &broker);
        assert_eq!(r.len(), topic_config_defs().len());

        let ret = find(&r, "retention.ms");
        assert_eq!(ret.value.as_deref(), Some("3600000"));
        assert_eq!(ret.source, ConfigSource::StaticBrokerConfig);
        assert!(!ret.is_default);
        assert_eq!(
            ret.synonyms,
            vec![
                (
                    "log.retention.hours".to_string(),
                    Some("1".to_string()),
                    ConfigSource::StaticBrokerConfig
                ),
                (
                    "log.retention.hours".to_string(),
                    Some("168".to_string()),
                    ConfigSource::DefaultConfig
                ),
            ]
        );

        let seg = find(&r, "segment.bytes");
        assert_eq!(seg.value.as_deref(), Some("1073741824"));
        assert_eq!(seg.source, ConfigSource::DefaultConfig);
        assert!(seg.is_default);
        assert_eq!(seg.kind, ConfigType::Int);
        assert!(!seg.read_only);

        // Topic override wins.
        let ov = map(&[("retention.ms", "1000")]);
        let r = resolve_topic_configs(&ov, &broker);
        let ret = find(&r, "retention.ms");
        assert_eq!(ret.value.as_deref(), Some("1000"));
        assert_eq!(ret.source, ConfigSource::TopicConfig);
        assert!(!ret.is_default);
        assert_eq!(ret.synonyms[0].2, ConfigSource::TopicConfig);
        assert_eq!(ret.synonyms.len(), 3);

        // No-synonym config with default.
        let thr = find(&r, "leader.replication.throttled.replicas");
        assert_eq!(thr.value.as_deref(), Some(""));
        assert!(thr.synonyms.is_empty());
    }

    #[test]
    fn resolve_broker() {
        let (broker, _) = BrokerSettings::from_map(&map(&[("num.partitions", "4")])).unwrap();
        let r = resolve_broker_configs(&broker, None, None);
        let np = find(&r, "num.partitions");
        assert_eq!(np.value.as_deref(), Some("4"));
        assert_eq!(np.source, ConfigSource::StaticBrokerConfig);
        assert!(np.read_only);
        let mm = find(&r, "message.max.bytes");
        assert_eq!(mm.source, ConfigSource::DefaultConfig);
        assert!(mm.is_default);
        let lrm = find(&r, "log.retention.ms");
        assert_eq!(lrm.value, None);
    }

    #[test]
    fn effective_config() {
        let (broker, _) = BrokerSettings::from_map(&map(&[
            ("log.segment.bytes", "2097152"),
            ("log.flush.interval.messages", "1"),
        ]))
        .unwrap();
        let ov = map(&[
            ("cleanup.policy", "compact,delete"),
            ("max.message.bytes", "5000"),
            ("retention.ms", "-1"),
        ]);
        let tc = effective_topic_config(&ov, &broker);
        assert_eq!(tc.segment_bytes, 2_097_152);
        assert_eq!(tc.flush_messages, Some(1));
        assert_eq!(tc.flush_ms, None);
        assert_eq!(tc.max_message_bytes, 5000);
        assert_eq!(tc.retention_ms, -1);
        assert!(tc.cleanup_compact && tc.cleanup_delete);
        assert_eq!(tc.compression_type, "producer");
        assert_eq!(tc.segment_ms, 604_800_000);
        assert_eq!(tc.message_timestamp_after_max_ms, 3_600_000);
        assert_eq!(tc.min_insync_replicas, 1);
        assert_eq!(tc.segment_index_bytes, 10_485_760);
        assert!((tc.min_cleanable_dirty_ratio - 0.5).abs() < 1e-9);
        let d = effective_topic_config(&BTreeMap::new(), &BrokerSettings::default());
        assert!(d.cleanup_delete && !d.cleanup_compact);
        assert_eq!(d.retention_ms, 604_800_000);
    }
}
