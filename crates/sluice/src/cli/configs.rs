//! `sluice configs describe|alter`: show and change topic (and broker) configs.

use anyhow::bail;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};
use sluice_client::{
    AlterConfigOpKind, ConfigChange, ConfigResource, ConfigSynonym, DescribedConfig,
};

use super::output::{print, print_json, table};
use super::topics::parse_key_value;
use super::{CommonArgs, OutputFormat};

/// Arguments of `sluice configs`.
#[derive(Debug, Args)]
pub struct ConfigsArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: ConfigsCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigsCommand {
    /// Show the configs of a topic or broker (non-default ones unless --all).
    Describe(DescribeArgs),
    /// Change the configs of a topic (IncrementalAlterConfigs).
    Alter(AlterArgs),
}

/// Which resource a command is about: exactly one of `--topic` / `--broker`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("resource").required(true).args(["topic", "broker"])))]
struct ResourceArgs {
    /// Topic whose configs to use.
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// Broker (node id) whose configs to use.
    #[arg(long, value_name = "ID")]
    broker: Option<i32>,
}

impl ResourceArgs {
    fn resource(&self) -> anyhow::Result<ConfigResource> {
        match (&self.topic, self.broker) {
            (Some(t), None) => Ok(ConfigResource::Topic(t.clone())),
            (None, Some(b)) => Ok(ConfigResource::Broker(b)),
            _ => bail!("give exactly one of --topic TOPIC or --broker ID"),
        }
    }
}

#[derive(Debug, Args)]
struct DescribeArgs {
    #[command(flatten)]
    resource: ResourceArgs,
    /// Show every config, including built-in defaults.
    #[arg(long)]
    all: bool,
    /// Show each config's synonym chain (where its value could come from, by precedence).
    #[arg(long)]
    synonyms: bool,
}

#[derive(Debug, Args)]
struct AlterArgs {
    #[command(flatten)]
    resource: ResourceArgs,
    /// Set a config, e.g. `--set retention.ms=3600000` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
    /// Remove a config override, restoring the inherited value (repeatable).
    #[arg(long = "delete", value_name = "KEY")]
    delete: Vec<String>,
    /// Add comma-separated items to a list config, e.g. `--append cleanup.policy=delete`.
    #[arg(long = "append", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    append: Vec<(String, String)>,
    /// Remove comma-separated items from a list config.
    #[arg(long = "subtract", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    subtract: Vec<(String, String)>,
    /// Ask the broker to validate the changes without applying them.
    #[arg(long)]
    validate_only: bool,
}

impl AlterArgs {
    /// The changes in the order: sets, deletes, appends, subtracts.
    fn changes(&self) -> Vec<ConfigChange> {
        let with_value = |op: AlterConfigOpKind, kv: &[(String, String)]| {
            kv.iter()
                .map(move |(k, v)| ConfigChange {
                    name: k.clone(),
                    op,
                    value: Some(v.clone()),
                })
                .collect::<Vec<_>>()
        };
        let mut out = with_value(AlterConfigOpKind::Set, &self.set);
        out.extend(self.delete.iter().map(ConfigChange::delete));
        out.extend(with_value(AlterConfigOpKind::Append, &self.append));
        out.extend(with_value(AlterConfigOpKind::Subtract, &self.subtract));
        out
    }
}

pub async fn run(args: ConfigsArgs) -> anyhow::Result<i32> {
    let fmt = args.common.output;
    match args.command {
        ConfigsCommand::Describe(a) => {
            let resource = a.resource.resource()?;
            let mut client = args.common.connect().await?;
            let configs = client
                .describe_resource_configs(&resource, a.synonyms)
                .await?;
            render_describe(fmt, &resource, &configs, a.all, a.synonyms)?;
            Ok(0)
        }
        ConfigsCommand::Alter(a) => {
            let resource = a.resource.resource()?;
            let changes = a.changes();
            if changes.is_empty() {
                bail!(
                    "nothing to alter: give at least one of --set KEY=VALUE, --delete KEY, \
                     --append KEY=VALUE or --subtract KEY=VALUE"
                );
            }
            let mut client = args.common.connect().await?;
            client
                .incremental_alter_configs(&resource, &changes, a.validate_only)
                .await?;
            render_alter(fmt, &resource, a.validate_only)?;
            Ok(0)
        }
    }
}

