//! The consumer-group coordinator of Sluice, as a pure state machine.
//!
//! [`Coordinator`] implements Kafka's classic group protocol (JoinGroup / SyncGroup /
//! Heartbeat / LeaveGroup, static membership, initial rebalance delay, session and rebalance
//! timeouts) and committed offsets. Events go in as method calls with the current time
//! (milliseconds since the Unix epoch); effects come out as [`Action`]s: records to append to
//! a `__consumer_offsets` partition ([`Action::Persist`]) and replies to parked JoinGroup /
//! SyncGroup requests ([`Action::Reply`]). A runtime executes the actions in order: a reply
//! that follows a persist must not be sent before that persist is durable. Timers are the
//! runtime's job too: it calls [`Coordinator::tick`] no later than
//! [`Coordinator::next_deadline`].
//!
//! [`codec`] encodes and decodes `__consumer_offsets` records in Kafka's own schemas, so the
//! log is readable by Kafka tools, and [`Coordinator::replay`] rebuilds state from it.
//!
//! Nothing here performs I/O, spawns tasks or reads the clock.

pub mod codec;
mod coordinator;

pub use coordinator::*;

/// Kafka error codes used by the coordinator.
pub mod errors {
    /// No error.
    pub const NONE: i16 = 0;
    /// Unexpected server error.
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    /// Unknown topic or partition.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// Offset metadata string too large.
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    /// The coordinator is loading its partition.
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    /// The coordinator is not available.
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// This broker is not the coordinator of the group.
    pub const NOT_COORDINATOR: i16 = 16;
    /// Stale generation.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// Protocol type/names incompatible with the group.
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    /// Empty or invalid group id.
    pub const INVALID_GROUP_ID: i16 = 24;
    /// Member not in the group.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// Session timeout outside the broker's range.
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    /// A rebalance is in progress; rejoin.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// Group still has members.
    pub const NON_EMPTY_GROUP: i16 = 68;
    /// Group does not exist.
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// First join from v4: rejoin with the returned member id.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// Another member holds this group instance id.
    pub const FENCED_INSTANCE_ID: i16 = 82;
    /// The group is subscribed to the topic of an offset to delete.
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
}

/// Kafka's `String.hashCode` of a group id (UTF-16 code units, wrapping 31-multiplier).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group: `abs(hashCode) % partitions`, where abs is
/// Kafka's `Utils.abs` (`i & 0x7fffffff`). Returns 0 when `partitions <= 0`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (java_string_hash(group_id) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_java() {
        // Values computed with java.lang.String#hashCode.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(java_string_hash("console-consumer-12345"), 158_455_506);
        // "é" is one UTF-16 unit (0xE9).
        assert_eq!(java_string_hash("é"), 0xE9);
    }

    #[test]
    fn partition_uses_kafka_abs() {
        assert_eq!(
            partition_for("my-group", 50),
            (-1_906_497_762i32 & 0x7fff_ffff) % 50
        );
        assert_eq!(
            partition_for("console-consumer-12345", 50),
            158_455_506 % 50
        );
        assert_eq!(partition_for("x", 0), 0);
    }
}
