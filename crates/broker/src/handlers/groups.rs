//! Group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. Thin mappings between
//! wire types and `crate::groups` (the coordinator runtime).

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_group::{CommitOffset, CommitRequest, LeavingMember};

use super::sb;
use crate::codes::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, GROUP_ID_NOT_FOUND, INVALID_GROUP_ID,
    INVALID_REQUEST, NONE, NOT_COORDINATOR, TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::groups::OFFSETS_TOPIC;
use crate::state::Broker;

/// Authorized-operation bits of a group (READ, DELETE, DESCRIBE) when asked for.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Checks that the coordinator is up and that this broker coordinates `group_id`.
async fn check(broker: &Arc<Broker>, group_id: &str) -> Result<(), i16> {
    broker.groups.ready(broker).await?;
    let (leader, _) = coordinator_of(broker, group_id)?;
    if leader != broker.config.node_id {
        return Err(NOT_COORDINATOR);
    }
    Ok(())
}

/// Leader node and partition of the group's `__consumer_offsets` partition.
fn coordinator_of(broker: &Broker, group_id: &str) -> Result<(i32, i32), i16> {
    let md = broker.metadata();
    let topic = md
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or(COORDINATOR_NOT_AVAILABLE)?;
    let p = broker.groups.partition_of(group_id);
    let part = topic
        .partitions
        .iter()
        .find(|x| x.index == p)
        .ok_or(COORDINATOR_NOT_AVAILABLE)?;
    if part.leader < 0 {
        return Err(COORDINATOR_NOT_AVAILABLE);
    }
    Ok((part.leader, p))
}

fn message(code: i16) -> Option<StrBytes> {
    let text = match code {
        NONE => return None,
        COORDINATOR_NOT_AVAILABLE => "The coordinator is not available.",
        NOT_COORDINATOR => "This is not the correct coordinator.",
        INVALID_REQUEST => "Unsupported coordinator key type.",
        COORDINATOR_LOAD_IN_PROGRESS => "The coordinator is loading and hence can't process requests.",
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED => {
            "Transactions are not supported by this broker yet (Sluice has no transaction coordinator)."
        }
        _ => return None,
    };
    Some(sb(text))
}

pub async fn find_coordinator(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let mut c = Coordinator::default();
        c.key = sb(key.clone());
        let found = match req.key_type {
            0 => match broker.groups.ready(broker).await {
                Ok(()) => coordinator_of(broker, &key).and_then(|(leader, _)| {
                    let md = broker.metadata();
                    md.brokers
                        .get(&leader)
                        .filter(|b| !b.fenced)
                        .map(|b| (leader, b.host.clone(), b.port))
                        .ok_or(COORDINATOR_NOT_AVAILABLE)
                }),
                Err(e) => Err(e),
            },
            // Transactions are not implemented yet. A retriable error would make transactional
            // clients retry for ever; this non-retriable one fails them at once.
            1 => Err(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            _ => Err(INVALID_REQUEST),
        };
        match found {
            Ok((node, host, port)) => {
                c.node_id = BrokerId(node);
                c.host = sb(host);
                c.port = port;
            }
            Err(code) => {
                c.node_id = BrokerId(-1);
                c.host = sb("");
                c.port = -1;
                c.error_code = code;
                c.error_message = message(code);
            }
        }
        coordinators.push(c);
    }
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = coordinators;
    } else if let Some(c) = coordinators.pop() {
        resp.error_code = c.error_code;
        resp.error_message = c.error_message;
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    resp
}

