//! Consumer-group membership with Kafka's classic protocol, as a Java or librdkafka consumer
//! does it: FindCoordinator → JoinGroup (protocol type "consumer", one protocol per
//! [`Assignor`], metadata = `ConsumerProtocolSubscription`) → the leader computes every
//! member's partitions → SyncGroup (`ConsumerProtocolAssignment`) → Heartbeat in a background
//! task → LeaveGroup.
//!
//! [`Membership`] owns the member id and generation; the caller owns positions. A heartbeat
//! that reports a rebalance or a fencing is kept as a [`GroupEvent`] for the caller to poll
//! ([`Membership::event`]); it then commits and calls [`Membership::join`] again (eager
//! protocol: every member gives up its partitions on each rebalance).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, Request, StrBytes};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::conn::{negotiate, Connection};
use crate::error::{ClientError, KafkaCode, Result};
use crate::groups::decode_assignment;

/// Partitions per topic, as carried in a consumer-protocol assignment.
pub type Assignment = Vec<(String, Vec<i32>)>;

const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

/// Join/sync rounds before [`Membership::join`] gives up.
const JOIN_ATTEMPTS: u32 = 30;

/// A partition assignment strategy of the "consumer" protocol type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `range`: per topic, contiguous ranges of the sorted partitions to the sorted
    /// subscribed members (the first `partitions % members` get one more).
    Range,
    /// Kafka's `roundrobin`: all topic-partitions, sorted, dealt in turn to the sorted
    /// members, skipping members not subscribed to the partition's topic.
    RoundRobin,
}

impl Assignor {
    /// The protocol name used in JoinGroup ("range", "roundrobin").
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    /// The assignor with protocol name `name`.
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }

    /// Assigns `partitions` (topic → partition ids) to `members`. Every member appears in the
    /// result (possibly with nothing); topics nobody subscribes to are not assigned.
    pub fn assign(
        self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, Vec<i32>>,
    ) -> BTreeMap<String, Assignment> {
        let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
        sorted.sort_by(|a, b| member_order(a, b));
        let mut plan: BTreeMap<String, BTreeMap<String, Vec<i32>>> = members
            .iter()
            .map(|m| (m.member_id.clone(), BTreeMap::new()))
            .collect();
        match self {
            Assignor::Range => {
                for (topic, parts) in partitions {
                    let subs: Vec<&&MemberSubscription> =
                        sorted.iter().filter(|m| m.topics.contains(topic)).collect();
                    if subs.is_empty() {
                        continue;
                    }
                    let parts = sorted_unique(parts);
                    let per = parts.len() / subs.len();
                    let extra = parts.len() % subs.len();
                    let mut start = 0;
                    for (i, m) in subs.iter().enumerate() {
                        let len = per + usize::from(i < extra);
                        let mine: Vec<i32> = parts.iter().skip(start).take(len).copied().collect();
                        start += len;
                        if !mine.is_empty() {
                            if let Some(a) = plan.get_mut(&m.member_id) {
                                a.insert(topic.clone(), mine);
                            }
                        }
                    }
                }
            }
            Assignor::RoundRobin => {
                let mut next = 0usize;
                for (topic, parts) in partitions {
                    for p in sorted_unique(parts) {
                        let found = (0..sorted.len())
                            .map(|k| (next + k) % sorted.len())
                            .find(|&i| sorted[i].topics.contains(topic));
                        let Some(i) = found else { break };
                        if let Some(a) = plan.get_mut(&sorted[i].member_id) {
                            a.entry(topic.clone()).or_default().push(p);
                        }
                        next = i + 1;
                    }
                }
            }
        }
        plan.into_iter()
            .map(|(m, topics)| (m, topics.into_iter().collect()))
            .collect()
    }
}

fn sorted_unique(parts: &[i32]) -> Vec<i32> {
    let set: BTreeSet<i32> = parts.iter().copied().collect();
    set.into_iter().collect()
}

/// Kafka's member order for assignors: static members (by instance id) first, then dynamic
/// members by member id.
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

/// One member's subscription, as the group leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// Member id.
    pub member_id: String,
    /// Static membership id, if any.
    pub group_instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
}

fn encode_error(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol {
        addr: "-".into(),
        message: format!("encoding {what}: {e}"),
    }
}

