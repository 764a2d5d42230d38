//! Config administration of topics and brokers: DescribeConfigs (with synonyms) and
//! IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT) — the operations behind
//! `sluice configs`.
//!
//! Topic requests go to any broker; broker requests go to the broker they name (a broker
//! answers only for its own configs). Requests are sent at fixed, long-supported versions
//! (clamped to what the broker offers).

use std::fmt;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Client, ConfigEntry, ConfigSource};
use crate::error::{ClientError, KafkaCode, Result};

/// Wire code of the TOPIC resource type.
const RESOURCE_TOPIC: i8 = 2;
/// Wire code of the BROKER resource type.
const RESOURCE_BROKER: i8 = 4;

/// The thing whose configs are described or altered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// A broker, by node id.
    Broker(i32),
}

impl ConfigResource {
    /// The wire resource type (TOPIC = 2, BROKER = 4).
    pub fn wire_type(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => RESOURCE_TOPIC,
            ConfigResource::Broker(_) => RESOURCE_BROKER,
        }
    }

    /// The wire resource name (topic name, or the broker id as a string).
    pub fn wire_name(&self) -> String {
        match self {
            ConfigResource::Topic(t) => t.clone(),
            ConfigResource::Broker(id) => id.to_string(),
        }
    }
}

impl fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigResource::Topic(t) => write!(f, "topic '{t}'"),
            ConfigResource::Broker(id) => write!(f, "broker {id}"),
        }
    }
}

impl ConfigSource {
    /// The Kafka name of the source, e.g. `DYNAMIC_TOPIC_CONFIG` or `DEFAULT_CONFIG`.
    pub fn kafka_name(self) -> String {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG".into(),
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG".into(),
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG".into(),
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG".into(),
            ConfigSource::Default => "DEFAULT_CONFIG".into(),
            ConfigSource::Other(6) => "DYNAMIC_BROKER_LOGGER_CONFIG".into(),
            ConfigSource::Other(7) => "CLIENT_METRICS_CONFIG".into(),
            ConfigSource::Other(8) => "GROUP_CONFIG".into(),
            ConfigSource::Other(code) => format!("UNKNOWN_CONFIG_SOURCE_{code}"),
        }
    }
}

/// Maps a wire `config_source` code to a [`ConfigSource`].
fn source_from_wire(code: i8) -> ConfigSource {
    match code {
        1 => ConfigSource::DynamicTopic,
        2 => ConfigSource::DynamicBroker,
        3 => ConfigSource::DynamicDefaultBroker,
        4 => ConfigSource::StaticBroker,
        5 => ConfigSource::Default,
        other => ConfigSource::Other(other),
    }
}

/// One step of a config's synonym chain (the places its value could come from, by precedence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    /// Config name at that level (e.g. `log.retention.ms` for a topic's `retention.ms`).
    pub name: String,
    /// Value at that level (`None` for sensitive or unset values).
    pub value: Option<String>,
    /// The level.
    pub source: ConfigSource,
}

/// A config entry together with its synonym chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    /// The entry itself.
    pub entry: ConfigEntry,
    /// Synonyms, most specific first (empty unless requested).
    pub synonyms: Vec<ConfigSynonym>,
}

impl DescribedConfig {
    /// Whether the value is the built-in default (source `DEFAULT_CONFIG`).
    pub fn is_default(&self) -> bool {
        self.entry.source == ConfigSource::Default
    }
}

/// An IncrementalAlterConfigs operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterConfigOpKind {
    /// Set the value (wire 0).
    Set,
    /// Remove the override, restoring the inherited value (wire 1).
    Delete,
    /// Add items to a list config (wire 2).
    Append,
    /// Remove items from a list config (wire 3).
    Subtract,
}

impl AlterConfigOpKind {
    /// The wire `config_operation` code.
    pub fn wire(self) -> i8 {
        match self {
            AlterConfigOpKind::Set => 0,
            AlterConfigOpKind::Delete => 1,
            AlterConfigOpKind::Append => 2,
            AlterConfigOpKind::Subtract => 3,
        }
    }
}

/// One change of an IncrementalAlterConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Config name.
    pub name: String,
    /// Operation.
    pub op: AlterConfigOpKind,
    /// Value (`None` for [`AlterConfigOpKind::Delete`]).
    pub value: Option<String>,
}

