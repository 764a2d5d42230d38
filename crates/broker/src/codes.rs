//! The one table of Kafka error codes the broker answers with (names as in Kafka's `Errors`
//! enum), and the one mapping each from storage and controller errors to a code. Handlers,
//! the group runtime and the partition layer use these names; no numeric error literal lives
//! anywhere else in this crate.
#![allow(dead_code)] // a reference table: not every code is used yet

use sluice_controller::ControllerError;
use sluice_storage::StorageError;

pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const INVALID_FETCH_SIZE: i16 = 4;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const RECORD_LIST_TOO_LARGE: i16 = 18;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const INVALID_TIMESTAMP: i16 = 32;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const POLICY_VIOLATION: i16 = 44;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_TXN_STATE: i16 = 48;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const TOPIC_DELETION_DISABLED: i16 = 73;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
pub const OFFSET_NOT_AVAILABLE: i16 = 78;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
pub const ELECTION_NOT_NEEDED: i16 = 84;
pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub const INVALID_RECORD: i16 = 87;
pub const UNKNOWN_TOPIC_ID: i16 = 100;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const NOT_CONTROLLER: i16 = 41;
pub const STALE_BROKER_EPOCH: i16 = 77;
pub const INVALID_UPDATE_VERSION: i16 = 95;
pub const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
pub const INCONSISTENT_CLUSTER_ID: i16 = 104;
pub const INELIGIBLE_REPLICA: i16 = 107;

/// Kafka's name of a code (for log lines and error messages); `"UNKNOWN"` if not in the table.
pub fn name(code: i16) -> &'static str {
    match code {
        UNKNOWN_SERVER_ERROR => "UNKNOWN_SERVER_ERROR",
        NONE => "NONE",
        OFFSET_OUT_OF_RANGE => "OFFSET_OUT_OF_RANGE",
        CORRUPT_MESSAGE => "CORRUPT_MESSAGE",
        UNKNOWN_TOPIC_OR_PARTITION => "UNKNOWN_TOPIC_OR_PARTITION",
        INVALID_FETCH_SIZE => "INVALID_FETCH_SIZE",
        LEADER_NOT_AVAILABLE => "LEADER_NOT_AVAILABLE",
        NOT_LEADER_OR_FOLLOWER => "NOT_LEADER_OR_FOLLOWER",
        MESSAGE_TOO_LARGE => "MESSAGE_TOO_LARGE",
        OFFSET_METADATA_TOO_LARGE => "OFFSET_METADATA_TOO_LARGE",
        COORDINATOR_LOAD_IN_PROGRESS => "COORDINATOR_LOAD_IN_PROGRESS",
        COORDINATOR_NOT_AVAILABLE => "COORDINATOR_NOT_AVAILABLE",
        NOT_COORDINATOR => "NOT_COORDINATOR",
        INVALID_TOPIC_EXCEPTION => "INVALID_TOPIC_EXCEPTION",
        RECORD_LIST_TOO_LARGE => "RECORD_LIST_TOO_LARGE",
        INVALID_REQUIRED_ACKS => "INVALID_REQUIRED_ACKS",
        ILLEGAL_GENERATION => "ILLEGAL_GENERATION",
        INCONSISTENT_GROUP_PROTOCOL => "INCONSISTENT_GROUP_PROTOCOL",
        INVALID_GROUP_ID => "INVALID_GROUP_ID",
        UNKNOWN_MEMBER_ID => "UNKNOWN_MEMBER_ID",
        INVALID_SESSION_TIMEOUT => "INVALID_SESSION_TIMEOUT",
        REBALANCE_IN_PROGRESS => "REBALANCE_IN_PROGRESS",
        INVALID_TIMESTAMP => "INVALID_TIMESTAMP",
        UNSUPPORTED_VERSION => "UNSUPPORTED_VERSION",
        TOPIC_ALREADY_EXISTS => "TOPIC_ALREADY_EXISTS",
        INVALID_PARTITIONS => "INVALID_PARTITIONS",
        INVALID_REPLICATION_FACTOR => "INVALID_REPLICATION_FACTOR",
        INVALID_REPLICA_ASSIGNMENT => "INVALID_REPLICA_ASSIGNMENT",
        INVALID_CONFIG => "INVALID_CONFIG",
        INVALID_REQUEST => "INVALID_REQUEST",
        POLICY_VIOLATION => "POLICY_VIOLATION",
        OUT_OF_ORDER_SEQUENCE_NUMBER => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        INVALID_PRODUCER_EPOCH => "INVALID_PRODUCER_EPOCH",
        INVALID_TXN_STATE => "INVALID_TXN_STATE",
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED => "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        KAFKA_STORAGE_ERROR => "KAFKA_STORAGE_ERROR",
        NON_EMPTY_GROUP => "NON_EMPTY_GROUP",
        GROUP_ID_NOT_FOUND => "GROUP_ID_NOT_FOUND",
        FETCH_SESSION_ID_NOT_FOUND => "FETCH_SESSION_ID_NOT_FOUND",
        TOPIC_DELETION_DISABLED => "TOPIC_DELETION_DISABLED",
        FENCED_LEADER_EPOCH => "FENCED_LEADER_EPOCH",
        UNKNOWN_LEADER_EPOCH => "UNKNOWN_LEADER_EPOCH",
        MEMBER_ID_REQUIRED => "MEMBER_ID_REQUIRED",
        PREFERRED_LEADER_NOT_AVAILABLE => "PREFERRED_LEADER_NOT_AVAILABLE",
        FENCED_INSTANCE_ID => "FENCED_INSTANCE_ID",
        ELIGIBLE_LEADERS_NOT_AVAILABLE => "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        ELECTION_NOT_NEEDED => "ELECTION_NOT_NEEDED",
        NO_REASSIGNMENT_IN_PROGRESS => "NO_REASSIGNMENT_IN_PROGRESS",
        GROUP_SUBSCRIBED_TO_TOPIC => "GROUP_SUBSCRIBED_TO_TOPIC",
        INVALID_RECORD => "INVALID_RECORD",
        UNKNOWN_TOPIC_ID => "UNKNOWN_TOPIC_ID",
        REQUEST_TIMED_OUT => "REQUEST_TIMED_OUT",
        NOT_CONTROLLER => "NOT_CONTROLLER",
        NOT_ENOUGH_REPLICAS => "NOT_ENOUGH_REPLICAS",
        NOT_ENOUGH_REPLICAS_AFTER_APPEND => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        OFFSET_NOT_AVAILABLE => "OFFSET_NOT_AVAILABLE",
        STALE_BROKER_EPOCH => "STALE_BROKER_EPOCH",
        INVALID_UPDATE_VERSION => "INVALID_UPDATE_VERSION",
        DUPLICATE_BROKER_REGISTRATION => "DUPLICATE_BROKER_REGISTRATION",
        BROKER_ID_NOT_REGISTERED => "BROKER_ID_NOT_REGISTERED",
        INCONSISTENT_CLUSTER_ID => "INCONSISTENT_CLUSTER_ID",
        INELIGIBLE_REPLICA => "INELIGIBLE_REPLICA",
        _ => "UNKNOWN",
    }
}

