//! Request handlers: one function per API, mapping wire types to storage/controller calls and
//! errors to Kafka error codes. Handlers never panic on client input; a request that can't be
//! served sensibly returns `Err`, which closes the connection (as Kafka does).

mod admin;
mod configs;
mod delete_records;
pub mod describe_quorum;
mod elect_leaders;
mod fetch;
pub mod forward;
mod groups;
mod leader_hint;
mod list_offsets;
mod log_dirs;
mod metadata;
mod produce;
mod producer;
mod reassign;
mod replan;
mod replica_fetch;

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::Request;

use crate::state::Broker;

/// `metadata.version` feature level Sluice's metadata corresponds to (Kafka 4.0-IV3) and the
/// lowest it accepts. Later issues add `transaction.version` and
/// `eligible.leader.replicas.version` here as they implement them.
pub const METADATA_VERSION: i16 = 25;
const METADATA_VERSION_MIN: i16 = 7;

/// Supported and finalized features (KIP-584) as a Kafka 4 broker reports them.
fn features(broker: &Broker, body: &mut kafka_protocol::messages::ApiVersionsResponse) {
    use kafka_protocol::messages::api_versions_response::{
        FinalizedFeatureKey, SupportedFeatureKey,
    };
    let name = StrBytes::from_static_str("metadata.version");
    body.supported_features = vec![SupportedFeatureKey::default()
        .with_name(name.clone())
        .with_min_version(METADATA_VERSION_MIN)
        .with_max_version(METADATA_VERSION)];
    body.finalized_features_epoch = broker.applied_offset() as i64;
    body.finalized_features = vec![FinalizedFeatureKey::default()
        .with_name(name)
        .with_min_version_level(METADATA_VERSION)
        .with_max_version_level(METADATA_VERSION)];
}

/// A request that ends its connection.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CloseConnection(pub String);

/// Handles one request. `Ok(None)` means "send no response" (Produce with acks=0).
/// `client_host` is the peer's address as Kafka reports it in group APIs (`/127.0.0.1`).
pub async fn handle(
    broker: &Arc<Broker>,
    request: Request,
    client_host: &str,
) -> Result<Option<ResponseKind>, CloseConnection> {
    let version = request.header.request_api_version;
    if forward::should_forward(broker, request.api_key) {
        match forward::forward(broker, &request, client_host).await {
            Ok(resp) => return Ok(Some(resp)),
            Err(e) => tracing::debug!("forwarding to the controller failed ({e}); handling here"),
        }
    }
    let resp = match request.body {
        RequestKind::ApiVersions(_) => {
            let mut body = sluice_protocol::api_versions_body();
            if version < 1 {
                body.throttle_time_ms = 0;
            }
            if version >= 3 {
                features(broker, &mut body);
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
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(broker, r, version).await)
        }
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(reassign::alter(broker, r, version).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassign::list(broker, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(log_dirs::handle(broker, r))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(broker, r, version))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster(broker, r))
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(broker, r, version).await)
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(configs::alter_configs(broker, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter_configs(broker, r).await,
        ),
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer::init_producer_id(broker, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(broker, r, version).await)
        }
        RequestKind::JoinGroup(r) => {
            let client_id = request
                .header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default();
            // The connection's peer address is not passed to handlers yet.
            let client_host = client_host.to_string();
            ResponseKind::JoinGroup(
                groups::join_group(broker, r, version, client_id, client_host).await,
            )
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::sync_group(broker, r, version).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(broker, r).await),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave_group(broker, r, version).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(broker, r, version).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(broker, r, version).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(groups::list_groups(broker, r, version).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(broker, r, version).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(broker, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::offset_delete(broker, r).await)
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
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::DescribeQuorum => "DescribeQuorum",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        _ => "Other",
    }
}

/// `StrBytes` from an owned string.
pub(crate) fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
