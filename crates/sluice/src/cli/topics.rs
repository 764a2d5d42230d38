//! `sluice topics create|list|describe|delete|alter`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sluice_client::{Client, ClientError, KafkaCode, NewTopic, TopicInfo};

use super::output::{ids, print, print_json, progress, table, topic_id};
use super::{CommonArgs, OutputFormat};

/// Arguments of `sluice topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics (name, partitions, replication factor).
    List(ListArgs),
    /// Show partitions (leader, replicas, ISR) and non-default configs of topics.
    Describe(DescribeArgs),
    /// Delete topics.
    Delete(DeleteArgs),
    /// Change a topic (currently: raise its partition count).
    Alter(AlterArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Topic name.
    name: String,
    /// Number of partitions (default: the broker's `num.partitions`).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    partitions: Option<i32>,
    /// Replication factor (default: the broker's `default.replication.factor`).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    replication_factor: Option<i16>,
    /// Topic config, e.g. `--config retention.ms=3600000` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    configs: Vec<(String, String)>,
    /// Succeed without changes if the topic already exists.
    #[arg(long)]
    if_not_exists: bool,
    /// Ask the broker to validate the request without creating anything.
    #[arg(long)]
    validate_only: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Leave out internal topics (such as `__consumer_offsets`).
    #[arg(long)]
    exclude_internal: bool,
}

#[derive(Debug, Args)]
struct DescribeArgs {
    /// Topics to describe (default: all).
    names: Vec<String>,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    /// Topics to delete.
    #[arg(required = true)]
    names: Vec<String>,
    /// Succeed for topics that do not exist.
    #[arg(long)]
    if_exists: bool,
}

#[derive(Debug, Args)]
struct AlterArgs {
    /// Topic name.
    name: String,
    /// New total number of partitions (can only grow).
    #[arg(long, value_name = "N", required = true)]
    partitions: i32,
}

/// Parses `key=value` (the value may contain `=`).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

pub async fn run(args: TopicsArgs) -> anyhow::Result<i32> {
    let mut client = args.common.connect().await?;
    let fmt = args.common.output;
    match args.command {
        TopicsCommand::Create(a) => create(&mut client, fmt, a).await,
        TopicsCommand::List(a) => list(&mut client, fmt, a).await,
        TopicsCommand::Describe(a) => describe(&mut client, fmt, a).await,
        TopicsCommand::Delete(a) => delete(&mut client, fmt, a).await,
        TopicsCommand::Alter(a) => alter(&mut client, fmt, a).await,
    }
}

fn has_code(e: &ClientError, code: KafkaCode) -> bool {
    e.kafka_code() == Some(code)
}

async fn create(client: &mut Client, fmt: OutputFormat, a: CreateArgs) -> anyhow::Result<i32> {
    let topic = NewTopic {
        name: a.name.clone(),
        partitions: a.partitions.unwrap_or(-1),
        replication_factor: a.replication_factor.unwrap_or(-1),
        configs: a.configs,
    };
    let mut results = client.create_topics(&[topic], a.validate_only).await?;
    let (name, result) = results.pop().context("the broker returned no result")?;
    match result {
        Ok(created) => {
            let id = (!created.topic_id.is_nil()).then(|| topic_id(&created.topic_id));
            match fmt {
                OutputFormat::Json => print_json(&json!({
                    "topic": name,
                    "created": !a.validate_only,
                    "validate_only": a.validate_only,
                    "topic_id": id,
                    "partitions": (created.partitions >= 0).then_some(created.partitions),
                    "replication_factor": (created.replication_factor >= 0).then_some(created.replication_factor),
                }))?,
                OutputFormat::Table if a.validate_only => print(&format!(
                    "Topic {name} is valid (validate only: nothing was created).\n"
                ))?,
                OutputFormat::Table => print(&format!("Created topic {name}.\n"))?,
            }
            Ok(0)
        }
        Err(e) if a.if_not_exists && has_code(&e, KafkaCode::TOPIC_ALREADY_EXISTS) => {
            match fmt {
                OutputFormat::Json => print_json(&json!({
                    "topic": name, "created": false, "validate_only": a.validate_only, "already_exists": true,
                }))?,
                OutputFormat::Table => print(&format!("Topic {name} already exists.\n"))?,
            }
            Ok(0)
        }
        Err(e) if has_code(&e, KafkaCode::TOPIC_ALREADY_EXISTS) => {
            bail!("{e} (pass --if-not-exists to ignore)")
        }
        Err(e) => Err(e.into()),
    }
}

