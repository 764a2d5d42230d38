//! The APIs this broker answers, and the version range of each.
//!
//! Ranges come from each request type's `VERSIONS` constant in `kafka-protocol`, intersected
//! with the versions our handlers implement. `ApiKey`'s own ranges are not used: for some APIs
//! they exceed what the crate's decoders accept.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

const fn clamp(r: VersionRange, min: i16, max: i16) -> VersionRange {
    VersionRange {
        min: if r.min > min { r.min } else { min },
        max: if r.max < max { r.max } else { max },
    }
}

/// Every API the broker advertises in ApiVersions, with its version range.
pub static SUPPORTED: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, ProduceRequest::VERSIONS),
    (ApiKey::Fetch, clamp(FetchRequest::VERSIONS, 4, 17)),
    (ApiKey::ListOffsets, ListOffsetsRequest::VERSIONS),
    (ApiKey::Metadata, MetadataRequest::VERSIONS),
    (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
    (ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS),
    (ApiKey::DeleteTopics, DeleteTopicsRequest::VERSIONS),
    (ApiKey::InitProducerId, InitProducerIdRequest::VERSIONS),
    (
        ApiKey::OffsetForLeaderEpoch,
        OffsetForLeaderEpochRequest::VERSIONS,
    ),
    (ApiKey::DescribeConfigs, DescribeConfigsRequest::VERSIONS),
    (ApiKey::DescribeLogDirs, DescribeLogDirsRequest::VERSIONS),
    (ApiKey::CreatePartitions, CreatePartitionsRequest::VERSIONS),
    // Forwarded to the active controller, which plans and commits the election.
    (ApiKey::ElectLeaders, ElectLeadersRequest::VERSIONS),
    // Forwarded to the active controller; List is answered from the committed metadata.
    (
        ApiKey::AlterPartitionReassignments,
        AlterPartitionReassignmentsRequest::VERSIONS,
    ),
    (
        ApiKey::ListPartitionReassignments,
        ListPartitionReassignmentsRequest::VERSIONS,
    ),
    (ApiKey::DescribeCluster, DescribeClusterRequest::VERSIONS),
    // Answered from the metadata quorum leader's view (`__cluster_metadata`-0).
    (
        ApiKey::DescribeQuorum,
        clamp(DescribeQuorumRequest::VERSIONS, 0, 2),
    ),
    // Consumer groups (classic protocol). Request VERSIONS, not ApiKey ranges: the crate's
    // OffsetCommit/OffsetFetch decoders stop at v9 (v10 carries topic ids).
    (ApiKey::FindCoordinator, FindCoordinatorRequest::VERSIONS),
    (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS),
    (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS),
    (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS),
    (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS),
    (ApiKey::OffsetCommit, OffsetCommitRequest::VERSIONS),
    (ApiKey::OffsetFetch, OffsetFetchRequest::VERSIONS),
    (ApiKey::ListGroups, ListGroupsRequest::VERSIONS),
    (ApiKey::DescribeGroups, DescribeGroupsRequest::VERSIONS),
    (ApiKey::DeleteGroups, DeleteGroupsRequest::VERSIONS),
    (ApiKey::OffsetDelete, OffsetDeleteRequest::VERSIONS),
    (ApiKey::AlterConfigs, AlterConfigsRequest::VERSIONS),
    (ApiKey::DeleteRecords, DeleteRecordsRequest::VERSIONS),
    (
        ApiKey::IncrementalAlterConfigs,
        IncrementalAlterConfigsRequest::VERSIONS,
    ),
];

/// The supported version range of `key`, or `None` if the broker does not implement it.
pub fn supported(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED.iter().find(|(k, _)| *k == key).map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_sane() {
        for (k, r) in SUPPORTED {
            assert!(r.min <= r.max, "{k:?}");
        }
        assert_eq!(supported(ApiKey::Produce).unwrap().min, 3);
        assert!(supported(ApiKey::SaslHandshake).is_none());
    }
}
