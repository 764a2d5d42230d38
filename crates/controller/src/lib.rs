//! Sluice cluster metadata: brokers, topics, partitions and topic config overrides, plus the
//! registry of Kafka config names, defaults and validators.
//!
//! See [`config`] for the config registry.

pub mod config;

pub use config::{BrokerSettings, ConfigError, ConfigSource, ResolvedConfig};