/// Encodes a `ConsumerProtocolSubscription` v1 (version prefix + body) for `topics`, listing
/// `owned` as the partitions the member held in its previous generation.
pub fn encode_subscription(topics: &[String], owned: &Assignment) -> Result<Bytes> {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = topics
        .iter()
        .map(|t| StrBytes::from_string(t.clone()))
        .collect();
    s.owned_partitions = owned
        .iter()
        .map(|(t, parts)| {
            let mut o = OwnedTopic::default();
            o.topic = TopicName(StrBytes::from_string(t.clone()));
            o.partitions = parts.clone();
            o
        })
        .collect();
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    s.encode(&mut buf, 1)
        .map_err(|e| encode_error("a consumer subscription", e))?;
    Ok(buf.freeze())
}

/// Decodes a `ConsumerProtocolSubscription` of any version (newer versions only append
/// fields, so they are read as the newest we know) into its topics.
pub fn decode_subscription(bytes: &Bytes) -> Option<Vec<String>> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    let version = version.min(ConsumerProtocolSubscription::VERSIONS.max);
    let s = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(s.topics.into_iter().map(|t| t.to_string()).collect())
}

/// Encodes a `ConsumerProtocolAssignment` v0 (version prefix + body).
pub fn encode_assignment(assignment: &Assignment) -> Result<Bytes> {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = assignment
        .iter()
        .map(|(t, parts)| {
            let mut tp = AssignedTopic::default();
            tp.topic = TopicName(StrBytes::from_string(t.clone()));
            tp.partitions = parts.clone();
            tp
        })
        .collect();
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    a.encode(&mut buf, 0)
        .map_err(|e| encode_error("a consumer assignment", e))?;
    Ok(buf.freeze())
}

/// Settings of a [`Membership`].
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// Group id.
    pub group: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Session timeout (the coordinator drops a member silent for this long).
    pub session_timeout: Duration,
    /// Rebalance timeout (how long the coordinator waits for members to rejoin).
    pub rebalance_timeout: Duration,
    /// Assignment strategies offered, in order of preference (must not be empty).
    pub assignors: Vec<Assignor>,
}

impl MembershipConfig {
    /// Kafka consumer defaults: session 10 s, rebalance 30 s (max.poll.interval would be
    /// 300 s; a console tool rejoins promptly), strategies range then roundrobin.
    pub fn new(group: impl Into<String>, topics: Vec<String>) -> MembershipConfig {
        MembershipConfig {
            group: group.into(),
            topics,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
        }
    }
}

/// Why the member must join the group again, as reported by the heartbeat task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// The group is rebalancing: commit positions, then join again with the same member id.
    Rebalance,
    /// The coordinator no longer knows this member or generation: positions may no longer be
    /// committed; join again as a new member.
    Fenced(KafkaCode),
    /// The coordinator moved or could not be reached for a session timeout: find it again
    /// and join.
    CoordinatorLost(String),
}

#[derive(Debug)]
struct Heartbeat {
    handle: JoinHandle<()>,
    event: Arc<Mutex<Option<GroupEvent>>>,
}

/// This process's membership in one consumer group.
#[derive(Debug)]
pub struct Membership {
    config: MembershipConfig,
    coordinator: Option<String>,
    member_id: String,
    generation: i32,
    protocol: String,
    assignment: Assignment,
    heartbeat: Option<Heartbeat>,
    /// A reason to rejoin learnt outside the heartbeat task (a refused commit).
    pending: Option<GroupEvent>,
}

fn coordinator_error(code: i16) -> bool {
    matches!(code, 14..=16)
}

fn fenced(code: i16) -> bool {
    matches!(
        code,
        UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION | FENCED_INSTANCE_ID
    )
}