impl ConfigChange {
    /// `SET name=value`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> ConfigChange {
        ConfigChange {
            name: name.into(),
            op: AlterConfigOpKind::Set,
            value: Some(value.into()),
        }
    }

    /// `DELETE name`.
    pub fn delete(name: impl Into<String>) -> ConfigChange {
        ConfigChange {
            name: name.into(),
            op: AlterConfigOpKind::Delete,
            value: None,
        }
    }
}

fn described(c: DescribeConfigsResourceResult) -> DescribedConfig {
    DescribedConfig {
        entry: ConfigEntry {
            name: c.name.as_str().to_owned(),
            value: c.value.map(|v| v.as_str().to_owned()),
            source: source_from_wire(c.config_source),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        },
        synonyms: c
            .synonyms
            .into_iter()
            .map(|s| ConfigSynonym {
                name: s.name.as_str().to_owned(),
                value: s.value.map(|v| v.as_str().to_owned()),
                source: source_from_wire(s.source),
            })
            .collect(),
    }
}

/// Builds the wire request for `changes` of `resource`.
fn alter_request(
    resource: &ConfigResource,
    changes: &[ConfigChange],
    validate_only: bool,
) -> IncrementalAlterConfigsRequest {
    let mut res = AlterConfigsResource::default();
    res.resource_type = resource.wire_type();
    res.resource_name = StrBytes::from_string(resource.wire_name());
    res.configs = changes
        .iter()
        .map(|c| {
            let mut a = AlterableConfig::default();
            a.name = StrBytes::from_string(c.name.clone());
            a.config_operation = c.op.wire();
            a.value = c.value.clone().map(StrBytes::from_string);
            a
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    req.validate_only = validate_only;
    req
}

impl Client {
    /// The address a request about `resource` should go to: the named broker for broker
    /// resources, any broker for topics.
    async fn config_target(&mut self, resource: &ConfigResource) -> Result<String> {
        let md = self.metadata(Some(&[])).await?;
        match resource {
            ConfigResource::Topic(_) => md.brokers.first().map(|b| b.addr()).ok_or_else(|| {
                ClientError::InvalidInput("the cluster metadata lists no brokers".into())
            }),
            ConfigResource::Broker(id) => md
                .brokers
                .iter()
                .find(|b| b.id == *id)
                .map(|b| b.addr())
                .ok_or_else(|| {
                    let known: Vec<String> = md.brokers.iter().map(|b| b.id.to_string()).collect();
                    ClientError::InvalidInput(format!(
                        "broker {id} is not in the cluster (brokers: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ))
                }),
        }
    }

    /// Every config of `resource` (sorted by name), with synonym chains when `synonyms`.
    ///
    /// A missing topic is [`ClientError::UnknownTopic`]; other broker errors are
    /// [`ClientError::Kafka`].
    pub async fn describe_resource_configs(
        &mut self,
        resource: &ConfigResource,
        synonyms: bool,
    ) -> Result<Vec<DescribedConfig>> {
        let addr = self.config_target(resource).await?;
        let mut res = DescribeConfigsResource::default();
        res.resource_type = resource.wire_type();
        res.resource_name = StrBytes::from_string(resource.wire_name());
        res.configuration_keys = None;
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![res];
        req.include_synonyms = synonyms;
        let resp = self.send_pinned(&addr, &req, 4).await?;
        let name = resource.wire_name();
        let result = resp
            .results
            .into_iter()
            .find(|r| r.resource_name.as_str() == name)
            .ok_or_else(|| ClientError::Protocol {
                addr: addr.clone(),
                message: format!("DescribeConfigs response has no entry for {resource}"),
            })?;
        check(
            resource,
            result.error_code,
            result.error_message.as_deref(),
            "describe",
        )?;
        let mut out: Vec<DescribedConfig> = result.configs.into_iter().map(described).collect();
        out.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        Ok(out)
    }

    /// Applies `changes` to `resource` with IncrementalAlterConfigs (all or nothing). With
    /// `validate_only` the broker checks the changes without applying them.
    pub async fn incremental_alter_configs(
        &mut self,
        resource: &ConfigResource,
        changes: &[ConfigChange],
        validate_only: bool,
    ) -> Result<()> {
        if changes.is_empty() {
            return Err(ClientError::InvalidInput(format!(
                "no config changes given for {resource}"
            )));
        }
        let addr = self.config_target(resource).await?;
        let req = alter_request(resource, changes, validate_only);
        let resp = self.send_pinned(&addr, &req, 1).await?;
        let name = resource.wire_name();
        let result = resp
            .responses
            .into_iter()
            .find(|r| r.resource_name.as_str() == name)
            .ok_or_else(|| ClientError::Protocol {
                addr: addr.clone(),
                message: format!("IncrementalAlterConfigs response has no entry for {resource}"),
            })?;
        check(
            resource,
            result.error_code,
            result.error_message.as_deref(),
            "alter",
        )
    }
}

/// Maps a resource-level error code; a missing topic becomes [`ClientError::UnknownTopic`].
fn check(resource: &ConfigResource, code: i16, message: Option<&str>, verb: &str) -> Result<()> {
    if let ConfigResource::Topic(t) = resource {
        if KafkaCode::from_code(code) == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) {
            return Err(ClientError::UnknownTopic(t.clone()));
        }
    }
    ClientError::check(code, message, || format!("{verb} configs of {resource}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_map_to_wire() {
        let t = ConfigResource::Topic("orders".into());
        assert_eq!((t.wire_type(), t.wire_name()), (2, "orders".to_owned()));
        assert_eq!(t.to_string(), "topic 'orders'");
        let b = ConfigResource::Broker(7);
        assert_eq!((b.wire_type(), b.wire_name()), (4, "7".to_owned()));
        assert_eq!(b.to_string(), "broker 7");
    }

    #[test]
    fn operations_have_kafka_codes() {
        assert_eq!(AlterConfigOpKind::Set.wire(), 0);
        assert_eq!(AlterConfigOpKind::Delete.wire(), 1);
        assert_eq!(AlterConfigOpKind::Append.wire(), 2);
        assert_eq!(AlterConfigOpKind::Subtract.wire(), 3);
    }

    #[test]
    fn alter_request_carries_every_change() {
        let changes = [
            ConfigChange::set("retention.ms", "1000"),
            ConfigChange::delete("segment.bytes"),
            ConfigChange {
                name: "cleanup.policy".into(),
                op: AlterConfigOpKind::Append,
                value: Some("compact".into()),
            },
        ];
        let req = alter_request(&ConfigResource::Topic("t".into()), &changes, true);
        assert!(req.validate_only);
        assert_eq!(req.resources.len(), 1);
        let r = &req.resources[0];
        assert_eq!((r.resource_type, r.resource_name.as_str()), (2, "t"));
        let got: Vec<(&str, i8, Option<&str>)> = r
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.as_str()),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("retention.ms", 0, Some("1000")),
                ("segment.bytes", 1, None),
                ("cleanup.policy", 2, Some("compact")),
            ]
        );
    }

    #[test]
    fn sources_have_kafka_names() {
        assert_eq!(source_from_wire(1).kafka_name(), "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(source_from_wire(4).kafka_name(), "STATIC_BROKER_CONFIG");
        assert_eq!(source_from_wire(5).kafka_name(), "DEFAULT_CONFIG");
        assert_eq!(
            source_from_wire(6).kafka_name(),
            "DYNAMIC_BROKER_LOGGER_CONFIG"
        );
        assert_eq!(
            source_from_wire(42).kafka_name(),
            "UNKNOWN_CONFIG_SOURCE_42"
        );
    }

    #[test]
    fn missing_topic_is_unknown_topic() {
        let t = ConfigResource::Topic("gone".into());
        let e = check(&t, 3, Some("topic gone does not exist"), "describe").unwrap_err();
        assert!(matches!(e, ClientError::UnknownTopic(ref n) if n == "gone"));
        let e = check(&t, 40, Some("bad value"), "alter").unwrap_err();
        assert_eq!(
            e.to_string(),
            "alter configs of topic 'gone': INVALID_CONFIG: bad value"
        );
        assert!(check(&ConfigResource::Broker(1), 0, None, "alter").is_ok());
    }

    #[test]
    fn described_entries_keep_synonyms() {
        let mut c = DescribeConfigsResourceResult::default();
        c.name = StrBytes::from_static_str("retention.ms");
        c.value = Some(StrBytes::from_static_str("1000"));
        c.config_source = 1;
        let mut s =
            kafka_protocol::messages::describe_configs_response::DescribeConfigsSynonym::default();
        s.name = StrBytes::from_static_str("log.retention.ms");
        s.value = None;
        s.source = 5;
        c.synonyms = vec![s];
        let d = described(c);
        assert_eq!(d.entry.name, "retention.ms");
        assert_eq!(d.entry.source, ConfigSource::DynamicTopic);
        assert!(!d.is_default());
        assert_eq!(
            d.synonyms,
            vec![ConfigSynonym {
                name: "log.retention.ms".into(),
                value: None,
                source: ConfigSource::Default,
            }]
        );
    }
}
