//! Consumer-group administration: find a group's coordinator, list, describe and delete
//! groups, read and write committed offsets — the operations behind `sluice groups`.
//!
//! Every request goes through the Kafka protocol only (no Sluice-specific API), so these work
//! against Apache Kafka too. Requests are sent at fixed, long-supported versions (clamped to
//! what the broker offers) so the message fields we fill are valid for the version used.

use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Message, Request, StrBytes};

use crate::client::Client;
use crate::conn::negotiate;
use crate::error::{ClientError, KafkaCode, Result};

/// Attempts for an operation whose coordinator is loading, moving or unknown.
const ATTEMPTS: u32 = 10;

/// A group as listed by ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type ("consumer" for Kafka consumers, "" for offset-only groups).
    pub protocol_type: String,
    /// State, when the broker reports it (ListGroups v4+).
    pub state: Option<String>,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id (Kafka's tool calls it consumer id).
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host as seen by the coordinator (e.g. "/127.0.0.1").
    pub client_host: String,
    /// Assigned partitions, decoded for the "consumer" protocol type (empty otherwise).
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A group as described by DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State name ("Stable", "Empty", "Dead", ...).
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// Selected assignment protocol (e.g. "range").
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMember>,
}

impl GroupDescription {
    /// Whether the group has no active members (Kafka's rule for changing its offsets).
    pub fn is_inactive(&self) -> bool {
        self.state == "Empty" || self.state == "Dead"
    }
}

/// A committed offset read by OffsetFetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset.
    pub offset: i64,
    /// Leader epoch of the commit (-1 if unknown).
    pub leader_epoch: i32,
    /// Commit metadata.
    pub metadata: Option<String>,
}

/// Decodes a consumer-protocol assignment (version prefix + body) into topic-partitions.
pub fn decode_assignment(bytes: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16().clamp(
        ConsumerProtocolAssignment::VERSIONS.min,
        ConsumerProtocolAssignment::VERSIONS.max,
    );
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).ok()?;
    Some(
        a.assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
    )
}

fn coordinator_error(code: i16) -> bool {
    // COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
    matches!(code, 14..=16)
}

fn pause(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(4)).min(1000))
}

impl Client {
    /// Sends `req` to `addr` at `preferred` version, or the closest the broker supports.
    pub(crate) async fn send_pinned<R: Request>(
        &mut self,
        addr: &str,
        req: &R,
        preferred: i16,
    ) -> Result<R::Response> {
        self.send_pinned_with_extra_time(addr, req, preferred, Duration::ZERO)
            .await
    }

    /// [`Client::send_pinned`] allowing `extra` time on top of the request timeout.
    pub(crate) async fn send_pinned_with_extra_time<R: Request>(
        &mut self,
        addr: &str,
        req: &R,
        preferred: i16,
        extra: Duration,
    ) -> Result<R::Response> {
        let conn = self.conn(addr).await?;
        let ours = (R::VERSIONS.min, preferred.min(R::VERSIONS.max));
        let theirs = conn.broker_versions(R::KEY);
        let version = negotiate(ours, theirs).ok_or_else(|| ClientError::UnsupportedApi {
            addr: addr.to_owned(),
            api: crate::conn::api_name(R::KEY),
            ours: format!("{}-{}", ours.0, ours.1),
            theirs: theirs
                .map(|(a, b)| format!("{a}-{b}"))
                .unwrap_or_else(|| "none".into()),
        })?;
        let result = conn
            .send_versioned_with_extra_time(req, version, extra)
            .await;
        if matches!(
            result,
            Err(ClientError::Io { .. } | ClientError::Timeout { .. })
        ) {
            self.drop_conn(addr);
        }
        result
    }

    async fn any_broker(&mut self) -> Result<String> {
        let md = self.metadata(Some(&[])).await?;
        md.brokers
            .first()
            .map(|b| b.addr())
            .ok_or_else(|| ClientError::InvalidInput("the cluster has no brokers".into()))
    }

