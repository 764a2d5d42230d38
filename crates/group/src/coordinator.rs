//! The classic group protocol and committed offsets, as a state machine.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::codec::{
    decode_consumer_assignment, decode_consumer_subscription, GroupMetadataValue, MemberMetadata,
    OffsetCommitValue, OffsetsRecord,
};
use crate::errors::*;
use crate::partition_for;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Coordinator settings (Kafka broker config names in the field docs).
#[derive(Debug, Clone)]
pub struct Config {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// Partition count of `__consumer_offsets` (group → partition mapping).
    pub num_partitions: i32,
    /// Seed of the member-id generator.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            offsets_retention_ms: 10080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            num_partitions: 50,
            seed: 0x5eed,
        }
    }
}

/// Identifies a parked JoinGroup/SyncGroup request; chosen by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyId(pub u64);

/// Classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may exist).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignment.
    Stable,
    /// Being removed.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id, empty on first join.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Session timeout (ms).
    pub session_timeout_ms: i32,
    /// Rebalance timeout (ms); v0 uses the session timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocols by preference: (name, metadata).
    pub protocols: Vec<(String, Bytes)>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// v4+: an empty member id gets MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
}

/// One member in the leader's JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// Error code.
    pub error: i16,
    /// Generation, -1 on error.
    pub generation_id: i32,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// Members (leader only).
    pub members: Vec<JoinMember>,
    /// KIP-814: the static leader must not reassign.
    pub skip_assignment: bool,
}

impl JoinResponse {
    fn error(error: i16, member_id: &str) -> JoinResponse {
        JoinResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// v5: expected protocol type.
    pub protocol_type: Option<String>,
    /// v5: expected protocol name.
    pub protocol_name: Option<String>,
    /// Leader only: assignment per member id.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// Error code.
    pub error: i16,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: i16) -> SyncResponse {
        SyncResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A reply to a parked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// JoinGroup.
    Join(JoinResponse),
    /// SyncGroup.
    Sync(SyncResponse),
}

impl Reply {
    /// The same reply turned into an error (used when a preceding persist failed).
    pub fn into_error(self, code: i16) -> Reply {
        match self {
            Reply::Join(j) => Reply::Join(JoinResponse::error(code, &j.member_id)),
            Reply::Sync(_) => Reply::Sync(SyncResponse::error(code)),
        }
    }
}

/// An effect for the runtime, to execute in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Append these records to partition `partition` of `__consumer_offsets`.
    Persist {
        /// Partition index.
        partition: i32,
        /// Records, in order.
        records: Vec<OffsetsRecord>,
    },
    /// Complete a parked request.
    Reply(ReplyId, Reply),
}

/// A member of a LeaveGroup request.
#[derive(Debug, Clone, Default)]
pub struct LeavingMember {
    /// Member id (may be empty when the instance id is given).
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
}

/// One partition of an OffsetCommit request.
#[derive(Debug, Clone)]
pub struct CommitOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Metadata string.
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// Group id.
    pub group_id: String,
    /// Generation, -1 for a consumer that does not use group management.
    pub generation_id: i32,
    /// Member id, empty for a consumer that does not use group management.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Offsets.
    pub offsets: Vec<CommitOffset>,
}

/// Committed offset of one partition, as returned by OffsetFetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    /// Partition.
    pub partition: i32,
    /// Offset, -1 when none is committed.
    pub offset: i64,
    /// Leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// Metadata, empty when none.
    pub metadata: String,
}

/// A group in a ListGroups response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub group_id: String,
    /// Protocol type ("" for groups that only store offsets).
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
}

/// A member in a DescribeGroups response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata of the selected protocol (Stable groups only).
    pub metadata: Bytes,
    /// Assignment (Stable groups only).
    pub assignment: Bytes,
}

/// A group in a DescribeGroups response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    /// Group id.
    pub group_id: String,
    /// Error code (GROUP_ID_NOT_FOUND is only used from v6; see `found`).
    pub error: i16,
    /// Whether the group exists.
    pub found: bool,
    /// State (Dead when not found).
    pub state: GroupState,
    /// Protocol type.
    pub protocol_type: String,
    /// Selected protocol (Stable groups only).
    pub protocol: String,
    /// Members.
    pub members: Vec<DescribedMember>,
}

/// A member in [`GroupOverview`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberOverview {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Assigned topic-partitions (decoded when the protocol type is "consumer").
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A committed offset in [`GroupOverview`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Metadata.
    pub metadata: String,
    /// Commit time (ms).
    pub commit_timestamp: i64,
}

/// Everything tools need to know about a group (lag, describe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOverview {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: GroupState,
    /// Protocol type ("" for groups that only store offsets).
    pub protocol_type: String,
    /// Selected protocol ("" when none).
    pub protocol: String,
    /// Generation.
    pub generation: i32,
    /// Leader member id.
    pub leader: Option<String>,
    /// Members.
    pub members: Vec<MemberOverview>,
    /// Committed offsets, by topic and partition.
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: i32,
    rebalance_timeout: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Millis,
    awaiting_join: Option<ReplyId>,
    awaiting_sync: Option<ReplyId>,
    pending_sync: bool,
    seq: u64,
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }

    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(n, _)| n == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    deadline: Millis,
    remaining: i64,
}

/// The offsets of one staged commit, by topic and partition.
type StagedCommit = Vec<((String, i32), OffsetCommitValue)>;

#[derive(Debug, Clone)]
struct Group {
    id: String,
    partition: i32,
    state: GroupState,
    state_since: Millis,
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    static_members: HashMap<String, String>,
    pending: HashMap<String, Millis>,
    rebalance_deadline: Millis,
    initial_delay: Option<InitialDelay>,
    new_member_added: bool,
    sync_deadline: Option<Millis>,
    offsets: BTreeMap<(String, i32), OffsetCommitValue>,
    /// Offset commits written to the log but not yet known to be replicated, by commit id
    /// (see `coordinator/commits.rs`); OffsetFetch does not see them.
    pending_commits: BTreeMap<u64, StagedCommit>,
    /// The commit id each visible offset came from (0: replayed from the log).
    offset_ids: HashMap<(String, i32), u64>,
    next_seq: u64,
}