fn millis_i32(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// Outcome of one JoinGroup + SyncGroup round.
enum Round {
    Joined(Assignment),
    /// Join again at once (MEMBER_ID_REQUIRED handed us an id).
    Again,
}

impl Membership {
    /// A membership that has not joined yet.
    pub fn new(config: MembershipConfig) -> Membership {
        Membership {
            config,
            coordinator: None,
            member_id: String::new(),
            generation: -1,
            protocol: String::new(),
            assignment: Vec::new(),
            heartbeat: None,
            pending: None,
        }
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.config.group
    }

    /// The member id the coordinator gave us ("" before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation (-1 before the first join).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The assignment protocol the group chose in the last join.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The partitions assigned in the last completed join.
    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    /// A pending reason to rejoin reported by the heartbeat task, if any.
    pub fn event(&self) -> Option<GroupEvent> {
        self.pending.clone().or_else(|| {
            self.heartbeat
                .as_ref()
                .and_then(|h| h.event.lock().ok().and_then(|e| e.clone()))
        })
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.handle.abort();
        }
    }

    /// Joins (or rejoins) the group and returns this member's assignment. A [`GroupEvent`]
    /// other than a rebalance makes the member start over as a new member.
    pub async fn join(&mut self, client: &mut Client) -> Result<Assignment> {
        match self.event() {
            Some(GroupEvent::Fenced(_)) => self.reset_member(),
            Some(GroupEvent::CoordinatorLost(_)) => self.coordinator = None,
            Some(GroupEvent::Rebalance) | None => {}
        }
        self.stop_heartbeat();
        self.pending = None;
        let mut last = None;
        for attempt in 0..JOIN_ATTEMPTS {
            let coordinator = match &self.coordinator {
                Some(c) => c.clone(),
                None => {
                    let c = client.find_coordinator(&self.config.group).await?;
                    self.coordinator = Some(c.clone());
                    c
                }
            };
            match self.round(client, &coordinator).await {
                Ok(Round::Joined(assignment)) => {
                    self.assignment = assignment.clone();
                    self.start_heartbeat(client, coordinator);
                    return Ok(assignment);
                }
                Ok(Round::Again) => continue,
                Err(e) => {
                    let code = e.kafka_code().map(|c| c.0);
                    match code {
                        Some(REBALANCE_IN_PROGRESS) => {}
                        Some(c) if fenced(c) => self.reset_member(),
                        Some(c) if coordinator_error(c) => {
                            self.coordinator = None;
                            tokio::time::sleep(pause(attempt)).await;
                        }
                        None if matches!(
                            e,
                            ClientError::Io { .. }
                                | ClientError::Connect { .. }
                                | ClientError::Timeout { .. }
                        ) =>
                        {
                            self.coordinator = None;
                            tokio::time::sleep(pause(attempt)).await;
                        }
                        _ => return Err(e),
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidInput("could not join the group".into())))
    }

    fn reset_member(&mut self) {
        self.member_id.clear();
        self.generation = -1;
    }

    async fn round(&mut self, client: &mut Client, coordinator: &str) -> Result<Round> {
        let group = self.config.group.clone();
        let metadata = encode_subscription(&self.config.topics, &self.assignment)?;
        let mut req = JoinGroupRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.clone()));
        req.session_timeout_ms = millis_i32(self.config.session_timeout);
        req.rebalance_timeout_ms = millis_i32(self.config.rebalance_timeout);
        req.member_id = StrBytes::from_string(self.member_id.clone());
        req.protocol_type = StrBytes::from_static_str("consumer");
        req.protocols = self
            .config
            .assignors
            .iter()
            .map(|a| {
                let mut p = JoinGroupRequestProtocol::default();
                p.name = StrBytes::from_static_str(a.name());
                p.metadata = metadata.clone();
                p
            })
            .collect();
        // The coordinator parks a JoinGroup until every member rejoined (at most the
        // rebalance timeout); SyncGroup waits for the leader likewise.
        let extra = self.config.rebalance_timeout + Duration::from_secs(5);
        let resp = client
            .send_pinned_with_extra_time(coordinator, &req, 7, extra)
            .await?;
        if resp.error_code == MEMBER_ID_REQUIRED {
            self.member_id = resp.member_id.to_string();
            return Ok(Round::Again);
        }
        ClientError::check(resp.error_code, None, || format!("join group '{group}'"))?;
        self.member_id = resp.member_id.to_string();
        self.generation = resp.generation_id;
        self.protocol = resp
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        tracing::debug!(
            group = %group,
            member = %self.member_id,
            generation = self.generation,
            leader = %resp.leader.as_str(),
            "joined group"
        );
        let assignments = if resp.leader == resp.member_id {
            self.lead(client, &resp.members).await?
        } else {
            Vec::new()
        };
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(StrBytes::from_string(group.clone()));
        sync.generation_id = self.generation;
        sync.member_id = StrBytes::from_string(self.member_id.clone());
        sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
        sync.protocol_name = Some(StrBytes::from_string(self.protocol.clone()));
        sync.assignments = assignments;
        let resp = client
            .send_pinned_with_extra_time(coordinator, &sync, 5, extra)
            .await?;
        ClientError::check(resp.error_code, None, || format!("sync group '{group}'"))?;
        let assignment =
            decode_assignment(&resp.assignment).ok_or_else(|| ClientError::Protocol {
                addr: coordinator.to_owned(),
                message: format!("undecodable assignment from the leader of group '{group}'"),
            })?;
        Ok(Round::Joined(assignment))
    }

    /// As the leader: computes and encodes every member's assignment.
    async fn lead(
        &mut self,
        client: &mut Client,
        members: &[JoinGroupResponseMember],
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let assignor = Assignor::from_name(&self.protocol).ok_or_else(|| {
            ClientError::InvalidInput(format!(
                "group '{}' chose assignment strategy '{}', which this client does not implement",
                self.config.group, self.protocol
            ))
        })?;
        let subs: Vec<MemberSubscription> = members
            .iter()
            .map(|m| MemberSubscription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                topics: decode_subscription(&m.metadata).unwrap_or_else(|| {
                    tracing::warn!(member = %m.member_id.as_str(), "undecodable subscription");
                    Vec::new()
                }),
            })
            .collect();
        let topics: Vec<String> = subs
            .iter()
            .flat_map(|s| s.topics.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut partitions = BTreeMap::new();
        if !topics.is_empty() {
            let md = client.metadata(Some(&topics)).await?;
            for t in md.topics {
                if t.error.is_none() {
                    let ids = t.partition_ids();
                    partitions.insert(t.name, ids);
                }
            }
        }
        let plan = assignor.assign(&subs, &partitions);
        let mut out = Vec::with_capacity(plan.len());
        for (member, assignment) in plan {
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = StrBytes::from_string(member);
            a.assignment = encode_assignment(&assignment)?;
            out.push(a);
        }
        Ok(out)
    }

    fn start_heartbeat(&mut self, client: &Client, coordinator: String) {
        let event = Arc::new(Mutex::new(None));
        let cfg = client.config();
        let task = HeartbeatTask {
            coordinator,
            client_id: cfg.client_id.clone(),
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout.min(self.config.session_timeout),
            group: self.config.group.clone(),
            member_id: self.member_id.clone(),
            generation: self.generation,
            session_timeout: self.config.session_timeout,
            event: Arc::clone(&event),
        };
        let handle = tokio::spawn(task.run());
        self.heartbeat = Some(Heartbeat { handle, event });
    }

    /// Commits `offsets` (topic, partition, next offset to read) as this member and
    /// generation. Fails with REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID
    /// when the coordinator no longer accepts commits from this generation.
    pub async fn commit(
        &mut self,
        client: &mut Client,
        offsets: &[(String, i32, i64)],
    ) -> Result<()> {
        if offsets.is_empty() || self.member_id.is_empty() {
            return Ok(());
        }
        let result = client
            .commit_member_offsets(
                &self.config.group,
                self.generation,
                &self.member_id,
                offsets,
            )
            .await;
        // A refused commit means the member must rejoin, even before a heartbeat says so.
        match result.as_ref().err().and_then(ClientError::kafka_code) {
            Some(KafkaCode(REBALANCE_IN_PROGRESS)) => self.pending = Some(GroupEvent::Rebalance),
            Some(code) if fenced(code.0) => self.pending = Some(GroupEvent::Fenced(code)),
            _ => {}
        }
        result
    }

    /// Leaves the group (LeaveGroup) and stops heartbeating. Safe to call when not joined.
    pub async fn leave(&mut self, client: &mut Client) -> Result<()> {
        self.stop_heartbeat();
        if self.member_id.is_empty() {
            return Ok(());
        }
        let coordinator = match &self.coordinator {
            Some(c) => c.clone(),
            None => client.find_coordinator(&self.config.group).await?,
        };
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(StrBytes::from_string(self.config.group.clone()));
        let mut m = MemberIdentity::default();
        m.member_id = StrBytes::from_string(self.member_id.clone());
        req.members = vec![m];
        let resp = client.send_pinned(&coordinator, &req, 4).await?;
        let group = self.config.group.clone();
        self.reset_member();
        ClientError::check(resp.error_code, None, || format!("leave group '{group}'"))?;
        for m in &resp.members {
            match m.error_code {
                0 | UNKNOWN_MEMBER_ID => {}
                code => ClientError::check(code, None, || format!("leave group '{group}'"))?,
            }
        }
        Ok(())
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

fn pause(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(4)).min(1000))
}