    /// The address of `group`'s coordinator (FindCoordinator, retried while it is loading).
    pub async fn find_coordinator(&mut self, group: &str) -> Result<String> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let addr = self.any_broker().await?;
            let mut req = FindCoordinatorRequest::default();
            req.key = StrBytes::from_string(group.to_owned());
            req.key_type = 0;
            let resp = self.send_pinned(&addr, &req, 3).await?;
            match ClientError::check(resp.error_code, resp.error_message.as_deref(), || {
                format!("find the coordinator of group '{group}'")
            }) {
                Ok(()) => return Ok(format!("{}:{}", resp.host.as_str(), resp.port)),
                Err(e) if coordinator_error(resp.error_code) => last = Some(e),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(pause(attempt)).await;
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidInput("no coordinator".into())))
    }

    /// Runs `op` against the coordinator of `group`, retrying (with a fresh coordinator
    /// lookup) while it answers with a coordinator error code.
    async fn with_coordinator<T>(
        &mut self,
        group: &str,
        mut op: impl AsyncCoordinatorOp<T>,
    ) -> Result<T> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let addr = self.find_coordinator(group).await?;
            match op.call(self, &addr).await {
                Ok(v) => return Ok(v),
                Err(e)
                    if e.kafka_code().is_some_and(|c| coordinator_error(c.0))
                        || matches!(e, ClientError::Io { .. } | ClientError::Connect { .. }) =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(pause(attempt)).await;
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidInput("no coordinator".into())))
    }

    /// Every group known to every broker of the cluster, sorted by id.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>> {
        let md = self.metadata(Some(&[])).await?;
        let mut out: Vec<GroupListing> = Vec::new();
        for b in md.brokers {
            let addr = b.addr();
            let resp = self
                .send_pinned(&addr, &ListGroupsRequest::default(), 4)
                .await?;
            ClientError::check(resp.error_code, None, || format!("list groups on {addr}"))?;
            for g in resp.groups {
                let state = g.group_state.to_string();
                out.push(GroupListing {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: (!state.is_empty()).then_some(state),
                });
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    /// Describes `group` (a group that does not exist is reported in state "Dead").
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription> {
        self.with_coordinator(group, DescribeOp(group.to_owned()))
            .await
    }

    /// Committed offsets of `group` (all topics), sorted by topic and partition.
    pub async fn committed_offsets(&mut self, group: &str) -> Result<Vec<CommittedOffset>> {
        self.with_coordinator(group, FetchOffsetsOp(group.to_owned()))
            .await
    }

    /// Commits `offsets` (topic, partition, offset) for `group` as an admin would: generation
    /// -1 and no member id, which the coordinator accepts only while the group has no active
    /// members.
    pub async fn commit_group_offsets(
        &mut self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<()> {
        self.with_coordinator(
            group,
            CommitOp {
                group: group.to_owned(),
                generation: -1,
                member_id: String::new(),
                offsets: offsets.to_vec(),
            },
        )
        .await
    }

    /// Commits `offsets` (topic, partition, next offset to read) for `group` as member
    /// `member_id` of `generation` (what a consumer in the group does).
    pub async fn commit_member_offsets(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<()> {
        self.with_coordinator(
            group,
            CommitOp {
                group: group.to_owned(),
                generation,
                member_id: member_id.to_owned(),
                offsets: offsets.to_vec(),
            },
        )
        .await
    }

    /// Deletes `group` (it must have no active members: NON_EMPTY_GROUP otherwise).
    pub async fn delete_group(&mut self, group: &str) -> Result<()> {
        self.with_coordinator(group, DeleteOp(group.to_owned()))
            .await
    }
}

/// One attempt of a coordinator operation (a hand-rolled async closure over the client).
trait AsyncCoordinatorOp<T> {
    async fn call(&mut self, client: &mut Client, addr: &str) -> Result<T>;
}

struct DescribeOp(String);

impl AsyncCoordinatorOp<GroupDescription> for DescribeOp {
    async fn call(&mut self, client: &mut Client, addr: &str) -> Result<GroupDescription> {
        let group = &self.0;
        let mut req = DescribeGroupsRequest::default();
        req.groups = vec![GroupId(StrBytes::from_string(group.clone()))];
        let resp = client.send_pinned(addr, &req, 5).await?;
        let g = resp
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| ClientError::Protocol {
                addr: addr.to_owned(),
                message: format!("DescribeGroups response lacks group '{group}'"),
            })?;
        ClientError::check(g.error_code, g.error_message.as_deref(), || {
            format!("describe group '{group}'")
        })?;
        let consumer = g.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(&m.member_assignment).unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        })
    }
}