impl Group {
    fn new(id: &str, partition: i32, now: Millis) -> Group {
        Group {
            id: id.to_string(),
            partition,
            state: GroupState::Empty,
            state_since: now,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: 0,
            initial_delay: None,
            new_member_added: false,
            sync_deadline: None,
            offsets: BTreeMap::new(),
            pending_commits: BTreeMap::new(),
            offset_ids: HashMap::new(),
            next_seq: 0,
        }
    }

    fn transition(&mut self, state: GroupState, now: Millis) {
        self.state = state;
        self.state_since = now;
    }

    fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|m| m != member_id)
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(n, _)| self.members.values().all(|m| m.supports(n)))
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout))
            .max()
            .unwrap_or(0)
    }

    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().min_by_key(|m| m.seq)?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.values().all(|m| m.supports(n)))
            .collect();
        let mut votes: Vec<usize> = vec![0; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| *c == n))
            {
                if let Some(v) = votes.get_mut(i) {
                    *v += 1;
                }
            }
        }
        // Most votes; ties go to the earliest member's preference.
        let mut best: Option<(usize, usize)> = None;
        for (i, v) in votes.iter().enumerate() {
            if best.is_none_or(|(_, bv)| *v > bv) {
                best = Some((i, *v));
            }
        }
        best.and_then(|(i, _)| candidates.get(i).map(|s| s.to_string()))
    }

    fn metadata_value(&self, now: Millis) -> GroupMetadataValue {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: now,
            members: members
                .into_iter()
                .map(|m| MemberMetadata {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout,
                    session_timeout: m.session_timeout,
                    subscription: m.metadata(self.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn persist_metadata(&self, now: Millis, out: &mut Vec<Action>) {
        out.push(Action::Persist {
            partition: self.partition,
            records: vec![OffsetsRecord::Group {
                group: self.id.clone(),
                value: Some(self.metadata_value(now)),
            }],
        });
    }

    fn join_members(&self) -> Vec<JoinMember> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        members
            .into_iter()
            .map(|m| JoinMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(self.protocol.as_deref()),
            })
            .collect()
    }

    fn current_join_response(&self, member_id: &str, skip_assignment: bool) -> JoinResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResponse {
            error: NONE,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.join_members()
            } else {
                Vec::new()
            },
            skip_assignment: is_leader && skip_assignment,
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        now: Millis,
        cfg: &Config,
        req: &JoinRequest,
        member_id: String,
        reply: ReplyId,
        out: &mut Vec<Action>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(inst) = &req.group_instance_id {
            self.static_members.insert(inst.clone(), member_id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id,
                instance_id: req.group_instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: req.session_timeout_ms,
                rebalance_timeout: req.rebalance_timeout_ms,
                protocols: req.protocols.clone(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                awaiting_join: Some(reply),
                awaiting_sync: None,
                pending_sync: false,
                seq,
            },
        );
        if self.state == GroupState::PreparingRebalance {
            self.new_member_added = true;
        }
        self.rebalance_or_complete(now, cfg, out);
    }

    fn update_member_and_rebalance(
        &mut self,
        now: Millis,
        cfg: &Config,
        req: &JoinRequest,
        reply: ReplyId,
        out: &mut Vec<Action>,
    ) {
        let Some(m) = self.members.get_mut(&req.member_id) else {
            out.push(Action::Reply(
                reply,
                Reply::Join(JoinResponse::error(UNKNOWN_MEMBER_ID, &req.member_id)),
            ));
            return;
        };
        m.protocols = req.protocols.clone();
        m.session_timeout = req.session_timeout_ms;
        m.rebalance_timeout = req.rebalance_timeout_ms;
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.last_heartbeat = now;
        if let Some(old) = m.awaiting_join.replace(reply) {
            out.push(Action::Reply(
                old,
                Reply::Join(JoinResponse::error(REBALANCE_IN_PROGRESS, &req.member_id)),
            ));
        }
        self.rebalance_or_complete(now, cfg, out);
    }

    fn rebalance_or_complete(&mut self, now: Millis, cfg: &Config, out: &mut Vec<Action>) {
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now, out),
            _ => self.prepare_rebalance(now, cfg, out),
        }
    }

    fn prepare_rebalance(&mut self, now: Millis, cfg: &Config, out: &mut Vec<Action>) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                m.pending_sync = false;
                if let Some(r) = m.awaiting_sync.take() {
                    out.push(Action::Reply(
                        r,
                        Reply::Sync(SyncResponse::error(REBALANCE_IN_PROGRESS)),
                    ));
                }
            }
        }
        self.sync_deadline = None;
        let max_rt = self.max_rebalance_timeout();
        if self.state == GroupState::Empty && cfg.initial_rebalance_delay_ms > 0 {
            let delay = cfg.initial_rebalance_delay_ms.min(max_rt.max(0));
            self.initial_delay = Some(InitialDelay {
                deadline: now + delay,
                remaining: (max_rt - cfg.initial_rebalance_delay_ms).max(0),
            });
            self.new_member_added = false;
        } else {
            self.initial_delay = None;
        }
        self.rebalance_deadline = now + max_rt;
        self.transition(GroupState::PreparingRebalance, now);
        self.maybe_complete_join(now, out);
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn maybe_complete_join(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.all_joined()
        {
            self.complete_join(now, out);
        }
    }

    fn complete_join(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.initial_delay = None;
        self.new_member_added = false;
        // Dynamic members that did not rejoin in time are dropped; static ones stay.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.members.remove(&id);
        }
        if self.leader.as_ref().is_none_or(|l| {
            self.members
                .get(l)
                .is_none_or(|m| m.awaiting_join.is_none())
        }) {
            self.leader = self
                .members
                .values()
                .filter(|m| m.awaiting_join.is_some())
                .min_by_key(|m| m.seq)
                .map(|m| m.id.clone());
        }
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.transition(GroupState::Empty, now);
            self.persist_metadata(now, out);
            return;
        }
        self.protocol = self.select_protocol();
        self.transition(GroupState::CompletingRebalance, now);
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        let leader_members = self.join_members();
        let leader = self.leader.clone().unwrap_or_default();
        for m in self.members.values_mut() {
            m.pending_sync = true;
            let Some(r) = m.awaiting_join.take() else {
                continue;
            };
            m.last_heartbeat = now;
            out.push(Action::Reply(
                r,
                Reply::Join(JoinResponse {
                    error: NONE,
                    generation_id: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        leader_members.clone()
                    } else {
                        Vec::new()
                    },
                    skip_assignment: false,
                }),
            ));
        }
    }

    /// Removes a member (left, expired or fenced out) and rebalances the rest.
    fn remove_member(&mut self, id: &str, now: Millis, cfg: &Config, out: &mut Vec<Action>) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        if let Some(inst) = &m.instance_id {
            if self.static_members.get(inst).is_some_and(|x| x == id) {
                self.static_members.remove(inst);
            }
        }
        if let Some(r) = m.awaiting_join {
            out.push(Action::Reply(
                r,
                Reply::Join(JoinResponse::error(UNKNOWN_MEMBER_ID, id)),
            ));
        }
        if let Some(r) = m.awaiting_sync {
            out.push(Action::Reply(
                r,
                Reply::Sync(SyncResponse::error(UNKNOWN_MEMBER_ID)),
            ));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.seq)
                .map(|m| m.id.clone());
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, cfg, out)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        let mut d: Option<Millis> = None;
        let mut take = |x: Millis| d = Some(d.map_or(x, |y: Millis| y.min(x)));
        for p in self.pending.values() {
            take(*p);
        }
        for m in self.members.values() {
            if m.awaiting_join.is_none() && m.awaiting_sync.is_none() {
                take(m.last_heartbeat + i64::from(m.session_timeout));
            }
        }
        match self.state {
            GroupState::PreparingRebalance => match self.initial_delay {
                Some(i) => take(i.deadline),
                None => take(self.rebalance_deadline),
            },
            GroupState::CompletingRebalance => {
                if let Some(s) = self.sync_deadline {
                    take(s)
                }
            }
            _ => {}
        }
        d
    }

    fn tick(&mut self, now: Millis, cfg: &Config, out: &mut Vec<Action>) {
        let before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        if self.pending.len() != before {
            self.maybe_complete_join(now, out);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.awaiting_join.is_none()
                    && m.awaiting_sync.is_none()
                    && m.last_heartbeat + i64::from(m.session_timeout) <= now
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member(&id, now, cfg, out);
        }
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(i) = self.initial_delay {
                    if i.deadline <= now {
                        if self.new_member_added && i.remaining > 0 {
                            let delay = cfg.initial_rebalance_delay_ms.min(i.remaining);
                            self.initial_delay = Some(InitialDelay {
                                deadline: i.deadline + delay,
                                remaining: (i.remaining - cfg.initial_rebalance_delay_ms).max(0),
                            });
                            self.new_member_added = false;
                        } else {
                            self.complete_join(now, out);
                        }
                    }
                } else if self.rebalance_deadline <= now {
                    self.complete_join(now, out);
                }
            }
            GroupState::CompletingRebalance if self.sync_deadline.is_some_and(|d| d <= now) => {
                let late: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.pending_sync)
                    .map(|m| m.id.clone())
                    .collect();
                self.sync_deadline = None;
                for id in late {
                    self.remove_member(&id, now, cfg, out);
                }
            }
            _ => {}
        }
    }

    fn offset_tombstones(&self, keys: &[(String, i32)]) -> Vec<OffsetsRecord> {
        keys.iter()
            .map(|(t, p)| OffsetsRecord::Offset {
                group: self.id.clone(),
                topic: t.clone(),
                partition: *p,
                value: None,
            })
            .collect()
    }

    /// Topics the members subscribe to (consumer protocol only).
    fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let meta = m.metadata(self.protocol.as_deref());
            if let Ok(ts) = decode_consumer_subscription(&meta) {
                topics.extend(ts);
            }
        }
        Some(topics)
    }
}

