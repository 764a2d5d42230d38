//! Error types of the client: transport failures, protocol failures and Kafka error codes.

use std::fmt;

use kafka_protocol::error::ResponseError;

/// Result alias used throughout the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A Kafka protocol error code returned by a broker (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaCode(pub i16);

impl KafkaCode {
    /// `UNKNOWN_TOPIC_OR_PARTITION` (3).
    pub const UNKNOWN_TOPIC_OR_PARTITION: KafkaCode = KafkaCode(3);
    /// `OFFSET_OUT_OF_RANGE` (1).
    pub const OFFSET_OUT_OF_RANGE: KafkaCode = KafkaCode(1);
    /// `TOPIC_ALREADY_EXISTS` (36).
    pub const TOPIC_ALREADY_EXISTS: KafkaCode = KafkaCode(36);
    /// `UNKNOWN_TOPIC_ID` (100).
    pub const UNKNOWN_TOPIC_ID: KafkaCode = KafkaCode(100);

    /// Returns `Some(code)` when `code` is an error (non-zero).
    pub fn from_code(code: i16) -> Option<KafkaCode> {
        (code != 0).then_some(KafkaCode(code))
    }

    /// The Kafka name of the code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
    pub fn name(self) -> String {
        match ResponseError::try_from_code(self.0) {
            Some(ResponseError::Unknown(_)) | None => format!("UNKNOWN_ERROR_CODE_{}", self.0),
            Some(err) => screaming_snake(&format!("{err}")),
        }
    }

    /// Whether Kafka marks the error as retriable (transient).
    pub fn is_retriable(self) -> bool {
        ResponseError::try_from_code(self.0).is_some_and(|e| e.is_retriable())
    }

    /// A short human description of common codes; `None` for the rest.
    pub fn description(self) -> Option<&'static str> {
        Some(match self.0 {
            -1 => "the broker hit an unexpected error",
            1 => "the requested offset is outside the range the partition holds",
            2 => "a record failed its checksum or is otherwise corrupt",
            3 => "the topic or partition does not exist",
            5 => "the partition has no leader right now",
            6 => "this broker is not the leader of the partition",
            7 => "the request timed out",
            10 => "the message is larger than the broker accepts",
            17 => "the topic name is invalid",
            18 => "the batch is larger than the broker accepts",
            19 | 20 => "not enough in-sync replicas",
            21 => "acks must be 0, 1 or -1 (all)",
            29 => "not authorized to access the topic",
            35 => "the broker does not support this request version",
            36 => "the topic already exists",
            37 => "invalid partition count",
            38 => "invalid replication factor",
            40 => "invalid topic configuration",
            41 => "this broker is not the controller",
            42 => "the broker rejected the request as invalid",
            44 => "the request violates a broker policy",
            73 => "topic deletion is disabled on the broker",
            76 => "the broker does not support this compression type",
            87 => "the broker rejected a record as invalid",
            100 => "the topic id is unknown",
            _ => return None,
        })
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}

/// Converts `UnknownTopicOrPartition` into `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// Everything that can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No TCP connection could be opened.
    #[error("could not connect to {addr}: {reason} — is a broker running? start one with `sluice broker`")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why it failed (already lowercased, e.g. "connection refused").
        reason: String,
    },
    /// An I/O error on an established connection.
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// The broker address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The broker did not answer in time.
    #[error("timed out after {millis} ms waiting for {what} from {addr}")]
    Timeout {
        /// The broker address.
        addr: String,
        /// What was awaited.
        what: String,
        /// The limit that elapsed.
        millis: u128,
    },
    /// A message could not be encoded or a response could not be decoded.
    #[error("protocol error with {addr}: {message}")]
    Protocol {
        /// The broker address (or "-" when not connection-bound).
        addr: String,
        /// Details.
        message: String,
    },
    /// The broker does not support any version of an API we need.
    #[error("broker {addr} does not support {api} (we need versions {ours}, it offers {theirs})")]
    UnsupportedApi {
        /// The broker address.
        addr: String,
        /// The API name.
        api: String,
        /// Our supported range.
        ours: String,
        /// The broker's range ("none" if absent).
        theirs: String,
    },
    /// A broker answered with a Kafka error code.
    #[error("{context}: {code}{}{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(), code.description().filter(|_| .message.is_none()).map(|d| format!(" ({d})")).unwrap_or_default())]
    Kafka {
        /// What was being done ("create topic 'orders'").
        context: String,
        /// The error code.
        code: KafkaCode,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// The topic does not exist (as reported by Metadata).
    #[error("topic '{0}' does not exist (create it with `sluice topics create {0}`)")]
    UnknownTopic(String),
    /// The partition does not exist in the topic.
    #[error("topic '{topic}' has no partition {partition} (it has {count})")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The requested partition.
        partition: i32,
        /// The number of partitions the topic has.
        count: usize,
    },
    /// The partition has no leader reachable right now.
    #[error("partition {topic}-{partition} has no leader available")]
    NoLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The caller passed something unusable.
    #[error("{0}")]
    InvalidInput(String),
}

impl ClientError {
    /// The Kafka error code carried by this error, if it is one.
    pub fn kafka_code(&self) -> Option<KafkaCode> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            ClientError::UnknownTopic(_) | ClientError::UnknownPartition { .. } => {
                Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
            }
            _ => None,
        }
    }

    /// Builds a [`ClientError::Kafka`] from a response code, or `Ok` for 0.
    pub fn check(code: i16, message: Option<&str>, context: impl FnOnce() -> String) -> Result<()> {
        match KafkaCode::from_code(code) {
            None => Ok(()),
            Some(code) => Err(ClientError::Kafka {
                context: context(),
                code,
                message: message.filter(|m| !m.is_empty()).map(str::to_owned),
            }),
        }
    }

    /// Whether retrying after refreshing metadata may help.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => code.is_retriable(),
            ClientError::NoLeader { .. } | ClientError::Io { .. } | ClientError::Timeout { .. } => {
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafka_style() {
        assert_eq!(KafkaCode(3).name(), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(KafkaCode(36).name(), "TOPIC_ALREADY_EXISTS");
        assert_eq!(KafkaCode(-1).name(), "UNKNOWN_SERVER_ERROR");
        assert_eq!(KafkaCode(9999).name(), "UNKNOWN_ERROR_CODE_9999");
    }

    #[test]
    fn check_maps_codes() {
        assert!(ClientError::check(0, None, || "x".into()).is_ok());
        let err = ClientError::check(36, Some("Topic 'a' already exists."), || {
            "create topic 'a'".into()
        })
        .unwrap_err();
        assert_eq!(err.kafka_code(), Some(KafkaCode::TOPIC_ALREADY_EXISTS));
        assert_eq!(
            err.to_string(),
            "create topic 'a': TOPIC_ALREADY_EXISTS: Topic 'a' already exists."
        );
        let err = ClientError::check(3, None, || "fetch".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "fetch: UNKNOWN_TOPIC_OR_PARTITION (the topic or partition does not exist)"
        );
        assert!(err.is_retriable());
    }

    #[test]
    fn connect_error_has_hint() {
        let err = ClientError::Connect {
            addr: "127.0.0.1:9092".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            err.to_string(),
            "could not connect to 127.0.0.1:9092: connection refused — is a broker running? start one with `sluice broker`"
        );
    }
}