struct FetchOffsetsOp(String);

impl AsyncCoordinatorOp<Vec<CommittedOffset>> for FetchOffsetsOp {
    async fn call(&mut self, client: &mut Client, addr: &str) -> Result<Vec<CommittedOffset>> {
        let group = &self.0;
        let mut req = OffsetFetchRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.clone()));
        req.topics = None::<Vec<OffsetFetchRequestTopic>>;
        let resp = client.send_pinned(addr, &req, 7).await?;
        ClientError::check(resp.error_code, None, || {
            format!("fetch committed offsets of group '{group}'")
        })?;
        let mut out = Vec::new();
        for t in resp.topics {
            for p in t.partitions {
                ClientError::check(p.error_code, None, || {
                    format!(
                        "fetch committed offset of {}-{} for group '{group}'",
                        t.name.0.as_str(),
                        p.partition_index
                    )
                })?;
                if p.committed_offset < 0 {
                    continue;
                }
                out.push(CommittedOffset {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.metadata.map(|m| m.to_string()),
                });
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }
}

struct CommitOp {
    group: String,
    generation: i32,
    member_id: String,
    offsets: Vec<(String, i32, i64)>,
}

impl AsyncCoordinatorOp<()> for CommitOp {
    async fn call(&mut self, client: &mut Client, addr: &str) -> Result<()> {
        let group = &self.group;
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.clone()));
        req.generation_id_or_member_epoch = self.generation;
        req.member_id = StrBytes::from_string(self.member_id.clone());
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in &self.offsets {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            p.committed_leader_epoch = -1;
            p.committed_metadata = Some(StrBytes::from_static_str(""));
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = OffsetCommitRequestTopic::default();
                    t.name = TopicName(StrBytes::from_string(topic.clone()));
                    t.partitions = vec![p];
                    topics.push(t);
                }
            }
        }
        req.topics = topics;
        let resp = client.send_pinned(addr, &req, 8).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                ClientError::check(p.error_code, None, || {
                    format!(
                        "commit offset of {}-{} for group '{group}'",
                        t.name.0.as_str(),
                        p.partition_index
                    )
                })?;
            }
        }
        Ok(())
    }
}

struct DeleteOp(String);

impl AsyncCoordinatorOp<()> for DeleteOp {
    async fn call(&mut self, client: &mut Client, addr: &str) -> Result<()> {
        let group = &self.0;
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![GroupId(StrBytes::from_string(group.clone()))];
        let resp = client.send_pinned(addr, &req, 2).await?;
        let r = resp
            .results
            .iter()
            .find(|r| r.group_id.0.as_str() == group)
            .ok_or_else(|| ClientError::Protocol {
                addr: addr.to_owned(),
                message: format!("DeleteGroups response lacks group '{group}'"),
            })?;
        ClientError::check(r.error_code, None, || format!("delete group '{group}'"))
    }
}

/// Kafka's NON_EMPTY_GROUP error code, reported when a group with members is changed.
pub const NON_EMPTY_GROUP: KafkaCode = KafkaCode(68);

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn assignment_round_trip() {
        let mut a = ConsumerProtocolAssignment::default();
        let mut tp = TopicPartition::default();
        tp.topic = TopicName(StrBytes::from_static_str("requests"));
        tp.partitions = vec![0, 3];
        a.assigned_partitions = vec![tp];
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        a.encode(&mut buf, 0).unwrap();
        let decoded = decode_assignment(&buf.freeze()).unwrap();
        assert_eq!(decoded, vec![("requests".to_string(), vec![0, 3])]);
        assert_eq!(decode_assignment(&Bytes::new()), Some(Vec::new()));
        assert_eq!(decode_assignment(&Bytes::from_static(&[0])), None);
        assert_eq!(
            decode_assignment(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])),
            None
        );
    }

    #[test]
    fn coordinator_codes_are_retried() {
        assert!(coordinator_error(14) && coordinator_error(15) && coordinator_error(16));
        assert!(!coordinator_error(68) && !coordinator_error(0));
    }
}