/// The coordinator of every group whose `__consumer_offsets` partition this broker leads.
#[derive(Debug)]
pub struct Coordinator {
    cfg: Config,
    groups: HashMap<String, Group>,
    loading: BTreeSet<i32>,
    rng: u64,
    next_sweep: Option<Millis>,
    next_commit_id: u64,
}

impl Coordinator {
    /// An empty coordinator.
    pub fn new(cfg: Config) -> Coordinator {
        let rng = cfg.seed;
        Coordinator {
            cfg,
            groups: HashMap::new(),
            loading: BTreeSet::new(),
            rng,
            next_sweep: None,
            next_commit_id: 1,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The `__consumer_offsets` partition of a group.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.cfg.num_partitions)
    }

    fn is_loading(&self, group_id: &str) -> bool {
        !self.loading.is_empty() && self.loading.contains(&self.partition_of(group_id))
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn new_member_id(&mut self, prefix: &str) -> String {
        let a = self.next_random();
        let b = self.next_random();
        format!(
            "{prefix}-{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a & 0xfff) as u16,
            (((b >> 48) as u16) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// Unloads partition `partition` of `__consumer_offsets` (its leadership moved to another
    /// broker): its groups are dropped from memory, and their parked JoinGroup/SyncGroup
    /// requests answered NOT_COORDINATOR so the clients look for the new coordinator. Nothing
    /// is persisted: the new leader replays the partition.
    pub fn unload(&mut self, partition: i32) -> Vec<Action> {
        use crate::errors::NOT_COORDINATOR;
        let gone: Vec<String> = self
            .groups
            .keys()
            .filter(|g| self.partition_of(g) == partition)
            .cloned()
            .collect();
        let mut actions = Vec::new();
        for g in gone {
            let Some(group) = self.groups.remove(&g) else {
                continue;
            };
            for m in group.members.values() {
                if let Some(r) = m.awaiting_join {
                    actions.push(Action::Reply(
                        r,
                        Reply::Join(JoinResponse::error(NOT_COORDINATOR, &m.id)),
                    ));
                }
                if let Some(r) = m.awaiting_sync {
                    actions.push(Action::Reply(
                        r,
                        Reply::Sync(SyncResponse::error(NOT_COORDINATOR)),
                    ));
                }
            }
        }
        self.loading.remove(&partition);
        actions
    }

    // ------------------------------------------------------------------ JoinGroup

    /// Handles a JoinGroup. The reply for `reply` is in the returned actions or comes later
    /// (when the rebalance completes, from another call or [`Coordinator::tick`]).
    pub fn join(&mut self, now: Millis, req: JoinRequest, reply: ReplyId) -> Vec<Action> {
        let mut out = Vec::new();
        let fail = |out: &mut Vec<Action>, code: i16| {
            out.push(Action::Reply(
                reply,
                Reply::Join(JoinResponse::error(code, &req.member_id)),
            ));
        };
        if req.group_id.is_empty() {
            fail(&mut out, INVALID_GROUP_ID);
            return out;
        }
        if self.is_loading(&req.group_id) {
            fail(&mut out, COORDINATOR_LOAD_IN_PROGRESS);
            return out;
        }
        if req.session_timeout_ms < self.cfg.min_session_timeout_ms
            || req.session_timeout_ms > self.cfg.max_session_timeout_ms
        {
            fail(&mut out, INVALID_SESSION_TIMEOUT);
            return out;
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            fail(&mut out, INCONSISTENT_GROUP_PROTOCOL);
            return out;
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                fail(&mut out, UNKNOWN_MEMBER_ID);
                return out;
            }
            let p = self.partition_of(&req.group_id);
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, p, now));
        }
        let new_id = if req.member_id.is_empty() {
            let prefix = req
                .group_instance_id
                .clone()
                .unwrap_or_else(|| req.client_id.clone());
            Some(self.new_member_id(&prefix))
        } else {
            None
        };
        let cfg = self.cfg.clone();
        let Some(g) = self.groups.get_mut(&req.group_id) else {
            fail(&mut out, COORDINATOR_NOT_AVAILABLE);
            return out;
        };
        if g.state == GroupState::Dead {
            fail(&mut out, COORDINATOR_NOT_AVAILABLE);
            return out;
        }
        if !g.supports_protocols(&req.protocol_type, &req.protocols) {
            fail(&mut out, INCONSISTENT_GROUP_PROTOCOL);
            return out;
        }
        match new_id {
            Some(id) => join_unknown(g, now, &cfg, &req, id, reply, &mut out),
            None => join_known(g, now, &cfg, &req, reply, &mut out),
        }
        out
    }

    // ------------------------------------------------------------------ SyncGroup

    /// Handles a SyncGroup. As with [`Coordinator::join`], the reply may come later.
    pub fn sync(&mut self, now: Millis, req: SyncRequest, reply: ReplyId) -> Vec<Action> {
        let mut out = Vec::new();
        let fail = |out: &mut Vec<Action>, code: i16| {
            out.push(Action::Reply(reply, Reply::Sync(SyncResponse::error(code))));
        };
        if req.group_id.is_empty() {
            fail(&mut out, INVALID_GROUP_ID);
            return out;
        }
        if self.is_loading(&req.group_id) {
            fail(&mut out, COORDINATOR_LOAD_IN_PROGRESS);
            return out;
        }
        let Some(g) = self.groups.get_mut(&req.group_id) else {
            fail(&mut out, UNKNOWN_MEMBER_ID);
            return out;
        };
        let code = if g.state == GroupState::Dead {
            COORDINATOR_NOT_AVAILABLE
        } else if g.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            FENCED_INSTANCE_ID
        } else if !g.members.contains_key(&req.member_id) {
            UNKNOWN_MEMBER_ID
        } else if req.generation_id != g.generation {
            ILLEGAL_GENERATION
        } else if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != g.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != g.protocol.as_ref())
        {
            INCONSISTENT_GROUP_PROTOCOL
        } else {
            match g.state {
                GroupState::Empty => UNKNOWN_MEMBER_ID,
                GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
                _ => NONE,
            }
        };
        if code != NONE {
            fail(&mut out, code);
            return out;
        }
        let is_leader = g.leader.as_deref() == Some(req.member_id.as_str());
        let (ptype, pname) = (g.protocol_type.clone(), g.protocol.clone());
        match g.state {
            GroupState::CompletingRebalance => {
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.last_heartbeat = now;
                    m.pending_sync = false;
                    if let Some(old) = m.awaiting_sync.replace(reply) {
                        out.push(Action::Reply(
                            old,
                            Reply::Sync(SyncResponse::error(REBALANCE_IN_PROGRESS)),
                        ));
                    }
                }
                if is_leader {
                    let given: HashMap<&str, &Bytes> = req
                        .assignments
                        .iter()
                        .map(|(m, a)| (m.as_str(), a))
                        .collect();
                    for m in g.members.values_mut() {
                        m.assignment = given
                            .get(m.id.as_str())
                            .map(|a| (*a).clone())
                            .unwrap_or_default();
                    }
                    g.persist_metadata(now, &mut out);
                    g.transition(GroupState::Stable, now);
                    g.sync_deadline = None;
                    for m in g.members.values_mut() {
                        m.pending_sync = false;
                        if let Some(r) = m.awaiting_sync.take() {
                            out.push(Action::Reply(
                                r,
                                Reply::Sync(SyncResponse {
                                    error: NONE,
                                    protocol_type: ptype.clone(),
                                    protocol_name: pname.clone(),
                                    assignment: m.assignment.clone(),
                                }),
                            ));
                        }
                    }
                }
            }
            GroupState::Stable => {
                let assignment = g
                    .members
                    .get_mut(&req.member_id)
                    .map(|m| {
                        m.last_heartbeat = now;
                        m.pending_sync = false;
                        m.assignment.clone()
                    })
                    .unwrap_or_default();
                out.push(Action::Reply(
                    reply,
                    Reply::Sync(SyncResponse {
                        error: NONE,
                        protocol_type: ptype,
                        protocol_name: pname,
                        assignment,
                    }),
                ));
            }
            _ => fail(&mut out, REBALANCE_IN_PROGRESS),
        }
        out
    }

    // ------------------------------------------------------------------ Heartbeat

    /// Handles a Heartbeat; returns its error code.
    pub fn heartbeat(
        &mut self,
        now: Millis,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> i16 {
        if self.is_loading(group_id) {
            return COORDINATOR_LOAD_IN_PROGRESS;
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if g.state == GroupState::Dead {
            return COORDINATOR_NOT_AVAILABLE;
        }
        if g.is_fenced(group_instance_id, member_id) {
            return FENCED_INSTANCE_ID;
        }
        let state = g.state;
        let generation = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if generation_id != generation {
            return ILLEGAL_GENERATION;
        }
        match state {
            GroupState::Empty => UNKNOWN_MEMBER_ID,
            GroupState::Dead => COORDINATOR_NOT_AVAILABLE,
            GroupState::PreparingRebalance => {
                m.last_heartbeat = now;
                REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                m.last_heartbeat = now;
                NONE
            }
        }
    }

    // ------------------------------------------------------------------ LeaveGroup

    /// Handles a LeaveGroup: the top-level error, one error per leaving member, and actions
    /// (rebalance completions of the remaining members).
    pub fn leave(
        &mut self,
        now: Millis,
        group_id: &str,
        members: &[LeavingMember],
    ) -> (i16, Vec<i16>, Vec<Action>) {
        let mut out = Vec::new();
        if self.is_loading(group_id) {
            return (COORDINATOR_LOAD_IN_PROGRESS, Vec::new(), out);
        }
        let cfg = self.cfg.clone();
        let Some(g) = self.groups.get_mut(group_id) else {
            return (NONE, vec![UNKNOWN_MEMBER_ID; members.len()], out);
        };
        if g.state == GroupState::Dead {
            return (COORDINATOR_NOT_AVAILABLE, Vec::new(), out);
        }
        let mut errors = Vec::with_capacity(members.len());
        for lm in members {
            let inst = lm.group_instance_id.as_deref();
            let target = if lm.member_id.is_empty() {
                match inst.and_then(|i| g.static_members.get(i)) {
                    Some(id) => Ok(id.clone()),
                    None => Err(UNKNOWN_MEMBER_ID),
                }
            } else if g.is_fenced(inst, &lm.member_id) {
                Err(FENCED_INSTANCE_ID)
            } else if g.pending.remove(&lm.member_id).is_some() {
                g.maybe_complete_join(now, &mut out);
                errors.push(NONE);
                continue;
            } else if g.members.contains_key(&lm.member_id) {
                Ok(lm.member_id.clone())
            } else {
                Err(UNKNOWN_MEMBER_ID)
            };
            match target {
                Ok(id) => {
                    g.remove_member(&id, now, &cfg, &mut out);
                    errors.push(NONE);
                }
                Err(e) => errors.push(e),
            }
        }
        (NONE, errors, out)
    }

    // ------------------------------------------------------------------ offsets

    /// Handles an OffsetCommit: one error per offset (in request order) and the actions
    /// (the records to persist before answering).
    pub fn stage_commit(
        &mut self,
        now: Millis,
        req: CommitRequest,
    ) -> (Vec<i16>, Option<u64>, Vec<Action>) {
        let n = req.offsets.len();
        let all = |code: i16| (vec![code; n], None, Vec::new());
        if req.group_id.is_empty() {
            return all(INVALID_GROUP_ID);
        }
        if self.is_loading(&req.group_id) {
            return all(COORDINATOR_LOAD_IN_PROGRESS);
        }
        let simple =
            req.generation_id < 0 && req.member_id.is_empty() && req.group_instance_id.is_none();
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id >= 0 || !req.member_id.is_empty() {
                return all(ILLEGAL_GENERATION);
            }
            let p = self.partition_of(&req.group_id);
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, p, now));
        }
        let max_meta = self.cfg.offset_metadata_max_bytes;
        let commit_id = self.next_commit_id;
        let Some(g) = self.groups.get_mut(&req.group_id) else {
            return all(COORDINATOR_NOT_AVAILABLE);
        };
        let code = if g.state == GroupState::Dead {
            COORDINATOR_NOT_AVAILABLE
        } else if req.generation_id < 0 && g.state == GroupState::Empty {
            NONE
        } else if simple {
            // A consumer without group management may not commit for an active group.
            UNKNOWN_MEMBER_ID
        } else if g.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            FENCED_INSTANCE_ID
        } else if !g.members.contains_key(&req.member_id) {
            UNKNOWN_MEMBER_ID
        } else if req.generation_id != g.generation {
            ILLEGAL_GENERATION
        } else if g.state == GroupState::CompletingRebalance {
            REBALANCE_IN_PROGRESS
        } else {
            NONE
        };
        if code != NONE {
            return all(code);
        }
        if let Some(m) = g.members.get_mut(&req.member_id) {
            m.last_heartbeat = now;
        }
        let mut errors = Vec::with_capacity(n);
        let mut records = Vec::with_capacity(n);
        let mut staged = Vec::with_capacity(n);
        for o in req.offsets {
            let meta = o.metadata.unwrap_or_default();
            if meta.len() > max_meta {
                errors.push(OFFSET_METADATA_TOO_LARGE);
                continue;
            }
            let value = OffsetCommitValue {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: meta,
                commit_timestamp: now,
                expire_timestamp: -1,
            };
            staged.push(((o.topic.clone(), o.partition), value.clone()));
            records.push(OffsetsRecord::Offset {
                group: g.id.clone(),
                topic: o.topic,
                partition: o.partition,
                value: Some(value),
            });
            errors.push(NONE);
        }
        let mut out = Vec::new();
        if records.is_empty() {
            return (errors, None, out);
        }
        g.pending_commits.insert(commit_id, staged);
        out.push(Action::Persist {
            partition: g.partition,
            records,
        });
        self.next_commit_id += 1;
        (errors, Some(commit_id), out)
    }

    /// Handles an OffsetFetch for one group: `topics: None` means every committed offset.
    /// Partitions without a committed offset get offset -1. Err is a group-level error.
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<(String, Vec<FetchedOffset>)>, i16> {
        if self.is_loading(group_id) {
            return Err(COORDINATOR_LOAD_IN_PROGRESS);
        }
        let g = self.groups.get(group_id);
        let found = |t: &str, p: i32| -> FetchedOffset {
            match g.and_then(|g| g.offsets.get(&(t.to_string(), p))) {
                Some(v) => FetchedOffset {
                    partition: p,
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                },
                None => FetchedOffset {
                    partition: p,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                },
            }
        };
        match topics {
            Some(ts) => Ok(ts
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|p| found(t, *p)).collect()))
                .collect()),
            None => {
                let mut by_topic: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
                if let Some(g) = g {
                    for (t, p) in g.offsets.keys() {
                        by_topic.entry(t.clone()).or_default().push(found(t, *p));
                    }
                }
                Ok(by_topic.into_iter().collect())
            }
        }
    }

    /// Handles an OffsetDelete: a group-level error, or per-partition errors, plus actions.
    #[allow(clippy::type_complexity)]
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> (Result<Vec<(String, Vec<(i32, i16)>)>, i16>, Vec<Action>) {
        if self.is_loading(group_id) {
            return (Err(COORDINATOR_LOAD_IN_PROGRESS), Vec::new());
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            return (Err(GROUP_ID_NOT_FOUND), Vec::new());
        };
        if g.state == GroupState::Dead {
            return (Err(GROUP_ID_NOT_FOUND), Vec::new());
        }
        let subscribed = if g.state == GroupState::Empty {
            Some(BTreeSet::new())
        } else {
            g.subscribed_topics()
        };
        let Some(subscribed) = subscribed else {
            return (Err(NON_EMPTY_GROUP), Vec::new());
        };
        let mut deleted = Vec::new();
        let mut result = Vec::with_capacity(topics.len());
        for (t, ps) in topics {
            let mut parts = Vec::with_capacity(ps.len());
            for p in ps {
                if subscribed.contains(t) {
                    parts.push((*p, GROUP_SUBSCRIBED_TO_TOPIC));
                } else {
                    if g.offsets.remove(&(t.clone(), *p)).is_some() {
                        deleted.push((t.clone(), *p));
                    }
                    parts.push((*p, NONE));
                }
            }
            result.push((t.clone(), parts));
        }
        let mut out = Vec::new();
        if !deleted.is_empty() {
            out.push(Action::Persist {
                partition: g.partition,
                records: g.offset_tombstones(&deleted),
            });
        }
        (Ok(result), out)
    }

    // ------------------------------------------------------------------ admin

    /// Handles DeleteGroups: one error per group, plus the tombstones to persist.
    pub fn delete_groups(&mut self, group_ids: &[String]) -> (Vec<i16>, Vec<Action>) {
        let mut out = Vec::new();
        let mut errors = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            if self.is_loading(id) {
                errors.push(COORDINATOR_LOAD_IN_PROGRESS);
                continue;
            }
            let code = match self.groups.get(id) {
                None => GROUP_ID_NOT_FOUND,
                Some(g) if g.state == GroupState::Dead => GROUP_ID_NOT_FOUND,
                Some(g) if g.state != GroupState::Empty || !g.pending.is_empty() => NON_EMPTY_GROUP,
                Some(_) => NONE,
            };
            if code == NONE {
                if let Some(g) = self.groups.remove(id) {
                    out.push(deletion_records(&g));
                }
            }
            errors.push(code);
        }
        (errors, out)
    }

    /// Handles ListGroups. `states` and `types` filter case-insensitively when not empty
    /// (every group here is of type "classic").
    pub fn list_groups(
        &self,
        states: &[String],
        types: &[String],
    ) -> Result<Vec<ListedGroup>, i16> {
        if !self.loading.is_empty() {
            return Err(COORDINATOR_LOAD_IN_PROGRESS);
        }
        if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case("classic")) {
            return Ok(Vec::new());
        }
        let mut out: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// Handles DescribeGroups for one group.
    pub fn describe_group(&self, group_id: &str) -> DescribedGroup {
        let mut d = DescribedGroup {
            group_id: group_id.to_string(),
            error: NONE,
            found: false,
            state: GroupState::Dead,
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        if self.is_loading(group_id) {
            d.error = COORDINATOR_LOAD_IN_PROGRESS;
            return d;
        }
        let Some(g) = self.groups.get(group_id) else {
            return d;
        };
        d.found = true;
        d.state = g.state;
        d.protocol_type = g.protocol_type.clone().unwrap_or_default();
        let stable = g.state == GroupState::Stable;
        if stable {
            d.protocol = g.protocol.clone().unwrap_or_default();
        }
        let mut members: Vec<&Member> = g.members.values().collect();
        members.sort_by_key(|m| m.seq);
        d.members = members
            .into_iter()
            .map(|m| DescribedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(g.protocol.as_deref())
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        d
    }

    /// Groups with state, members (assignments decoded for the consumer protocol) and
    /// committed offsets; all groups when `group_id` is `None`. Sorted by group id.
    pub fn overview(&self, group_id: Option<&str>) -> Vec<GroupOverview> {
        let mut out: Vec<GroupOverview> = self
            .groups
            .values()
            .filter(|g| group_id.is_none_or(|id| id == g.id))
            .map(|g| {
                let consumer = g.protocol_type.as_deref() == Some("consumer");
                let mut members: Vec<&Member> = g.members.values().collect();
                members.sort_by_key(|m| m.seq);
                GroupOverview {
                    group_id: g.id.clone(),
                    state: g.state,
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    protocol: g.protocol.clone().unwrap_or_default(),
                    generation: g.generation,
                    leader: g.leader.clone(),
                    members: members
                        .into_iter()
                        .map(|m| MemberOverview {
                            member_id: m.id.clone(),
                            group_instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            assignment: if consumer {
                                decode_consumer_assignment(&m.assignment).unwrap_or_default()
                            } else {
                                Vec::new()
                            },
                        })
                        .collect(),
                    offsets: g
                        .offsets
                        .iter()
                        .map(|((t, p), v)| CommittedOffset {
                            topic: t.clone(),
                            partition: *p,
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata.clone(),
                            commit_timestamp: v.commit_timestamp,
                        })
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    // ------------------------------------------------------------------ time

    /// The earliest time [`Coordinator::tick`] has work to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        let mut d = self.next_sweep;
        for g in self.groups.values() {
            if self.loading.contains(&g.partition) {
                continue;
            }
            if let Some(x) = g.next_deadline() {
                d = Some(d.map_or(x, |y| y.min(x)));
            }
        }
        d
    }

    /// Fires due timers: expired sessions and pending members, rebalance and initial-delay
    /// deadlines, sync timeouts, and (every `offsets_retention_check_interval_ms`) the offset
    /// expiry sweep.
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        let cfg = self.cfg.clone();
        for g in self.groups.values_mut() {
            if self.loading.contains(&g.partition) {
                continue;
            }
            g.tick(now, &cfg, &mut out);
        }
        match self.next_sweep {
            None => self.next_sweep = Some(now + cfg.offsets_retention_check_interval_ms.max(1)),
            Some(t) if now >= t => {
                self.next_sweep = Some(now + cfg.offsets_retention_check_interval_ms.max(1));
                self.expire_offsets(now, &mut out);
            }
            Some(_) => {}
        }
        out
    }

    fn expire_offsets(&mut self, now: Millis, out: &mut Vec<Action>) {
        let retention = self.cfg.offsets_retention_ms;
        let mut dead = Vec::new();
        for g in self.groups.values_mut() {
            if self.loading.contains(&g.partition) || g.state != GroupState::Empty {
                continue;
            }
            let expired: Vec<(String, i32)> = if g.protocol_type.is_some() {
                // A group that used group management: all offsets expire together, counted
                // from when it became empty.
                if g.state_since + retention <= now {
                    g.offsets.keys().cloned().collect()
                } else {
                    Vec::new()
                }
            } else {
                g.offsets
                    .iter()
                    .filter(|(_, v)| {
                        if v.expire_timestamp >= 0 {
                            v.expire_timestamp <= now
                        } else {
                            v.commit_timestamp + retention <= now
                        }
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            if !expired.is_empty() {
                for k in &expired {
                    g.offsets.remove(k);
                }
                out.push(Action::Persist {
                    partition: g.partition,
                    records: g.offset_tombstones(&expired),
                });
            }
            if g.offsets.is_empty() && g.pending.is_empty() {
                dead.push(g.id.clone());
            }
        }
        for id in dead {
            if let Some(g) = self.groups.remove(&id) {
                out.push(Action::Persist {
                    partition: g.partition,
                    records: vec![OffsetsRecord::Group {
                        group: g.id.clone(),
                        value: None,
                    }],
                });
            }
        }
    }

    /// Topics were deleted: drops every group's offsets for them and persists tombstones, as
    /// Kafka's coordinator does (`onPartitionsDeleted`); an Empty group left without offsets
    /// is removed too (group tombstone). Groups of partitions still loading are skipped.
    pub fn on_topics_deleted(&mut self, topics: &BTreeSet<String>) -> Vec<Action> {
        let mut out = Vec::new();
        if topics.is_empty() {
            return out;
        }
        let mut dead = Vec::new();
        for g in self.groups.values_mut() {
            if self.loading.contains(&g.partition) {
                continue;
            }
            let gone: Vec<(String, i32)> = g
                .offsets
                .keys()
                .filter(|(t, _)| topics.contains(t))
                .cloned()
                .collect();
            if gone.is_empty() {
                continue;
            }
            for k in &gone {
                g.offsets.remove(k);
            }
            out.push(Action::Persist {
                partition: g.partition,
                records: g.offset_tombstones(&gone),
            });
            if g.state == GroupState::Empty && g.offsets.is_empty() && g.pending.is_empty() {
                dead.push(g.id.clone());
            }
        }
        for id in dead {
            if let Some(g) = self.groups.remove(&id) {
                out.push(Action::Persist {
                    partition: g.partition,
                    records: vec![OffsetsRecord::Group {
                        group: g.id.clone(),
                        value: None,
                    }],
                });
            }
        }
        out
    }

    // ------------------------------------------------------------------ loading

    /// Marks a partition as loading: its groups answer COORDINATOR_LOAD_IN_PROGRESS until
    /// [`Coordinator::finish_load`].
    pub fn begin_load(&mut self, partition: i32) {
        self.loading.insert(partition);
    }

    /// Applies one record read back from the log (in log order).
    pub fn replay(&mut self, partition: i32, record: OffsetsRecord) {
        match record {
            OffsetsRecord::Offset {
                group,
                topic,
                partition: p,
                value,
            } => {
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, partition, 0));
                match value {
                    Some(v) => {
                        g.offsets.insert((topic, p), v);
                    }
                    None => {
                        g.offsets.remove(&(topic, p));
                    }
                }
            }
            OffsetsRecord::Group { group, value } => match value {
                Some(v) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, partition, 0));
                    g.protocol_type = if v.protocol_type.is_empty() {
                        None
                    } else {
                        Some(v.protocol_type)
                    };
                    g.generation = v.generation;
                    g.protocol = v.protocol;
                    g.leader = v.leader;
                    g.state_since = v.current_state_timestamp;
                    g.members.clear();
                    g.static_members.clear();
                    for (seq, m) in v.members.into_iter().enumerate() {
                        if let Some(i) = &m.group_instance_id {
                            g.static_members.insert(i.clone(), m.member_id.clone());
                        }
                        let protocols = match &g.protocol {
                            Some(p) => vec![(p.clone(), m.subscription)],
                            None => Vec::new(),
                        };
                        g.members.insert(
                            m.member_id.clone(),
                            Member {
                                id: m.member_id,
                                instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                session_timeout: m.session_timeout,
                                rebalance_timeout: m.rebalance_timeout,
                                protocols,
                                assignment: m.assignment,
                                last_heartbeat: 0,
                                awaiting_join: None,
                                awaiting_sync: None,
                                pending_sync: false,
                                seq: seq as u64,
                            },
                        );
                    }
                    g.next_seq = g.members.len() as u64;
                }
                None => {
                    // The group was deleted; offsets have their own tombstones.
                    if let Some(g) = self.groups.get_mut(&group) {
                        *g = Group {
                            offsets: std::mem::take(&mut g.offsets),
                            ..Group::new(&group, partition, 0)
                        };
                    }
                }
            },
        }
    }

    /// Ends loading a partition: groups with members become Stable (their sessions start
    /// now), the others Empty.
    pub fn finish_load(&mut self, partition: i32, now: Millis) {
        self.loading.remove(&partition);
        self.groups.retain(|_, g| {
            g.partition != partition
                || !g.members.is_empty()
                || !g.offsets.is_empty()
                || g.protocol_type.is_some()
        });
        for g in self
            .groups
            .values_mut()
            .filter(|g| g.partition == partition)
        {
            for m in g.members.values_mut() {
                m.last_heartbeat = now;
            }
            g.state = if g.members.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            };
            if g.state_since <= 0 {
                g.state_since = now;
            }
        }
    }

    /// Whether any partition is loading.
    pub fn is_any_loading(&self) -> bool {
        !self.loading.is_empty()
    }
}

