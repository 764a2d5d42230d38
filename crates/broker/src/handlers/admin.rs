//! Admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, DescribeCluster.
//! Validation and planning live in the controller crate; these handlers translate and apply.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest,
    DescribeClusterResponse, DescribeConfigsRequest, DescribeConfigsResponse, TopicName,
};
use sluice_controller::{
    plan_create_partitions, plan_create_topic, plan_create_topic_with_assignment,
    plan_delete_topic, resolve_broker_configs, resolve_topic_configs, ControllerError, Metadata,
    MetadataCommand, ResolvedConfig,
};
use uuid::Uuid;

use super::sb;
use crate::codes;
use crate::state::Broker;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Creates a topic with broker defaults (Metadata auto-creation). Err = Kafka error code.
pub async fn auto_create(broker: &Arc<Broker>, name: &str) -> Result<Arc<Metadata>, i16> {
    let _g = broker.admin_lock.lock().await;
    let md = broker.metadata();
    if md.topics.contains_key(name) {
        return Ok(md);
    }
    let cmd = plan_create_topic(&md, name, -1, -1, &BTreeMap::new(), &broker.config.settings)
        .map_err(|e| codes::controller_error(&e))?;
    let md = apply_create(broker, cmd)
        .await
        .map_err(|e| codes::controller_error(&e))?;
    tracing::info!(topic = name, "auto-created topic");
    Ok(md)
}

/// Commits a planned creation. Committing reconciles, so the partitions assigned here are
/// open when this returns.
async fn apply_create(
    broker: &Broker,
    cmd: MetadataCommand,
) -> Result<Arc<Metadata>, ControllerError> {
    broker.commit(cmd).await
}

