//! Sluice cluster metadata: brokers, topics, partitions and topic config overrides, plus the
//! registry of Kafka config names, defaults and validators.
//!
//! See [`config`] for the config registry.

pub mod config;
mod error;
pub mod metadata;

pub use config::{
    broker_config_defs, effective_topic_config, resolve_broker_configs, resolve_topic_configs,
    topic_config_defs, validate_topic_config, BrokerSettings, ConfigDef, ConfigError, ConfigSource,
    ConfigType, ResolvedConfig, TopicConfig,
};
pub use error::ControllerError;
pub use metadata::{
    is_internal_topic, plan_alter_configs, plan_create_partitions, plan_create_topic,
    plan_delete_topic, plan_delete_topic_by_id, plan_incremental_alter_configs,
    plan_replace_configs, validate_topic_name, AlterConfigOp, BrokerInfo, Metadata,
    MetadataCommand, PartitionInfo, TopicInfo,
};