fn deletion_records(g: &Group) -> Action {
    let keys: Vec<(String, i32)> = g.offsets.keys().cloned().collect();
    let mut records = g.offset_tombstones(&keys);
    records.push(OffsetsRecord::Group {
        group: g.id.clone(),
        value: None,
    });
    Action::Persist {
        partition: g.partition,
        records,
    }
}

fn join_unknown(
    g: &mut Group,
    now: Millis,
    cfg: &Config,
    req: &JoinRequest,
    new_id: String,
    reply: ReplyId,
    out: &mut Vec<Action>,
) {
    if let Some(inst) = &req.group_instance_id {
        if let Some(old_id) = g.static_members.get(inst).cloned() {
            replace_static_member(g, now, cfg, req, &old_id, new_id, reply, out);
            return;
        }
        g.add_member_and_rebalance(now, cfg, req, new_id, reply, out);
        return;
    }
    if req.require_known_member_id {
        g.pending
            .insert(new_id.clone(), now + i64::from(req.session_timeout_ms));
        out.push(Action::Reply(
            reply,
            Reply::Join(JoinResponse::error(MEMBER_ID_REQUIRED, &new_id)),
        ));
        return;
    }
    g.add_member_and_rebalance(now, cfg, req, new_id, reply, out);
}

#[allow(clippy::too_many_arguments)]
fn replace_static_member(
    g: &mut Group,
    now: Millis,
    cfg: &Config,
    req: &JoinRequest,
    old_id: &str,
    new_id: String,
    reply: ReplyId,
    out: &mut Vec<Action>,
) {
    let Some(mut m) = g.members.remove(old_id) else {
        g.add_member_and_rebalance(now, cfg, req, new_id, reply, out);
        return;
    };
    if let Some(r) = m.awaiting_join.take() {
        out.push(Action::Reply(
            r,
            Reply::Join(JoinResponse::error(FENCED_INSTANCE_ID, old_id)),
        ));
    }
    if let Some(r) = m.awaiting_sync.take() {
        out.push(Action::Reply(
            r,
            Reply::Sync(SyncResponse::error(FENCED_INSTANCE_ID)),
        ));
    }
    let unchanged = m.protocols == req.protocols;
    m.id = new_id.clone();
    m.client_id = req.client_id.clone();
    m.client_host = req.client_host.clone();
    m.session_timeout = req.session_timeout_ms;
    m.rebalance_timeout = req.rebalance_timeout_ms;
    m.protocols = req.protocols.clone();
    m.last_heartbeat = now;
    if let Some(inst) = &req.group_instance_id {
        g.static_members.insert(inst.clone(), new_id.clone());
    }
    if g.leader.as_deref() == Some(old_id) {
        g.leader = Some(new_id.clone());
    }
    g.members.insert(new_id.clone(), m);
    match g.state {
        GroupState::Stable if unchanged => {
            g.persist_metadata(now, out);
            out.push(Action::Reply(
                reply,
                Reply::Join(g.current_join_response(&new_id, true)),
            ));
        }
        _ => {
            if let Some(m) = g.members.get_mut(&new_id) {
                m.awaiting_join = Some(reply);
            }
            g.rebalance_or_complete(now, cfg, out);
        }
    }
}

