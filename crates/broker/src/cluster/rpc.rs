//! Messages between brokers and the active controller, carried by the metadata quorum's RPC
//! (`Quorum::call_leader`). JSON; the quorum RPC frame carries the protocol version, and new
//! fields are added with `#[serde(default)]` so nodes can be rolled one at a time.

use serde::{Deserialize, Serialize};
use sluice_controller::{BrokerRegistration, ControllerError, QuorumStatus};

/// A request to the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// BrokerRegistration (KIP-631).
    Register {
        /// The registration.
        registration: BrokerRegistration,
        /// The incarnation this process replaces: the one last registered from the same data
        /// dir, whose process is certainly gone (this one holds the dir's lock), so its session
        /// need not run out before the new registration is accepted.
        #[serde(default)]
        replaces: Option<uuid::Uuid>,
    },
    /// BrokerHeartbeat (KIP-631).
    Heartbeat {
        /// Sender.
        node_id: i32,
        /// Its registration's broker epoch.
        broker_epoch: i64,
        /// The last metadata offset it has applied.
        metadata_offset: i64,
        /// It wants to be fenced (e.g. its log dirs failed).
        want_fence: bool,
        /// It is shutting down and wants its leaderships moved away.
        want_shutdown: bool,
    },
    /// AllocateProducerIds (KIP-730).
    AllocateProducerIds {
        /// Sender.
        node_id: i32,
        /// Its broker epoch.
        broker_epoch: i64,
    },
    /// The quorum as the leader sees it (DescribeQuorum).
    DescribeQuorum,
    /// A client's admin request carried out by the active controller (Kafka's Envelope,
    /// KIP-590): the request body as the client sent it, with who sent it.
    Forward(Envelope),
}

/// A forwarded client request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Kafka API key.
    pub api_key: i16,
    /// API version.
    pub api_version: i16,
    /// The client's id from its request header.
    pub client_id: String,
    /// The authenticated principal (`User:ANONYMOUS` until security exists).
    pub principal: String,
    /// The client's address.
    pub client_address: String,
    /// The encoded request body.
    pub body: Vec<u8>,
}

/// The active controller's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// Registered with this broker epoch.
    Registered {
        /// Broker epoch.
        broker_epoch: i64,
    },
    /// BrokerHeartbeat answer.
    Heartbeat {
        /// The broker has caught up with the metadata log.
        is_caught_up: bool,
        /// The broker is fenced.
        is_fenced: bool,
        /// The broker may finish its controlled shutdown.
        should_shut_down: bool,
    },
    /// A block of producer ids.
    ProducerIds {
        /// First id of the block.
        first: i64,
        /// Number of ids.
        size: i32,
    },
    /// The quorum.
    Quorum(QuorumStatus),
    /// A forwarded request's encoded response body, and the metadata offset that contains
    /// its effects (the asking broker answers once it has applied that far).
    Forwarded {
        /// Encoded response body.
        body: Vec<u8>,
        /// Metadata offset.
        metadata_offset: u64,
    },
    /// Refused.
    Error {
        /// Kafka error code.
        code: i16,
        /// Message.
        message: String,
    },
}

impl ControllerResponse {
    /// The error response for a controller error.
    pub fn error(e: &ControllerError) -> ControllerResponse {
        ControllerResponse::Error {
            code: crate::codes::controller_error(e),
            message: e.to_string(),
        }
    }
}

/// Encodes a message.
pub fn encode<T: Serialize>(m: &T) -> Vec<u8> {
    serde_json::to_vec(m).unwrap_or_default()
}

/// Decodes a message, or a clear error.
pub fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, ControllerError> {
    serde_json::from_slice(b)
        .map_err(|e| ControllerError::InvalidRequest(format!("bad controller message: {e}")))
}

/// A `ControllerResponse::Error` back as a `ControllerError` with the same code.
pub fn error_from_code(code: i16, message: String) -> ControllerError {
    use crate::codes;
    match code {
        codes::REQUEST_TIMED_OUT => ControllerError::RequestTimedOut(message),
        codes::NOT_CONTROLLER => ControllerError::NotController(message),
        codes::STALE_BROKER_EPOCH => ControllerError::StaleBrokerEpoch(message),
        codes::BROKER_ID_NOT_REGISTERED => ControllerError::BrokerIdNotRegistered(message),
        codes::DUPLICATE_BROKER_REGISTRATION => {
            ControllerError::DuplicateBrokerRegistration(message)
        }
        codes::INCONSISTENT_CLUSTER_ID => ControllerError::InconsistentClusterId(message),
        codes::INVALID_REQUEST => ControllerError::InvalidRequest(message),
        _ => ControllerError::UnknownServer(message),
    }
}