pub async fn join_group(
    broker: &Arc<Broker>,
    req: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let group_id = req.group_id.to_string();
    let mut resp = JoinGroupResponse::default();
    resp.member_id = req.member_id.clone();
    resp.generation_id = -1;
    if version < 7 {
        resp.protocol_name = Some(sb(""));
    }
    if let Err(code) = check(broker, &group_id).await {
        resp.error_code = code;
        return resp;
    }
    let j = broker
        .groups
        .join(sluice_group::JoinRequest {
            group_id,
            member_id: req.member_id.to_string(),
            group_instance_id: if version >= 5 {
                req.group_instance_id.map(|s| s.to_string())
            } else {
                None
            },
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: if version >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            client_id,
            client_host,
            require_known_member_id: version >= 4,
        })
        .await;
    resp.error_code = j.error;
    resp.generation_id = j.generation_id;
    resp.protocol_type = if version >= 7 {
        j.protocol_type.map(sb)
    } else {
        None
    };
    resp.protocol_name = match j.protocol_name {
        Some(p) => Some(sb(p)),
        None if version < 7 => Some(sb("")),
        None => None,
    };
    resp.leader = sb(j.leader);
    resp.skip_assignment = version >= 9 && j.skip_assignment;
    resp.member_id = sb(j.member_id);
    resp.members = j
        .members
        .into_iter()
        .map(|m| {
            let mut r = JoinGroupResponseMember::default();
            r.member_id = sb(m.member_id);
            r.group_instance_id = if version >= 5 {
                m.group_instance_id.map(sb)
            } else {
                None
            };
            r.metadata = m.metadata;
            r
        })
        .collect();
    resp
}

pub async fn sync_group(
    broker: &Arc<Broker>,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group_id = req.group_id.to_string();
    let mut resp = SyncGroupResponse::default();
    if let Err(code) = check(broker, &group_id).await {
        resp.error_code = code;
        return resp;
    }
    let s = broker
        .groups
        .sync(sluice_group::SyncRequest {
            group_id,
            generation_id: req.generation_id,
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.map(|s| s.to_string()),
            protocol_type: if version >= 5 {
                req.protocol_type.map(|s| s.to_string())
            } else {
                None
            },
            protocol_name: if version >= 5 {
                req.protocol_name.map(|s| s.to_string())
            } else {
                None
            },
            assignments: req
                .assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        })
        .await;
    resp.error_code = s.error;
    resp.assignment = s.assignment;
    if version >= 5 {
        resp.protocol_type = s.protocol_type.map(sb);
        resp.protocol_name = s.protocol_name.map(sb);
    }
    resp
}

pub async fn heartbeat(broker: &Arc<Broker>, req: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = req.group_id.to_string();
    let mut resp = HeartbeatResponse::default();
    resp.error_code = match check(broker, &group_id).await {
        Err(code) => code,
        Ok(()) => broker.groups.heartbeat(
            &group_id,
            req.generation_id,
            &req.member_id,
            req.group_instance_id.as_deref(),
        ),
    };
    resp
}

pub async fn leave_group(
    broker: &Arc<Broker>,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = req.group_id.to_string();
    let members: Vec<LeavingMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let mut resp = LeaveGroupResponse::default();
    let (top, errors) = match check(broker, &group_id).await {
        Err(code) => (code, Vec::new()),
        Ok(()) => broker.groups.leave(&group_id, &members).await,
    };
    if version >= 3 {
        resp.error_code = top;
        resp.members = members
            .iter()
            .zip(errors.iter())
            .map(|(m, e)| {
                let mut r = MemberResponse::default();
                r.member_id = sb(m.member_id.clone());
                r.group_instance_id = m.group_instance_id.clone().map(sb);
                r.error_code = *e;
                r
            })
            .collect();
    } else {
        resp.error_code = if top != NONE {
            top
        } else {
            errors.iter().copied().find(|e| *e != NONE).unwrap_or(NONE)
        };
    }
    resp
}

pub async fn offset_commit(
    broker: &Arc<Broker>,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_id = req.group_id.to_string();
    // Kafka answers UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist and
    // commits the others; the coordinator only sees the existing ones.
    let md = broker.metadata();
    let mut known = Vec::new();
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let exists = partition_exists(&md, &t.name, p.partition_index);
            known.push(exists);
            if !exists {
                continue;
            }
            offsets.push(CommitOffset {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let errors = if offsets.is_empty() {
        Vec::new()
    } else {
        match check(broker, &group_id).await {
            Err(code) => vec![code; offsets.len()],
            Ok(()) => {
                broker
                    .groups
                    .commit(CommitRequest {
                        group_id,
                        generation_id: req.generation_id_or_member_epoch,
                        member_id: req.member_id.to_string(),
                        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                        offsets,
                    })
                    .await
            }
        }
    };
    let mut errors = errors.into_iter();
    let mut known = known.into_iter();
    let mut resp = OffsetCommitResponse::default();
    resp.topics = req
        .topics
        .iter()
        .map(|t| {
            let mut rt = OffsetCommitResponseTopic::default();
            rt.name = t.name.clone();
            rt.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut rp = OffsetCommitResponsePartition::default();
                    rp.partition_index = p.partition_index;
                    rp.error_code = if known.next().unwrap_or(false) {
                        errors.next().unwrap_or(COORDINATOR_NOT_AVAILABLE)
                    } else {
                        UNKNOWN_TOPIC_OR_PARTITION
                    };
                    rp
                })
                .collect();
            rt
        })
        .collect();
    resp
}