fn join_known(
    g: &mut Group,
    now: Millis,
    cfg: &Config,
    req: &JoinRequest,
    reply: ReplyId,
    out: &mut Vec<Action>,
) {
    let fail = |out: &mut Vec<Action>, code: i16| {
        out.push(Action::Reply(
            reply,
            Reply::Join(JoinResponse::error(code, &req.member_id)),
        ));
    };
    if g.pending.remove(&req.member_id).is_some() {
        g.add_member_and_rebalance(now, cfg, req, req.member_id.clone(), reply, out);
        return;
    }
    if g.is_fenced(req.group_instance_id.as_deref(), &req.member_id) {
        fail(out, FENCED_INSTANCE_ID);
        return;
    }
    let Some(m) = g.members.get(&req.member_id) else {
        fail(out, UNKNOWN_MEMBER_ID);
        return;
    };
    let unchanged = m.protocols == req.protocols;
    let is_leader = g.leader.as_deref() == Some(req.member_id.as_str());
    match g.state {
        GroupState::PreparingRebalance => g.update_member_and_rebalance(now, cfg, req, reply, out),
        GroupState::CompletingRebalance if unchanged => {
            // The member missed the JoinGroup response: answer it again.
            if let Some(m) = g.members.get_mut(&req.member_id) {
                m.last_heartbeat = now;
            }
            out.push(Action::Reply(
                reply,
                Reply::Join(g.current_join_response(&req.member_id, false)),
            ));
        }
        GroupState::CompletingRebalance => g.update_member_and_rebalance(now, cfg, req, reply, out),
        GroupState::Stable if unchanged && !is_leader => {
            if let Some(m) = g.members.get_mut(&req.member_id) {
                m.last_heartbeat = now;
            }
            out.push(Action::Reply(
                reply,
                Reply::Join(g.current_join_response(&req.member_id, false)),
            ));
        }
        GroupState::Stable => g.update_member_and_rebalance(now, cfg, req, reply, out),
        GroupState::Empty | GroupState::Dead => fail(out, UNKNOWN_MEMBER_ID),
    }
}

mod commits;
#[cfg(test)]
mod tests;