pub async fn create_topics(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let _g = broker.admin_lock.lock().await;
    let mut results = Vec::with_capacity(req.topics.len());
    let mut seen = std::collections::HashSet::new();
    for t in req.topics {
        let name = t.name.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        if version >= 5 {
            r.num_partitions = -1;
            r.replication_factor = -1;
        }
        if !seen.insert(name.clone()) {
            r.error_code = codes::INVALID_REQUEST;
            r.error_message = Some(sb(format!(
                "topic {name} appears more than once in the request"
            )));
            results.push(r);
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut config_error = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => config_error = Some(format!("config {} has a null value", c.name)),
            }
        }
        if let Some(msg) = config_error {
            r.error_code = codes::INVALID_CONFIG;
            r.error_message = Some(sb(msg));
            results.push(r);
            continue;
        }
        let (partitions, rf) = (t.num_partitions, t.replication_factor);
        let mut assignment: Option<Vec<Vec<i32>>> = None;
        if !t.assignments.is_empty() {
            if partitions != -1 || rf != -1 {
                r.error_code = codes::INVALID_REQUEST;
                r.error_message = Some(sb(
                    "both numPartitions/replicationFactor and replica assignments were given; give one",
                ));
                results.push(r);
                continue;
            }
            // Kafka lists them by partition index; each index 0..n once.
            let mut manual: Vec<(i32, Vec<i32>)> = t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect();
            manual.sort_by_key(|(i, _)| *i);
            let sequential = manual
                .iter()
                .enumerate()
                .all(|(k, (i, _))| usize::try_from(*i).is_ok_and(|i| i == k));
            if !sequential {
                r.error_code = codes::INVALID_REPLICA_ASSIGNMENT;
                r.error_message = Some(sb(
                    "the manual assignment's partition indexes must be 0, 1, 2, ... each once",
                ));
                results.push(r);
                continue;
            }
            assignment = Some(manual.into_iter().map(|(_, r)| r).collect::<Vec<_>>());
        }
        let md = broker.metadata();
        let planned = match &assignment {
            Some(a) => {
                plan_create_topic_with_assignment(&md, &name, a, &configs, &broker.config.settings)
            }
            None => plan_create_topic(
                &md,
                &name,
                partitions,
                rf,
                &configs,
                &broker.config.settings,
            ),
        };
        let outcome = match planned {
            Ok(cmd) if req.validate_only => Ok((cmd, md)),
            Ok(cmd) => apply_create(broker, cmd.clone()).await.map(|md| (cmd, md)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((cmd, md)) => {
                if let MetadataCommand::CreateTopic {
                    id,
                    partitions: parts,
                    ..
                } = &cmd
                {
                    r.topic_id = if version >= 7 { *id } else { Uuid::nil() };
                    if version >= 5 {
                        r.num_partitions = parts.len() as i32;
                        r.replication_factor =
                            parts.first().map(|p| p.replicas.len() as i16).unwrap_or(0);
                        let overrides = md
                            .topics
                            .get(&name)
                            .map(|t| t.configs.clone())
                            .unwrap_or_else(|| configs.clone());
                        r.configs = Some(
                            resolve_topic_configs(&overrides, &broker.config.settings)
                                .into_iter()
                                .map(|c| {
                                    let mut e = CreatableTopicConfigs::default();
                                    e.name = sb(c.name);
                                    e.value = c.value.map(sb);
                                    e.read_only = c.read_only;
                                    e.config_source = c.source as i8;
                                    e.is_sensitive = c.sensitive;
                                    e
                                })
                                .collect(),
                        );
                    }
                }
                if !req.validate_only {
                    tracing::info!(topic = %name, "created topic");
                }
            }
            Err(e) => {
                r.error_code = codes::controller_error(&e);
                r.error_message = Some(sb(e.to_string()));
            }
        }
        results.push(r);
    }
    let mut resp = CreateTopicsResponse::default();
    resp.topics = results;
    resp
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let _g = broker.admin_lock.lock().await;
    // v6+ names topics by name or id; older versions by name only.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.to_string()), Uuid::nil()))
            .collect()
    };
    let mut results = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let md = broker.metadata();
        let mut r = DeletableTopicResult::default();
        let resolved = match (&name, id) {
            (Some(n), _) => md.topics.get(n).map(|t| (t.name.clone(), t.id)),
            (None, id) => md.topic_by_id(&id).map(|t| (t.name.clone(), t.id)),
        };
        r.name = name.clone().map(|n| TopicName(sb(n)));
        if version >= 6 {
            r.topic_id = id;
        }
        let Some((tname, tid)) = resolved else {
            r.error_code = if name.is_some() {
                codes::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                codes::UNKNOWN_TOPIC_ID
            };
            results.push(r);
            continue;
        };
        if version >= 6 {
            r.name = Some(TopicName(sb(tname.clone())));
            r.topic_id = tid;
        }
        // Committing reconciles: the topic's local logs are closed and deleted on return.
        let outcome = match plan_delete_topic(&md, &tname) {
            Ok(cmd) => broker.commit(cmd).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) => {
                tracing::info!(topic = %tname, "deleted topic");
            }
            Err(e) => {
                r.error_code = codes::controller_error(&e);
                if version >= 5 {
                    r.error_message = Some(sb(e.to_string()));
                }
            }
        }
        results.push(r);
    }
    let mut resp = DeleteTopicsResponse::default();
    resp.responses = results;
    resp
}

pub async fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let _g = broker.admin_lock.lock().await;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let md = broker.metadata();
        let outcome = match plan_create_partitions(&md, &name, t.count) {
            Ok(_) if req.validate_only => Ok(md.clone()),
            Ok(cmd) => broker.commit(cmd).await,
            Err(e) => Err(e),
        };
        match outcome {
            // Committing reconciled: the new partitions are open.
            Ok(_) => {
                if !req.validate_only {
                    tracing::info!(topic = %name, partitions = t.count, "added partitions");
                }
            }
            Err(e) => {
                r.error_code = codes::controller_error(&e);
                r.error_message = Some(sb(e.to_string()));
            }
        }
        results.push(r);
    }
    let mut resp = CreatePartitionsResponse::default();
    resp.results = results;
    resp
}

