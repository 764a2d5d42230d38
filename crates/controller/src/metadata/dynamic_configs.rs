//! Dynamic broker configs (Kafka's BROKER config resources changed with
//! IncrementalAlterConfigs / AlterConfigs): kept in the metadata, so every broker sees the
//! same values and a restart keeps them. A resource is `""` (the cluster-wide default) or a
//! node id; a node's value wins over the default, which wins over the static setting.
//!
//! Sluice makes dynamic the configs Kafka's reassignment tool sets: the replication throttle
//! rates. Other broker configs are static (set at start) and are refused with Kafka's
//! "Cannot update these configs dynamically" error.

use std::collections::BTreeMap;

use super::{apply_config_ops, AlterConfigOp, Metadata, MetadataCommand};
use crate::config::{self, BrokerSettings, ConfigError, ConfigType};
use crate::error::ControllerError;

/// Broker configs that may be changed at run time.
pub const DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "follower.replication.throttled.rate",
    "leader.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

fn check_resource(resource: &str) -> Result<(), ControllerError> {
    if resource.is_empty() || resource.parse::<i32>().is_ok_and(|id| id >= 0) {
        Ok(())
    } else {
        Err(ControllerError::InvalidRequest(format!(
            "Invalid broker resource name '{resource}': give a node id, or an empty name for the cluster-wide default."
        )))
    }
}

/// Validates the changes of an `AlterBrokerConfigs` command.
pub(super) fn check_changes(
    resource: &str,
    configs: &BTreeMap<String, Option<String>>,
) -> Result<(), ControllerError> {
    check_resource(resource)?;
    let mut not_dynamic = Vec::new();
    for (key, value) in configs {
        let def = config::broker_config_def(key)
            .ok_or_else(|| ControllerError::from(ConfigError::Unknown(key.clone())))?;
        if !DYNAMIC_BROKER_CONFIGS.contains(&key.as_str()) {
            not_dynamic.push(key.clone());
            continue;
        }
        if let Some(v) = value {
            config::validate_value(def, v)?;
        }
    }
    if !not_dynamic.is_empty() {
        return Err(ControllerError::InvalidRequest(format!(
            "Cannot update these configs dynamically: {}. Set them with --set KEY=VALUE and restart the broker.",
            not_dynamic.join(", ")
        )));
    }
    Ok(())
}

/// Plans IncrementalAlterConfigs (`replace` false) or AlterConfigs (`replace` true: the
/// named configs become the resource's whole set) for one BROKER resource.
pub fn plan_alter_broker_configs(
    md: &Metadata,
    resource: &str,
    ops: &[(String, AlterConfigOp, Option<String>)],
    replace: bool,
) -> Result<MetadataCommand, ControllerError> {
    check_resource(resource)?;
    let current = md.broker_configs.get(resource);
    let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
    if replace {
        for k in current.into_iter().flat_map(|c| c.keys()) {
            changes.insert(k.clone(), None);
        }
    }
    // Unknown keys are reported by `check_changes`, with the rest of the broker's rules.
    apply_config_ops(
        ops,
        &mut changes,
        |key| Ok(config::broker_config_def(key).is_some_and(|d| d.kind == ConfigType::List)),
        |key| {
            current
                .and_then(|c| c.get(key))
                .cloned()
                .unwrap_or_default()
        },
    )?;
    check_changes(resource, &changes)?;
    Ok(MetadataCommand::AlterBrokerConfigs {
        resource: resource.to_string(),
        configs: changes,
    })
}

impl Metadata {
    /// The dynamic value of broker config `key` for `node_id` and whether it is the node's
    /// own (`true`) or the cluster-wide default (`false`).
    pub fn dynamic_broker_config(&self, node_id: i32, key: &str) -> Option<(&str, bool)> {
        if let Some(v) = self
            .broker_configs
            .get(&node_id.to_string())
            .and_then(|c| c.get(key))
        {
            return Some((v.as_str(), true));
        }
        self.broker_configs
            .get("")
            .and_then(|c| c.get(key))
            .map(|v| (v.as_str(), false))
    }

    /// The effective value of broker config `key` on `node_id`: dynamic (node, then
    /// cluster default), then the static setting, then the built-in default.
    pub fn effective_broker_config(
        &self,
        node_id: i32,
        key: &str,
        settings: &BrokerSettings,
    ) -> Option<String> {
        if let Some((v, _)) = self.dynamic_broker_config(node_id, key) {
            return Some(v.to_string());
        }
        settings.effective(key).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: &str) -> (String, AlterConfigOp, Option<String>) {
        (k.to_string(), AlterConfigOp::Set, Some(v.to_string()))
    }

    #[test]
    fn throttle_rates_are_dynamic_per_broker_and_by_default() {
        let mut md = Metadata::new("c", 1);
        let settings = BrokerSettings::default();
        let rate = "leader.replication.throttled.rate";
        assert_eq!(
            md.effective_broker_config(1, rate, &settings).as_deref(),
            Some("9223372036854775807")
        );
        let cmd = plan_alter_broker_configs(&md, "", &[set(rate, "500")], false).unwrap();
        md.apply(&cmd).unwrap();
        let cmd = plan_alter_broker_configs(&md, "1", &[set(rate, "1000")], false).unwrap();
        md.apply(&cmd).unwrap();
        assert_eq!(md.dynamic_broker_config(1, rate), Some(("1000", true)));
        assert_eq!(md.dynamic_broker_config(2, rate), Some(("500", false)));
        let del = (rate.to_string(), AlterConfigOp::Delete, None);
        let cmd = plan_alter_broker_configs(&md, "1", &[del], false).unwrap();
        md.apply(&cmd).unwrap();
        assert_eq!(md.dynamic_broker_config(1, rate), Some(("500", false)));
        assert!(
            !md.broker_configs.contains_key("1"),
            "empty resources are dropped"
        );
        // AlterConfigs replaces the resource's whole set.
        let cmd = plan_alter_broker_configs(
            &md,
            "",
            &[set("follower.replication.throttled.rate", "7")],
            true,
        )
        .unwrap();
        md.apply(&cmd).unwrap();
        assert_eq!(md.dynamic_broker_config(2, rate), None);
        assert_eq!(
            md.dynamic_broker_config(2, "follower.replication.throttled.rate"),
            Some(("7", false))
        );
    }

    #[test]
    fn static_unknown_and_invalid_values_are_refused() {
        let md = Metadata::new("c", 1);
        let code = |r: &str, op: (String, AlterConfigOp, Option<String>)| {
            plan_alter_broker_configs(&md, r, &[op], false)
                .unwrap_err()
                .error_code()
        };
        assert_eq!(code("1", set("num.partitions", "3")), 42);
        assert_eq!(code("1", set("no.such.config", "3")), 40);
        assert_eq!(
            code("1", set("leader.replication.throttled.rate", "-5")),
            40
        );
        assert_eq!(code("1", set("leader.replication.throttled.rate", "x")), 40);
        assert_eq!(code("x", set("leader.replication.throttled.rate", "5")), 42);
        let append = (
            "leader.replication.throttled.rate".to_string(),
            AlterConfigOp::Append,
            Some("5".to_string()),
        );
        assert_eq!(code("1", append), 40);
        // The command is checked again when applied.
        let mut md = md.clone();
        let mut bad = BTreeMap::new();
        bad.insert("num.partitions".to_string(), Some("3".to_string()));
        let cmd = MetadataCommand::AlterBrokerConfigs {
            resource: "1".into(),
            configs: bad,
        };
        assert_eq!(md.apply(&cmd).unwrap_err().error_code(), 42);
    }
}
