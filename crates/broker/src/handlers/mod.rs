//! Request handlers: one function per API, mapping wire types to storage/controller calls and
//! errors to Kafka error codes. Handlers never panic on client input; a request that can't be
//! served sensibly returns `Err`, which closes the connection (as Kafka does).

mod admin;
mod configs;
mod fetch;
mod list_offsets;
mod metadata;
mod produce;
mod producer;

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::Request;

use crate::state::Broker;

/// A request that ends its connection.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CloseConnection(pub String);

/// Handles one request. `Ok(None)` means "send no response" (Produce with acks=0).
pub async fn handle(
    broker: &Arc<Broker>,
    request: Request,
) -> Result<Option<ResponseKind>, CloseConnection> {
    let version = request.header.request_api_version;
    let resp = match request.body {
        RequestKind::ApiVersions(_) => {
            let mut body = sluice_protocol::api_versions_body();
            if version < 1 {
                body.throttle_time_ms = 0;
            }
            ResponseKind::ApiVersions(body)
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, r, version).await)
        }
        RequestKind::Produce(r) => match produce::handle(broker, r, version).await {
            Some(resp) => ResponseKind::Produce(resp),
            None => return Ok(None),
        },
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, r, version).await?),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, r, version))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(list_offsets::offset_for_leader_epoch(broker, r))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(broker, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(broker, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(broker, r, version))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster(broker, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(configs::alter_configs(broker, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter_configs(broker, r).await,
        ),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer::init_producer_id(broker, r))
        }
        other => {
            return Err(CloseConnection(format!(
                "no handler for {:?}",
                std::mem::discriminant(&other)
            )))
        }
    };
    Ok(Some(resp))
}

/// Short API name for metrics labels.
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        _ => "Other",
    }
}

/// `StrBytes` from an owned string.
pub(crate) fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