/// The value as shown: `(sensitive)` for secrets, `null` for unset values.
fn shown_value(value: Option<&str>, sensitive: bool) -> String {
    if sensitive {
        "(sensitive)".to_owned()
    } else {
        value.unwrap_or("null").to_owned()
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn synonym_text(s: &ConfigSynonym, sensitive: bool) -> String {
    format!(
        "{}={} ({})",
        s.name,
        shown_value(s.value.as_deref(), sensitive),
        s.source.kafka_name()
    )
}

fn resource_json(resource: &ConfigResource) -> Value {
    match resource {
        ConfigResource::Topic(t) => json!({"type": "topic", "name": t}),
        ConfigResource::Broker(b) => json!({"type": "broker", "id": b}),
    }
}

/// Renders the describe output (only non-default configs unless `all`).
fn describe_text(
    fmt: OutputFormat,
    resource: &ConfigResource,
    configs: &[DescribedConfig],
    all: bool,
    synonyms: bool,
) -> anyhow::Result<String> {
    let shown: Vec<&DescribedConfig> = configs.iter().filter(|c| all || !c.is_default()).collect();
    match fmt {
        OutputFormat::Json => {
            let arr: Vec<Value> = shown
                .iter()
                .map(|c| {
                    let e = &c.entry;
                    let mut obj = json!({
                        "name": e.name,
                        "value": if e.sensitive { Value::Null } else { json!(e.value) },
                        "source": e.source.kafka_name(),
                        "default": c.is_default(),
                        "read_only": e.read_only,
                        "sensitive": e.sensitive,
                    });
                    if synonyms {
                        obj["synonyms"] = c
                            .synonyms
                            .iter()
                            .map(|s| {
                                json!({
                                    "name": s.name,
                                    "value": if e.sensitive { Value::Null } else { json!(s.value) },
                                    "source": s.source.kafka_name(),
                                })
                            })
                            .collect();
                    }
                    obj
                })
                .collect();
            let mut s = serde_json::to_string_pretty(&Value::Array(arr))?;
            s.push('\n');
            Ok(s)
        }
        OutputFormat::Table => {
            if shown.is_empty() {
                let what = match resource {
                    ConfigResource::Topic(t) => format!("Topic {t}"),
                    ConfigResource::Broker(b) => format!("Broker {b}"),
                };
                return Ok(format!(
                    "{what} has no non-default configs (pass --all to list every config).\n"
                ));
            }
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|c| {
                    let e = &c.entry;
                    let mut row = vec![
                        e.name.clone(),
                        shown_value(e.value.as_deref(), e.sensitive),
                        e.source.kafka_name(),
                        yes_no(c.is_default()),
                        yes_no(e.read_only),
                        yes_no(e.sensitive),
                    ];
                    if synonyms {
                        row.push(
                            c.synonyms
                                .iter()
                                .map(|s| synonym_text(s, e.sensitive))
                                .collect::<Vec<_>>()
                                .join(", "),
                        );
                    }
                    row
                })
                .collect();
            let mut headers = vec![
                "NAME",
                "VALUE",
                "SOURCE",
                "DEFAULT",
                "READ-ONLY",
                "SENSITIVE",
            ];
            if synonyms {
                headers.push("SYNONYMS");
            }
            Ok(table(&headers, &rows))
        }
    }
}

fn render_describe(
    fmt: OutputFormat,
    resource: &ConfigResource,
    configs: &[DescribedConfig],
    all: bool,
    synonyms: bool,
) -> anyhow::Result<()> {
    print(&describe_text(fmt, resource, configs, all, synonyms)?)
}

fn render_alter(
    fmt: OutputFormat,
    resource: &ConfigResource,
    validate_only: bool,
) -> anyhow::Result<()> {
    let what = match resource {
        ConfigResource::Topic(t) => format!("topic {t}"),
        ConfigResource::Broker(b) => format!("broker {b}"),
    };
    match fmt {
        OutputFormat::Json => print_json(&json!({
            "resource": resource_json(resource),
            "altered": !validate_only,
            "validate_only": validate_only,
        })),
        OutputFormat::Table if validate_only => print(&format!(
            "Configs of {what} are valid (validate only: nothing was changed).\n"
        )),
        OutputFormat::Table => print(&format!("Altered configs of {what}.\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_client::{ConfigEntry, ConfigSource};

    fn cfg(
        name: &str,
        value: Option<&str>,
        source: ConfigSource,
        sensitive: bool,
    ) -> DescribedConfig {
        DescribedConfig {
            entry: ConfigEntry {
                name: name.into(),
                value: value.map(str::to_owned),
                source,
                read_only: false,
                sensitive,
            },
            synonyms: vec![ConfigSynonym {
                name: format!("log.{name}"),
                value: value.map(str::to_owned),
                source: ConfigSource::Default,
            }],
        }
    }

    fn sample() -> Vec<DescribedConfig> {
        vec![
            cfg(
                "cleanup.policy",
                Some("delete"),
                ConfigSource::Default,
                false,
            ),
            cfg(
                "retention.ms",
                Some("1000"),
                ConfigSource::DynamicTopic,
                false,
            ),
            cfg("secret", Some("hunter2"), ConfigSource::DynamicTopic, true),
        ]
    }

    #[test]
    fn table_hides_defaults_unless_all() {
        let t = ConfigResource::Topic("t".into());
        let out = describe_text(OutputFormat::Table, &t, &sample(), false, false).unwrap();
        assert!(out.starts_with("NAME"), "{out}");
        assert!(out.contains("retention.ms"), "{out}");
        assert!(out.contains("DYNAMIC_TOPIC_CONFIG"), "{out}");
        assert!(!out.contains("cleanup.policy"), "{out}");
        assert!(
            out.contains("(sensitive)") && !out.contains("hunter2"),
            "{out}"
        );
        let out = describe_text(OutputFormat::Table, &t, &sample(), true, false).unwrap();
        assert!(out.contains("cleanup.policy"), "{out}");
        assert!(out.contains("DEFAULT_CONFIG"), "{out}");
        assert!(!out.contains("SYNONYMS"), "{out}");
    }

    #[test]
    fn synonyms_column_lists_the_chain() {
        let t = ConfigResource::Topic("t".into());
        let out = describe_text(OutputFormat::Table, &t, &sample(), false, true).unwrap();
        assert!(out.contains("SYNONYMS"), "{out}");
        assert!(
            out.contains("log.retention.ms=1000 (DEFAULT_CONFIG)"),
            "{out}"
        );
        assert!(out.contains("log.secret=(sensitive)"), "{out}");
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let t = ConfigResource::Topic("t".into());
        let out = describe_text(OutputFormat::Json, &t, &sample(), true, true).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 3);
        assert_eq!(arr[0]["name"], "cleanup.policy");
        assert_eq!(arr[0]["default"], true);
        assert_eq!(arr[1]["value"], "1000");
        assert_eq!(arr[1]["source"], "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(arr[1]["synonyms"][0]["name"], "log.retention.ms");
        assert_eq!(arr[2]["value"], Value::Null);
        assert_eq!(arr[2]["sensitive"], true);
        assert!(!out.contains("hunter2"));
    }

    #[test]
    fn empty_table_explains_itself() {
        let t = ConfigResource::Topic("t".into());
        let out = describe_text(OutputFormat::Table, &t, &sample()[..1], false, false).unwrap();
        assert_eq!(
            out,
            "Topic t has no non-default configs (pass --all to list every config).\n"
        );
        let out = describe_text(OutputFormat::Json, &t, &sample()[..1], false, false).unwrap();
        assert_eq!(out.trim(), "[]");
    }

    #[test]
    fn changes_keep_their_operations() {
        let a = AlterArgs {
            resource: ResourceArgs {
                topic: Some("t".into()),
                broker: None,
            },
            set: vec![("a".into(), "1".into())],
            delete: vec!["b".into()],
            append: vec![("c".into(), "x".into())],
            subtract: vec![("d".into(), "y".into())],
            validate_only: false,
        };
        let ops: Vec<(String, AlterConfigOpKind, Option<String>)> = a
            .changes()
            .into_iter()
            .map(|c| (c.name, c.op, c.value))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("a".into(), AlterConfigOpKind::Set, Some("1".into())),
                ("b".into(), AlterConfigOpKind::Delete, None),
                ("c".into(), AlterConfigOpKind::Append, Some("x".into())),
                ("d".into(), AlterConfigOpKind::Subtract, Some("y".into())),
            ]
        );
    }
}