async fn list(client: &mut Client, fmt: OutputFormat, a: ListArgs) -> anyhow::Result<i32> {
    let md = client.metadata(None).await?;
    let topics: Vec<&TopicInfo> = md
        .topics
        .iter()
        .filter(|t| !(a.exclude_internal && t.internal))
        .collect();
    match fmt {
        OutputFormat::Json => {
            let arr: Vec<Value> = topics
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "topic_id": topic_id(&t.topic_id),
                        "partitions": t.partitions.len(),
                        "replication_factor": t.replication_factor(),
                        "internal": t.internal,
                    })
                })
                .collect();
            print_json(&Value::Array(arr))?;
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.partitions.len().to_string(),
                        t.replication_factor().to_string(),
                    ]
                })
                .collect();
            print(&table(&["NAME", "PARTITIONS", "REPLICATION"], &rows))?;
        }
    }
    Ok(0)
}

async fn describe(client: &mut Client, fmt: OutputFormat, a: DescribeArgs) -> anyhow::Result<i32> {
    let md = if a.names.is_empty() {
        client.metadata(None).await?
    } else {
        client.metadata(Some(&a.names)).await?
    };
    let mut topics = Vec::new();
    for t in &md.topics {
        match t.error {
            None => topics.push(t),
            Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                return Err(ClientError::UnknownTopic(t.name.clone()).into())
            }
            Some(code) => bail!("describe topic '{}': {code}", t.name),
        }
    }
    // Keep the order the user asked for.
    if !a.names.is_empty() {
        topics.sort_by_key(|t| a.names.iter().position(|n| *n == t.name));
    }
    let mut json_out = Vec::new();
    let mut text = String::new();
    for t in topics {
        let configs = client
            .describe_configs(&t.name)
            .await
            .with_context(|| format!("reading configs of topic '{}'", t.name))?;
        let overrides: Vec<(String, String)> = configs
            .iter()
            .filter(|c| c.is_topic_override())
            .map(|c| {
                let v = if c.sensitive {
                    "(sensitive)".to_owned()
                } else {
                    c.value.clone().unwrap_or_else(|| "null".into())
                };
                (c.name.clone(), v)
            })
            .collect();
        match fmt {
            OutputFormat::Json => {
                let parts: Vec<Value> = t
                    .partitions
                    .iter()
                    .map(|p| {
                        json!({
                            "partition": p.partition,
                            "leader": p.leader,
                            "leader_epoch": p.leader_epoch,
                            "replicas": p.replicas,
                            "isr": p.isr,
                            "offline": p.offline,
                            "error": p.error.map(|e| e.name()),
                        })
                    })
                    .collect();
                let cfg: serde_json::Map<String, Value> = overrides
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                json_out.push(json!({
                    "name": t.name,
                    "topic_id": topic_id(&t.topic_id),
                    "internal": t.internal,
                    "partition_count": t.partitions.len(),
                    "replication_factor": t.replication_factor(),
                    "partitions": parts,
                    "configs": cfg,
                }));
            }
            OutputFormat::Table => {
                if !text.is_empty() {
                    text.push('\n');
                }
                let cfg = if overrides.is_empty() {
                    "(none; all defaults)".to_owned()
                } else {
                    overrides
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let internal = if t.internal { " (internal)" } else { "" };
                text.push_str(&format!("Topic:              {}{internal}\n", t.name));
                text.push_str(&format!("TopicId:            {}\n", topic_id(&t.topic_id)));
                text.push_str(&format!("PartitionCount:     {}\n", t.partitions.len()));
                text.push_str(&format!("ReplicationFactor:  {}\n", t.replication_factor()));
                text.push_str(&format!("Configs:            {cfg}\n"));
                let any_error = t.partitions.iter().any(|p| p.error.is_some());
                let any_offline = t.partitions.iter().any(|p| !p.offline.is_empty());
                let rows: Vec<Vec<String>> = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let leader = if p.leader < 0 {
                            "none".to_owned()
                        } else {
                            p.leader.to_string()
                        };
                        let mut row = vec![
                            p.partition.to_string(),
                            leader,
                            ids(&p.replicas),
                            ids(&p.isr),
                        ];
                        if any_offline {
                            row.push(ids(&p.offline));
                        }
                        if any_error {
                            row.push(p.error.map(|e| e.name()).unwrap_or_default());
                        }
                        row
                    })
                    .collect();
                let mut headers = vec!["PARTITION", "LEADER", "REPLICAS", "ISR"];
                if any_offline {
                    headers.push("OFFLINE");
                }
                if any_error {
                    headers.push("ERROR");
                }
                for line in table(&headers, &rows).lines() {
                    text.push_str("  ");
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    match fmt {
        OutputFormat::Json => print_json(&Value::Array(json_out))?,
        OutputFormat::Table => print(&text)?,
    }
    Ok(0)
}

/// Topics deleted per DeleteTopics request (so that deleting many shows progress).
const DELETE_CHUNK: usize = 25;

async fn delete(client: &mut Client, fmt: OutputFormat, a: DeleteArgs) -> anyhow::Result<i32> {
    let bar = if a.names.len() > DELETE_CHUNK {
        progress(a.names.len() as u64, "deleting topics")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut results = Vec::with_capacity(a.names.len());
    for chunk in a.names.chunks(DELETE_CHUNK) {
        results.extend(client.delete_topics(chunk).await?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let mut failures = Vec::new();
    let mut json_out = Vec::new();
    let mut text = String::new();
    for (name, result) in results {
        let missing = |e: &ClientError| {
            has_code(e, KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
                || has_code(e, KafkaCode::UNKNOWN_TOPIC_ID)
        };
        match result {
            Ok(()) => {
                json_out.push(json!({"topic": name, "deleted": true}));
                text.push_str(&format!("Deleted topic {name}.\n"));
            }
            Err(e) if a.if_exists && missing(&e) => {
                json_out.push(json!({"topic": name, "deleted": false, "existed": false}));
                text.push_str(&format!(
                    "Topic {name} does not exist; nothing to delete.\n"
                ));
            }
            Err(e) if missing(&e) => {
                json_out.push(json!({"topic": name, "deleted": false, "error": e.to_string()}));
                failures.push(format!(
                    "topic '{name}' does not exist (pass --if-exists to ignore)"
                ));
            }
            Err(e) => {
                json_out.push(json!({"topic": name, "deleted": false, "error": e.to_string()}));
                failures.push(e.to_string());
            }
        }
    }
    match fmt {
        OutputFormat::Json => print_json(&Value::Array(json_out))?,
        OutputFormat::Table => print(&text)?,
    }
    if failures.is_empty() {
        Ok(0)
    } else {
        bail!("{}", failures.join("; "))
    }
}

async fn alter(client: &mut Client, fmt: OutputFormat, a: AlterArgs) -> anyhow::Result<i32> {
    let mut results = client
        .create_partitions(&[(a.name.clone(), a.partitions)], false)
        .await?;
    let (name, result) = results.pop().context("the broker returned no result")?;
    match result {
        Ok(()) => {
            match fmt {
                OutputFormat::Json => {
                    print_json(&json!({"topic": name, "partitions": a.partitions}))?
                }
                OutputFormat::Table => print(&format!(
                    "Topic {name} now has {} partitions.\n",
                    a.partitions
                ))?,
            }
            Ok(0)
        }
        Err(e) if has_code(&e, KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
            Err(ClientError::UnknownTopic(name).into())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(parse_key_value("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert_eq!(parse_key_value("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_key_value("=b").is_err());
        assert!(parse_key_value("ab").is_err());
    }
}