/// The code for a storage error (the one mapping; handlers never match `StorageError` for a
/// code themselves).
pub fn storage_error(e: &StorageError) -> i16 {
    match e {
        StorageError::CorruptBatch(_) => CORRUPT_MESSAGE,
        StorageError::InvalidRecord(_) => INVALID_RECORD,
        StorageError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        StorageError::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
        StorageError::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
        StorageError::Io { .. } | StorageError::Corrupt { .. } | StorageError::Offline(_) => {
            KAFKA_STORAGE_ERROR
        }
    }
}

/// The code for a controller (planning, state machine or metadata store) error. Exhaustive on
/// purpose: a new `ControllerError` variant must be given its code here.
pub fn controller_error(e: &ControllerError) -> i16 {
    match e {
        ControllerError::TopicAlreadyExists(_) => TOPIC_ALREADY_EXISTS,
        ControllerError::UnknownTopic(_) => UNKNOWN_TOPIC_OR_PARTITION,
        ControllerError::UnknownTopicId(_) => UNKNOWN_TOPIC_ID,
        ControllerError::InvalidTopic(_) => INVALID_TOPIC_EXCEPTION,
        ControllerError::InvalidPartitions(_) => INVALID_PARTITIONS,
        ControllerError::InvalidReplicationFactor(_) => INVALID_REPLICATION_FACTOR,
        ControllerError::InvalidConfig(_) => INVALID_CONFIG,
        ControllerError::InvalidRequest(_) => INVALID_REQUEST,
        ControllerError::TopicDeletionDisabled(_) => TOPIC_DELETION_DISABLED,
        ControllerError::Storage(_) => KAFKA_STORAGE_ERROR,
        ControllerError::NotController(_) => NOT_CONTROLLER,
        ControllerError::RequestTimedOut(_) => REQUEST_TIMED_OUT,
        ControllerError::FencedLeaderEpoch(_) => FENCED_LEADER_EPOCH,
        ControllerError::StaleBrokerEpoch(_) => STALE_BROKER_EPOCH,
        ControllerError::InvalidUpdateVersion(_) => INVALID_UPDATE_VERSION,
        ControllerError::DuplicateBrokerRegistration(_) => DUPLICATE_BROKER_REGISTRATION,
        ControllerError::BrokerIdNotRegistered(_) => BROKER_ID_NOT_REGISTERED,
        ControllerError::InconsistentClusterId(_) => INCONSISTENT_CLUSTER_ID,
        ControllerError::IneligibleReplica(_) => INELIGIBLE_REPLICA,
        ControllerError::PreferredLeaderNotAvailable(_) => PREFERRED_LEADER_NOT_AVAILABLE,
        ControllerError::EligibleLeadersNotAvailable(_) => ELIGIBLE_LEADERS_NOT_AVAILABLE,
        ControllerError::ElectionNotNeeded(_) => ELECTION_NOT_NEEDED,
        ControllerError::InvalidReplicaAssignment(_) => INVALID_REPLICA_ASSIGNMENT,
        ControllerError::NoReassignmentInProgress(_) => NO_REASSIGNMENT_IN_PROGRESS,
        ControllerError::UnknownServer(_) => UNKNOWN_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_group::errors as g;

    #[test]
    fn group_crate_codes_agree_with_the_table() {
        for (ours, theirs) in [
            (NONE, g::NONE),
            (UNKNOWN_SERVER_ERROR, g::UNKNOWN_SERVER_ERROR),
            (UNKNOWN_TOPIC_OR_PARTITION, g::UNKNOWN_TOPIC_OR_PARTITION),
            (OFFSET_METADATA_TOO_LARGE, g::OFFSET_METADATA_TOO_LARGE),
            (
                COORDINATOR_LOAD_IN_PROGRESS,
                g::COORDINATOR_LOAD_IN_PROGRESS,
            ),
            (COORDINATOR_NOT_AVAILABLE, g::COORDINATOR_NOT_AVAILABLE),
            (NOT_COORDINATOR, g::NOT_COORDINATOR),
            (ILLEGAL_GENERATION, g::ILLEGAL_GENERATION),
            (INCONSISTENT_GROUP_PROTOCOL, g::INCONSISTENT_GROUP_PROTOCOL),
            (INVALID_GROUP_ID, g::INVALID_GROUP_ID),
            (UNKNOWN_MEMBER_ID, g::UNKNOWN_MEMBER_ID),
            (INVALID_SESSION_TIMEOUT, g::INVALID_SESSION_TIMEOUT),
            (REBALANCE_IN_PROGRESS, g::REBALANCE_IN_PROGRESS),
            (NON_EMPTY_GROUP, g::NON_EMPTY_GROUP),
            (GROUP_ID_NOT_FOUND, g::GROUP_ID_NOT_FOUND),
            (MEMBER_ID_REQUIRED, g::MEMBER_ID_REQUIRED),
            (FENCED_INSTANCE_ID, g::FENCED_INSTANCE_ID),
            (GROUP_SUBSCRIBED_TO_TOPIC, g::GROUP_SUBSCRIBED_TO_TOPIC),
        ] {
            assert_eq!(ours, theirs, "{}", name(ours));
        }
    }

    #[test]
    fn controller_mapping_agrees_with_the_controller() {
        for e in [
            ControllerError::TopicAlreadyExists(String::new()),
            ControllerError::UnknownTopic(String::new()),
            ControllerError::UnknownTopicId(String::new()),
            ControllerError::InvalidTopic(String::new()),
            ControllerError::InvalidPartitions(String::new()),
            ControllerError::InvalidReplicationFactor(String::new()),
            ControllerError::InvalidConfig(String::new()),
            ControllerError::InvalidRequest(String::new()),
            ControllerError::TopicDeletionDisabled(String::new()),
            ControllerError::Storage(String::new()),
            ControllerError::NotController(String::new()),
            ControllerError::RequestTimedOut(String::new()),
            ControllerError::FencedLeaderEpoch(String::new()),
            ControllerError::StaleBrokerEpoch(String::new()),
            ControllerError::InvalidUpdateVersion(String::new()),
            ControllerError::DuplicateBrokerRegistration(String::new()),
            ControllerError::BrokerIdNotRegistered(String::new()),
            ControllerError::InconsistentClusterId(String::new()),
            ControllerError::IneligibleReplica(String::new()),
            ControllerError::PreferredLeaderNotAvailable(String::new()),
            ControllerError::EligibleLeadersNotAvailable(String::new()),
            ControllerError::ElectionNotNeeded(String::new()),
            ControllerError::UnknownServer(String::new()),
        ] {
            assert_eq!(controller_error(&e), e.error_code(), "{e:?}");
            assert_ne!(name(controller_error(&e)), "UNKNOWN");
        }
    }

    #[test]
    fn storage_mapping() {
        assert_eq!(
            storage_error(&StorageError::CorruptBatch("x".into())),
            CORRUPT_MESSAGE
        );
        assert_eq!(
            storage_error(&StorageError::Offline("closed".into())),
            KAFKA_STORAGE_ERROR
        );
        assert_eq!(
            storage_error(&StorageError::OffsetOutOfRange {
                requested: 9,
                log_start: 0,
                log_end: 1
            }),
            OFFSET_OUT_OF_RANGE
        );
    }
}