/// Whether `topic` exists and has partition `index` (what Kafka's metadata cache checks
/// before an offset commit or delete reaches the coordinator).
fn partition_exists(md: &sluice_controller::Metadata, topic: &str, index: i32) -> bool {
    md.topics
        .get(topic)
        .is_some_and(|t| t.partitions.iter().any(|p| p.index == index))
}

type TopicParts = Vec<(String, Vec<i32>)>;

/// Fetches one group's offsets; `Err` is a group-level error.
async fn fetch_group(
    broker: &Arc<Broker>,
    group_id: &str,
    topics: Option<TopicParts>,
) -> Result<Vec<(String, Vec<sluice_group::FetchedOffset>)>, i16> {
    check(broker, group_id).await?;
    broker.groups.fetch_offsets(group_id, topics.as_deref())
}

pub async fn offset_fetch(
    broker: &Arc<Broker>,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let topics: Option<TopicParts> = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut rg = OffsetFetchResponseGroup::default();
            rg.group_id = g.group_id.clone();
            match fetch_group(broker, &g.group_id, topics).await {
                Ok(found) => {
                    rg.topics = found
                        .into_iter()
                        .map(|(name, parts)| {
                            let mut rt = OffsetFetchResponseTopics::default();
                            rt.name = TopicName(sb(name));
                            rt.partitions = parts
                                .into_iter()
                                .map(|p| {
                                    let mut rp = OffsetFetchResponsePartitions::default();
                                    rp.partition_index = p.partition;
                                    rp.committed_offset = p.offset;
                                    rp.committed_leader_epoch = p.leader_epoch;
                                    rp.metadata = Some(sb(p.metadata));
                                    rp
                                })
                                .collect();
                            rt
                        })
                        .collect();
                }
                Err(code) => rg.error_code = code,
            }
            resp.groups.push(rg);
        }
        return resp;
    }
    let group_id = req.group_id.to_string();
    let requested: Option<TopicParts> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let topic_response = |found: Vec<(String, Vec<sluice_group::FetchedOffset>)>, code: i16| {
        found
            .into_iter()
            .map(|(name, parts)| {
                let mut rt = OffsetFetchResponseTopic::default();
                rt.name = TopicName(sb(name));
                rt.partitions = parts
                    .into_iter()
                    .map(|p| {
                        let mut rp = OffsetFetchResponsePartition::default();
                        rp.partition_index = p.partition;
                        rp.committed_offset = p.offset;
                        rp.committed_leader_epoch = p.leader_epoch;
                        rp.metadata = Some(sb(p.metadata));
                        rp.error_code = code;
                        rp
                    })
                    .collect();
                rt
            })
            .collect::<Vec<_>>()
    };
    match fetch_group(broker, &group_id, requested.clone()).await {
        Ok(found) => resp.topics = topic_response(found, NONE),
        Err(code) if version >= 2 => resp.error_code = code,
        Err(code) => {
            // v1 has no group-level error: report it on every requested partition.
            let placeholder = requested
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| sluice_group::FetchedOffset {
                            partition: p,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: String::new(),
                        })
                        .collect();
                    (t, parts)
                })
                .collect();
            resp.topics = topic_response(placeholder, code);
        }
    }
    resp
}

pub async fn list_groups(
    broker: &Arc<Broker>,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    if let Err(code) = broker.groups.ready(broker).await {
        resp.error_code = code;
        return resp;
    }
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_string()).collect();
    match broker.groups.list(&states, &types) {
        Ok(groups) => {
            resp.groups = groups
                .into_iter()
                .map(|g| {
                    let mut l = ListedGroup::default();
                    l.group_id = GroupId(sb(g.group_id));
                    l.protocol_type = sb(g.protocol_type);
                    if version >= 4 {
                        l.group_state = sb(g.state.name());
                    }
                    if version >= 5 {
                        l.group_type = sb("classic");
                    }
                    l
                })
                .collect();
        }
        Err(code) => resp.error_code = code,
    }
    resp
}