fn config_entries(
    configs: Vec<ResolvedConfig>,
    keys: &Option<Vec<String>>,
    synonyms: bool,
    docs: bool,
    version: i16,
) -> Vec<DescribeConfigsResourceResult> {
    configs
        .into_iter()
        .filter(|c| keys.as_ref().is_none_or(|k| k.contains(&c.name)))
        .map(|c| {
            let mut e = DescribeConfigsResourceResult::default();
            e.name = sb(c.name);
            e.value = if c.sensitive { None } else { c.value.map(sb) };
            e.read_only = c.read_only;
            e.config_source = c.source as i8;
            e.is_sensitive = c.sensitive;
            if synonyms {
                e.synonyms = c
                    .synonyms
                    .into_iter()
                    .map(|(n, v, s)| {
                        let mut syn = DescribeConfigsSynonym::default();
                        syn.name = sb(n);
                        syn.value = v.map(sb);
                        syn.source = s as i8;
                        syn
                    })
                    .collect();
            }
            if version >= 3 {
                e.config_type = c.kind.wire_code();
                if docs {
                    e.documentation = Some(sb(c.doc));
                }
            }
            e
        })
        .collect()
}

pub fn describe_configs(
    broker: &Broker,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let md = broker.metadata();
    let mut results = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .as_ref()
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        match res.resource_type {
            RESOURCE_TOPIC => match md.topics.get(&name) {
                Some(t) => {
                    r.configs = config_entries(
                        resolve_topic_configs(&t.configs, &broker.config.settings),
                        &keys,
                        req.include_synonyms,
                        req.include_documentation,
                        version,
                    )
                }
                None => {
                    r.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                    r.error_message = Some(sb(format!("topic {name} does not exist")));
                }
            },
            RESOURCE_BROKER => {
                let me = broker.config.node_id.to_string();
                if name.is_empty() || name == me {
                    // The default resource ("") shows the cluster-wide dynamic defaults
                    // only, as Kafka does; a node shows everything that applies to it.
                    let default = md.broker_configs.get("");
                    let mut resolved = resolve_broker_configs(
                        &broker.config.settings,
                        md.broker_configs.get(&me),
                        default,
                    );
                    if name.is_empty() {
                        resolved.retain(|c| default.is_some_and(|d| d.contains_key(&c.name)));
                    }
                    r.configs = config_entries(
                        resolved,
                        &keys,
                        req.include_synonyms,
                        req.include_documentation,
                        version,
                    );
                } else {
                    r.error_code = codes::INVALID_REQUEST;
                    r.error_message = Some(sb(format!(
                        "this is broker {}; ask broker {name} for its own configs",
                        broker.config.node_id
                    )));
                }
            }
            other => {
                r.error_code = codes::INVALID_REQUEST;
                r.error_message = Some(sb(format!("resource type {other} is not supported")));
            }
        }
        results.push(r);
    }
    let mut resp = DescribeConfigsResponse::default();
    resp.results = results;
    resp
}

pub fn describe_cluster(broker: &Broker, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let md = broker.metadata();
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = sb(broker.cluster_id.clone());
    resp.controller_id = BrokerId(super::metadata::controller_id(broker, &md));
    resp.endpoint_type = req.endpoint_type;
    // Fenced brokers only when asked (v2, KIP-1073), marked as such.
    resp.brokers = md
        .brokers
        .values()
        .filter(|b| req.include_fenced_brokers || !b.fenced)
        .map(|b| {
            let mut e = DescribeClusterBroker::default();
            e.broker_id = BrokerId(b.node_id);
            e.host = sb(b.host.clone());
            e.port = b.port;
            e.rack = b.rack.clone().map(sb);
            e.is_fenced = req.include_fenced_brokers && b.fenced; // v2+ only
            e
        })
        .collect();
    resp
}
