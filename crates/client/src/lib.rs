//! `sluice-client`: a small async Kafka-protocol client for the sluice console tools.
//!
//! It speaks the Kafka wire protocol (messages from the `kafka-protocol` crate) over tokio TCP:
//! one [`Connection`] per broker with ApiVersions negotiation, and a [`Client`] that bootstraps
//! from a `host:port,...` list, routes partition requests to leaders via Metadata, and offers
//! the admin, produce and fetch operations the CLI needs.
//!
//! Consumer-group *administration* (coordinator lookup, list, describe, delete, committed
//! offsets) is in [`Client::describe_group`] and its neighbours. Group *membership* (join,
//! assign, sync, heartbeat, commit, leave with the classic protocol) is [`Membership`]; the
//! caller keeps the fetch positions ([`FetchPosition`]) of the partitions it is assigned.

mod batch;
mod client;
mod cluster;
mod configs;
mod conn;
mod error;
mod groups;
mod membership;
mod partitioner;
mod pipeline;
mod records;

pub use batch::{
    next_offset_after, walk_batches, BatchBuilder, ProducerFields, WalkSummary, BATCH_HEADER_LEN,
};
pub use client::{
    now_ms, parse_bootstrap, Acks, BrokerInfo, Client, ClientConfig, ClusterMetadata, ConfigEntry,
    ConfigSource, CreatedTopic, FetchOptions, FetchPosition, FetchedPartition, NewTopic,
    OffsetSpec, PartitionInfo, ProduceOutcome, TopicInfo, TopicResults,
};
pub use cluster::METADATA_TOPIC;
pub use configs::{
    AlterConfigOpKind, ConfigChange, ConfigResource, ConfigSynonym, DescribedConfig,
};
pub use conn::{
    api_name, decode_api_versions, decode_response, encode_request, negotiate, Connection,
    MAX_FRAME_BYTES,
};
pub use error::{ClientError, KafkaCode, Result};
pub use groups::{
    decode_assignment, CommittedOffset, GroupDescription, GroupListing, GroupMember,
    NON_EMPTY_GROUP,
};
pub use membership::{
    decode_subscription, encode_assignment, encode_subscription, Assignment, Assignor, GroupEvent,
    MemberSubscription, Membership, MembershipConfig,
};
pub use partitioner::{murmur2, partition_for_key, StickyPartitioner};
pub use pipeline::{InFlight, Pipeline, PipelineFrame};
pub use records::{
    decode_batches, encode_batch, set_base_offset, Compression, ConsumedRecord, DecodedRecords,
    ProduceRecord, TimestampKind,
};
pub use uuid::Uuid;