pub async fn describe_groups(
    broker: &Arc<Broker>,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut d = DescribedGroup::default();
        d.group_id = id.clone();
        d.authorized_operations = if version >= 3 && req.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            i32::MIN
        };
        if id.is_empty() {
            d.error_code = INVALID_GROUP_ID;
            resp.groups.push(d);
            continue;
        }
        if let Err(code) = check(broker, &id).await {
            d.error_code = code;
            d.group_state = sb("");
            resp.groups.push(d);
            continue;
        }
        let g = broker.groups.describe(&id);
        d.error_code = g.error;
        d.group_state = sb(g.state.name());
        d.protocol_type = sb(g.protocol_type);
        d.protocol_data = sb(g.protocol);
        if !g.found && g.error == NONE && version >= 6 {
            d.error_code = GROUP_ID_NOT_FOUND;
            d.error_message = Some(sb(format!("Group {} not found.", id.as_str())));
        }
        d.members = g
            .members
            .into_iter()
            .map(|m| {
                let mut r = DescribedGroupMember::default();
                r.member_id = sb(m.member_id);
                r.group_instance_id = if version >= 4 {
                    m.group_instance_id.map(sb)
                } else {
                    None
                };
                r.client_id = sb(m.client_id);
                r.client_host = sb(m.client_host);
                r.member_metadata = m.metadata;
                r.member_assignment = m.assignment;
                r
            })
            .collect();
        resp.groups.push(d);
    }
    resp
}

pub async fn delete_groups(broker: &Arc<Broker>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    let mut ours = Vec::new();
    for id in &req.groups_names {
        match check(broker, id).await {
            Ok(()) => ours.push(id.to_string()),
            Err(code) => {
                let mut r = DeletableGroupResult::default();
                r.group_id = id.clone();
                r.error_code = code;
                resp.results.push(r);
            }
        }
    }
    let errors = broker.groups.delete_groups(&ours).await;
    for (id, e) in ours.into_iter().zip(errors) {
        let mut r = DeletableGroupResult::default();
        r.group_id = GroupId(sb(id));
        r.error_code = e;
        resp.results.push(r);
    }
    resp
}

pub async fn offset_delete(broker: &Arc<Broker>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let mut resp = OffsetDeleteResponse::default();
    let group_id = req.group_id.to_string();
    if let Err(code) = check(broker, &group_id).await {
        resp.error_code = code;
        return resp;
    }
    // Partitions that do not exist get UNKNOWN_TOPIC_OR_PARTITION (as Kafka's metadata
    // check); the coordinator decides for the others.
    let md = broker.metadata();
    let mut unknown: Vec<(String, i32)> = Vec::new();
    let topics: TopicParts = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                if partition_exists(&md, &name, p.partition_index) {
                    parts.push(p.partition_index);
                } else {
                    unknown.push((name.clone(), p.partition_index));
                }
            }
            (name, parts)
        })
        .collect();
    match broker.groups.delete_offsets(&group_id, &topics).await {
        Ok(mut result) => {
            for (name, p) in unknown {
                let entry = match result.iter_mut().position(|(n, _)| *n == name) {
                    Some(i) => &mut result[i].1,
                    None => {
                        result.push((name, Vec::new()));
                        let last = result.len() - 1;
                        &mut result[last].1
                    }
                };
                entry.push((p, UNKNOWN_TOPIC_OR_PARTITION));
            }
            resp.topics = result
                .into_iter()
                .map(|(name, parts)| {
                    let mut rt = OffsetDeleteResponseTopic::default();
                    rt.name = TopicName(sb(name));
                    rt.partitions = parts
                        .into_iter()
                        .map(|(p, e)| {
                            let mut rp = OffsetDeleteResponsePartition::default();
                            rp.partition_index = p;
                            rp.error_code = e;
                            rp
                        })
                        .collect();
                    rt
                })
                .collect();
        }
        Err(code) => resp.error_code = code,
    }
    resp
}
