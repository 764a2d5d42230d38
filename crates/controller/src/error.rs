//! Controller errors, each mapping to a Kafka error code.

use crate::config::ConfigError;

/// Errors of the metadata state machine, the planners and the metadata store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    /// TOPIC_ALREADY_EXISTS (36).
    #[error("{0}")]
    TopicAlreadyExists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION (3).
    #[error("{0}")]
    UnknownTopic(String),
    /// UNKNOWN_TOPIC_ID (100).
    #[error("{0}")]
    UnknownTopicId(String),
    /// INVALID_TOPIC_EXCEPTION (17).
    #[error("{0}")]
    InvalidTopic(String),
    /// INVALID_PARTITIONS (37).
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR (38).
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_CONFIG (40).
    #[error("{0}")]
    InvalidConfig(String),
    /// INVALID_REQUEST (42).
    #[error("{0}")]
    InvalidRequest(String),
    /// TOPIC_DELETION_DISABLED (73).
    #[error("{0}")]
    TopicDeletionDisabled(String),
    /// FENCED_LEADER_EPOCH (74): the leader epoch in the request is older than the current.
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// STALE_BROKER_EPOCH (77): the broker epoch in the request is not the registered one.
    #[error("{0}")]
    StaleBrokerEpoch(String),
    /// INVALID_UPDATE_VERSION (95): the partition epoch in an AlterPartition is stale.
    #[error("{0}")]
    InvalidUpdateVersion(String),
    /// DUPLICATE_BROKER_REGISTRATION (101): another incarnation of the broker is still alive.
    #[error("{0}")]
    DuplicateBrokerRegistration(String),
    /// BROKER_ID_NOT_REGISTERED (102).
    #[error("{0}")]
    BrokerIdNotRegistered(String),
    /// INCONSISTENT_CLUSTER_ID (104).
    #[error("{0}")]
    InconsistentClusterId(String),
    /// INELIGIBLE_REPLICA (107): a new ISR names a fenced, unregistered or shutting-down broker.
    #[error("{0}")]
    IneligibleReplica(String),
    /// PREFERRED_LEADER_NOT_AVAILABLE (80): a preferred election found the first replica
    /// out of the ISR, fenced or shutting down.
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE (83): an unclean election found no live replica.
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    /// ELECTION_NOT_NEEDED (84): the partition already has the leader the election asks for.
    #[error("{0}")]
    ElectionNotNeeded(String),
    /// UNKNOWN_SERVER_ERROR (-1), e.g. producer ids exhausted.
    #[error("{0}")]
    UnknownServer(String),
    /// KAFKA_STORAGE_ERROR (56): the metadata log could not be read or written.
    #[error("metadata storage error: {0}")]
    Storage(String),
    /// NOT_CONTROLLER (41): this node is not the active controller (quorum leader), or the
    /// request carries a newer epoch than this controller knows.
    #[error("{0}")]
    NotController(String),
    /// REQUEST_TIMED_OUT (7): the metadata quorum did not answer in time (e.g. no majority).
    #[error("{0}")]
    RequestTimedOut(String),
    /// INVALID_REPLICA_ASSIGNMENT (39): a reassignment names no, duplicate or unknown brokers.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// NO_REASSIGNMENT_IN_PROGRESS (85): a cancellation for a partition not being reassigned.
    #[error("{0}")]
    NoReassignmentInProgress(String),
}

impl ControllerError {
    /// The Kafka error code to put in a response.
    pub fn error_code(&self) -> i16 {
        match self {
            ControllerError::TopicAlreadyExists(_) => 36,
            ControllerError::UnknownTopic(_) => 3,
            ControllerError::UnknownTopicId(_) => 100,
            ControllerError::InvalidTopic(_) => 17,
            ControllerError::InvalidPartitions(_) => 37,
            ControllerError::InvalidReplicationFactor(_) => 38,
            ControllerError::InvalidConfig(_) => 40,
            ControllerError::InvalidRequest(_) => 42,
            ControllerError::TopicDeletionDisabled(_) => 73,
            ControllerError::NotController(_) => 41,
            ControllerError::FencedLeaderEpoch(_) => 74,
            ControllerError::StaleBrokerEpoch(_) => 77,
            ControllerError::InvalidUpdateVersion(_) => 95,
            ControllerError::DuplicateBrokerRegistration(_) => 101,
            ControllerError::BrokerIdNotRegistered(_) => 102,
            ControllerError::InconsistentClusterId(_) => 104,
            ControllerError::IneligibleReplica(_) => 107,
            ControllerError::PreferredLeaderNotAvailable(_) => 80,
            ControllerError::EligibleLeadersNotAvailable(_) => 83,
            ControllerError::ElectionNotNeeded(_) => 84,
            ControllerError::UnknownServer(_) => -1,
            ControllerError::Storage(_) => 56,
            ControllerError::RequestTimedOut(_) => 7,
            ControllerError::InvalidReplicaAssignment(_) => 39,
            ControllerError::NoReassignmentInProgress(_) => 85,
        }
    }

    /// The human readable message (for `error_message` fields).
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl From<ConfigError> for ControllerError {
    fn from(e: ConfigError) -> Self {
        ControllerError::InvalidConfig(e.to_string())
    }
}

impl From<std::io::Error> for ControllerError {
    fn from(e: std::io::Error) -> Self {
        ControllerError::Storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let cases = [
            (ControllerError::TopicAlreadyExists(String::new()), 36),
            (ControllerError::UnknownTopic(String::new()), 3),
            (ControllerError::UnknownTopicId(String::new()), 100),
            (ControllerError::InvalidTopic(String::new()), 17),
            (ControllerError::InvalidPartitions(String::new()), 37),
            (ControllerError::InvalidReplicationFactor(String::new()), 38),
            (ControllerError::InvalidConfig(String::new()), 40),
            (ControllerError::InvalidRequest(String::new()), 42),
            (ControllerError::TopicDeletionDisabled(String::new()), 73),
            (ControllerError::Storage(String::new()), 56),
            (ControllerError::NotController(String::new()), 41),
            (ControllerError::FencedLeaderEpoch(String::new()), 74),
            (ControllerError::StaleBrokerEpoch(String::new()), 77),
            (ControllerError::InvalidUpdateVersion(String::new()), 95),
            (
                ControllerError::DuplicateBrokerRegistration(String::new()),
                101,
            ),
            (ControllerError::BrokerIdNotRegistered(String::new()), 102),
            (ControllerError::InconsistentClusterId(String::new()), 104),
            (ControllerError::IneligibleReplica(String::new()), 107),
            (
                ControllerError::PreferredLeaderNotAvailable(String::new()),
                80,
            ),
            (
                ControllerError::EligibleLeadersNotAvailable(String::new()),
                83,
            ),
            (ControllerError::ElectionNotNeeded(String::new()), 84),
            (ControllerError::UnknownServer(String::new()), -1),
            (ControllerError::RequestTimedOut(String::new()), 7),
        ];
        for (e, code) in cases {
            assert_eq!(e.error_code(), code, "{e:?}");
        }
        let e: ControllerError = ConfigError::Unknown("x".into()).into();
        assert_eq!(e.error_code(), 40);
    }
}