/// The background heartbeat loop of one generation.
struct HeartbeatTask {
    coordinator: String,
    client_id: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    group: String,
    member_id: String,
    generation: i32,
    session_timeout: Duration,
    event: Arc<Mutex<Option<GroupEvent>>>,
}

impl HeartbeatTask {
    async fn run(self) {
        let interval = self.session_timeout / 3;
        let mut conn: Option<Connection> = None;
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            match self.beat(&mut conn).await {
                Ok(0) => last_ok = Instant::now(),
                Ok(REBALANCE_IN_PROGRESS) => return self.report(GroupEvent::Rebalance),
                Ok(code) if fenced(code) => {
                    return self.report(GroupEvent::Fenced(KafkaCode(code)))
                }
                Ok(code) if coordinator_error(code) => {
                    return self.report(GroupEvent::CoordinatorLost(KafkaCode(code).name()))
                }
                Ok(code) => {
                    tracing::warn!(code = %KafkaCode(code), "heartbeat failed");
                    return self.report(GroupEvent::Fenced(KafkaCode(code)));
                }
                Err(e) => {
                    conn = None;
                    if last_ok.elapsed() >= self.session_timeout {
                        return self.report(GroupEvent::CoordinatorLost(e.to_string()));
                    }
                }
            }
        }
    }

    fn report(&self, event: GroupEvent) {
        if let Ok(mut slot) = self.event.lock() {
            *slot = Some(event);
        }
    }

    async fn beat(&self, conn: &mut Option<Connection>) -> Result<i16> {
        if conn.is_none() {
            *conn = Some(
                Connection::connect(
                    &self.coordinator,
                    &self.client_id,
                    self.connect_timeout,
                    self.request_timeout,
                )
                .await?,
            );
        }
        let Some(c) = conn.as_mut() else {
            return Err(ClientError::InvalidInput(
                "no coordinator connection".into(),
            ));
        };
        let ours = (
            HeartbeatRequest::VERSIONS.min,
            HeartbeatRequest::VERSIONS.max,
        );
        let version =
            negotiate(ours, c.broker_versions(HeartbeatRequest::KEY)).ok_or_else(|| {
                ClientError::UnsupportedApi {
                    addr: self.coordinator.clone(),
                    api: "Heartbeat".into(),
                    ours: format!("{}-{}", ours.0, ours.1),
                    theirs: "none".into(),
                }
            })?;
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(StrBytes::from_string(self.group.clone()));
        req.generation_id = self.generation;
        req.member_id = StrBytes::from_string(self.member_id.clone());
        let resp = c.send_versioned(&req, version).await?;
        Ok(resp.error_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.into(),
            group_instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn parts(list: &[(&str, i32)]) -> BTreeMap<String, Vec<i32>> {
        list.iter()
            .map(|(t, n)| (t.to_string(), (0..*n).rev().collect()))
            .collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_extra_to_first() {
        let members = [member("b", &["t"]), member("a", &["t"])];
        let plan = Assignor::Range.assign(&members, &parts(&[("t", 5)]));
        assert_eq!(plan["a"], vec![("t".to_string(), vec![0, 1, 2])]);
        assert_eq!(plan["b"], vec![("t".to_string(), vec![3, 4])]);
    }

    #[test]
    fn range_is_per_topic_and_respects_subscriptions() {
        let members = [
            member("m1", &["t", "u"]),
            member("m2", &["t"]),
            member("m3", &["t"]),
        ];
        let plan = Assignor::Range.assign(&members, &parts(&[("t", 4), ("u", 2), ("x", 3)]));
        assert_eq!(
            plan["m1"],
            vec![("t".to_string(), vec![0, 1]), ("u".to_string(), vec![0, 1])]
        );
        assert_eq!(plan["m2"], vec![("t".to_string(), vec![2])]);
        assert_eq!(plan["m3"], vec![("t".to_string(), vec![3])]);
        // More members than partitions: the last get nothing but still appear.
        let members = [
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let plan = Assignor::Range.assign(&members, &parts(&[("t", 2)]));
        assert_eq!(plan["c"], Vec::new());
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn static_members_sort_first() {
        let mut s = member("z", &["t"]);
        s.group_instance_id = Some("i".into());
        let members = [member("a", &["t"]), s];
        let plan = Assignor::Range.assign(&members, &parts(&[("t", 2)]));
        assert_eq!(plan["z"], vec![("t".to_string(), vec![0])]);
        assert_eq!(plan["a"], vec![("t".to_string(), vec![1])]);
    }

    #[test]
    fn roundrobin_deals_in_turn() {
        let members = [member("b", &["t", "u"]), member("a", &["t", "u"])];
        let plan = Assignor::RoundRobin.assign(&members, &parts(&[("t", 3), ("u", 2)]));
        assert_eq!(
            plan["a"],
            vec![("t".to_string(), vec![0, 2]), ("u".to_string(), vec![1])]
        );
        assert_eq!(
            plan["b"],
            vec![("t".to_string(), vec![1]), ("u".to_string(), vec![0])]
        );
        // Members not subscribed to a topic are skipped.
        let members = [member("a", &["t"]), member("b", &["u"])];
        let plan = Assignor::RoundRobin.assign(&members, &parts(&[("t", 2), ("u", 1)]));
        assert_eq!(plan["a"], vec![("t".to_string(), vec![0, 1])]);
        assert_eq!(plan["b"], vec![("u".to_string(), vec![0])]);
    }

    #[test]
    fn every_partition_assigned_exactly_once() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            for n_members in 1..5 {
                let members: Vec<MemberSubscription> = (0..n_members)
                    .map(|i| member(&format!("m{i}"), &["t", "u"]))
                    .collect();
                let plan = assignor.assign(&members, &parts(&[("t", 7), ("u", 3)]));
                let mut all: Vec<(String, i32)> = plan
                    .values()
                    .flat_map(|a| a.iter())
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                    .collect();
                all.sort();
                assert_eq!(all.len(), 10, "{assignor:?} {n_members}");
                all.dedup();
                assert_eq!(all.len(), 10, "{assignor:?} {n_members}");
            }
        }
    }

    #[test]
    fn subscription_round_trip_and_versions() {
        let owned = vec![("t".to_string(), vec![1, 2])];
        let bytes = encode_subscription(&["t".into(), "u".into()], &owned).unwrap();
        assert_eq!(&bytes[..2], &[0, 1]);
        assert_eq!(
            decode_subscription(&bytes),
            Some(vec!["t".to_string(), "u".to_string()])
        );
        // A v0 body (topics + null user data), as old clients send.
        let mut v0 = BytesMut::new();
        v0.put_i16(0);
        v0.put_i32(1);
        v0.put_i16(1);
        v0.put_slice(b"t");
        v0.put_i32(-1);
        assert_eq!(
            decode_subscription(&v0.freeze()),
            Some(vec!["t".to_string()])
        );
        assert_eq!(decode_subscription(&Bytes::from_static(&[0])), None);
        assert_eq!(
            decode_subscription(&Bytes::from_static(&[0xff, 0xff])),
            None
        );
        assert_eq!(
            decode_subscription(&Bytes::from_static(&[0, 0, 0, 0, 0, 5])),
            None
        );
    }

    #[test]
    fn assignment_encodes_as_v0() {
        let a = vec![("t".to_string(), vec![0, 3])];
        let bytes = encode_assignment(&a).unwrap();
        let mut expected = BytesMut::new();
        expected.put_i16(0); // version
        expected.put_i32(1); // one topic
        expected.put_i16(1);
        expected.put_slice(b"t");
        expected.put_i32(2); // two partitions
        expected.put_i32(0);
        expected.put_i32(3);
        expected.put_i32(-1); // null user data
        assert_eq!(bytes, expected.freeze());
        assert_eq!(decode_assignment(&bytes), Some(a));
    }
}
