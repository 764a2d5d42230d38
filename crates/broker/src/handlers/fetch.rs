//! Fetch: serve stored batches as bytes, long-polling until `min_bytes` or `max_wait_ms`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use sluice_storage::StorageError;
use tokio::sync::futures::Notified;
use uuid::Uuid;

use super::{sb, CloseConnection};
use crate::codes;
use crate::memory::Lease;
use crate::partition::{Partition, TopicRef};
use crate::state::Broker;

/// Longest long-poll we honour, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(60);

/// Each requested partition, per topic, resolved through the leader lookup.
pub(super) type Resolved = Vec<Vec<Result<Arc<Partition>, i16>>>;

pub async fn handle(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
) -> Result<FetchResponse, CloseConnection> {
    // A follower's fetch (KIP-903 `ReplicaState` from v15, `replica_id` before).
    let (replica, replica_epoch) = if version >= 15 {
        (
            req.replica_state.replica_id.0,
            req.replica_state.replica_epoch,
        )
    } else {
        (req.replica_id.0, -1)
    };
    if replica >= 0 {
        return Ok(
            super::replica_fetch::handle(broker, req, version, replica, replica_epoch).await,
        );
    }
    if req.session_id != 0 {
        // We never hand out session ids, so a client can't have one of ours.
        let mut resp = FetchResponse::default();
        resp.error_code = codes::FETCH_SESSION_ID_NOT_FOUND;
        return Ok(resp);
    }
    // A fetch that names no partitions (a client closing its fetch session sends one) has
    // nothing to wait for: answer at once, as Kafka does.
    let no_partitions = req.topics.iter().all(|t| t.partitions.is_empty());
    let wait = if no_partitions {
        Duration::ZERO
    } else {
        Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP)
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Resolve, then register on each partition's high-watermark waiters *before* reading,
        // so a change between the read and the wait can't be missed.
        let resolved = resolve(broker, &req, version);
        let mut waits: Vec<Pin<Box<Notified<'_>>>> = resolved
            .iter()
            .flatten()
            .flatten()
            .map(|p| Box::pin(p.high_watermark_changed()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        let mut leases = Vec::new();
        let (topics, bytes, errors) = read_once(broker, &req, version, &resolved, &mut leases);
        let done = bytes >= i64::from(req.min_bytes).max(1)
            || errors
            || tokio::time::Instant::now() >= deadline;
        if done {
            crate::memory::hold_until_written(leases);
            broker
                .metrics
                .bytes_out
                .fetch_add(bytes as u64, Ordering::Relaxed);
            let mut resp = FetchResponse::default();
            resp.responses = topics;
            add_leader_hints(broker, version, &mut resp);
            return Ok(resp);
        }
        tokio::select! {
            _ = any_ready(&mut waits) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The bytes one fetch response may carry: the client's `max_bytes` (none: unlimited), capped
/// by the broker's `fetch.max.bytes`.
pub(super) fn response_budget(broker: &Broker, asked: i32) -> i64 {
    let cap = broker
        .config
        .settings
        .get_i32("fetch.max.bytes")
        .filter(|c| *c > 0)
        .unwrap_or(57_671_680);
    let asked = if asked <= 0 { i32::MAX } else { asked };
    i64::from(asked.min(cap))
}

/// Completes when any of the waits does (a high watermark of a requested partition moved).
pub(super) async fn any_ready(waits: &mut [Pin<Box<Notified<'_>>>]) {
    std::future::poll_fn(|cx| {
        for w in waits.iter_mut() {
            if w.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Looks up every requested partition (by topic id from v13, by name before).
pub(super) fn resolve(broker: &Broker, req: &FetchRequest, version: i16) -> Resolved {
    req.topics
        .iter()
        .map(|topic| {
            topic
                .partitions
                .iter()
                .map(|p| {
                    let tref = if version >= 13 {
                        TopicRef::Id(topic.topic_id)
                    } else {
                        TopicRef::Name(&topic.topic)
                    };
                    broker.leader_partition(tref, p.partition)
                })
                .collect()
        })
        .collect()
}

/// KIP-951: `current_leader` (v12+) on partitions refused because another broker leads them,
/// and `node_endpoints` (v16+) for those leaders.
fn add_leader_hints(broker: &Broker, version: i16, resp: &mut FetchResponse) {
    use super::leader_hint::{current_leader, endpoints, wants_hint};
    if version < 12 {
        return;
    }
    let md = broker.metadata();
    let mut hinted = std::collections::BTreeSet::new();
    for t in &mut resp.responses {
        let name = if version >= 13 {
            md.topic_by_id(&t.topic_id).map(|x| x.name.clone())
        } else {
            Some(t.topic.to_string())
        };
        let Some(name) = name else { continue };
        for p in &mut t.partitions {
            if !wants_hint(p.error_code) {
                continue;
            }
            if let Some((id, epoch)) = current_leader(&md, &name, p.partition_index) {
                p.current_leader.leader_id = kafka_protocol::messages::BrokerId(id);
                p.current_leader.leader_epoch = epoch;
                hinted.insert(id);
            }
        }
    }
    if version >= 16 {
        resp.node_endpoints = endpoints(&md, &hinted)
            .into_iter()
            .map(|(id, host, port, rack)| {
                let mut e = kafka_protocol::messages::fetch_response::NodeEndpoint::default();
                e.node_id = kafka_protocol::messages::BrokerId(id);
                e.host = sb(host);
                e.port = port;
                e.rack = rack.map(sb);
                e
            })
            .collect();
    }
}

/// One pass over the requested partitions. Returns (topics, record bytes, any partition error).
fn read_once(
    broker: &Broker,
    req: &FetchRequest,
    version: i16,
    resolved: &Resolved,
    leases: &mut Vec<Lease>,
) -> (Vec<FetchableTopicResponse>, i64, bool) {
    let md = broker.metadata();
    let mut budget = response_budget(broker, req.max_bytes);
    let mut total: i64 = 0;
    let mut any_error = false;
    let read_committed = req.isolation_level == 1;
    let mut out = Vec::with_capacity(req.topics.len());
    for (topic, found) in req.topics.iter().zip(resolved) {
        let name: Option<String> = if version >= 13 {
            md.topic_by_id(&topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.topic.to_string())
        };
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for (p, found) in topic.partitions.iter().zip(found) {
            let mut pd = PartitionData::default();
            pd.partition_index = p.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            pd.records = Some(Bytes::new());
            if read_committed {
                pd.aborted_transactions = Some(Vec::new());
            }
            let h = match found {
                Ok(h) => h,
                Err(code) => {
                    pd.error_code = *code;
                    any_error = true;
                    parts.push(pd);
                    continue;
                }
            };
            let name = &h.topic;
            let fenced = h.check_leader_epoch(p.current_leader_epoch);
            if fenced != codes::NONE {
                pd.error_code = fenced;
                any_error = true;
                parts.push(pd);
                continue;
            }
            // Consumers read committed data only: up to the high watermark.
            let hw = h.high_watermark();
            pd.high_watermark = hw;
            pd.last_stable_offset = hw;
            pd.log_start_offset = h.log.log_start_offset();
            // Budget for this partition: the smaller of the partition and remaining response
            // limits; the first batch of the response is served even when larger (KIP-74).
            let part_max = i64::from(p.partition_max_bytes.max(0));
            let limit = part_max.min(budget).max(0);
            if limit == 0 && total > 0 {
                parts.push(pd);
                continue;
            }
            // The bytes read are leased from the broker's memory pool; with the pool used up
            // the partition is answered without data (the fetch waits and is answered
            // smaller), never with an allocation beyond it.
            let mut lease = broker
                .fetch_memory
                .acquire_up_to(usize::try_from(limit).unwrap_or(0));
            if lease.bytes() == 0 && limit > 0 {
                parts.push(pd);
                continue;
            }
            match h.log.read(p.fetch_offset, lease.bytes(), hw) {
                Ok(info) => {
                    let n = info.data.len() as i64;
                    lease.shrink_to(info.data.len());
                    leases.push(lease);
                    if n > limit && total > 0 {
                        // Oversized first batch allowed only as the very first data.
                    } else {
                        total += n;
                        budget -= n;
                        if n > 0 {
                            broker.metrics.topic_bytes(name, n as u64, false);
                        }
                        pd.records = Some(info.data);
                    }
                    pd.log_start_offset = info.log_start_offset;
                }
                Err(e) => {
                    if !matches!(e, StorageError::OffsetOutOfRange { .. }) {
                        tracing::error!(topic = %name, partition = p.partition, "read failed: {e}");
                    }
                    pd.error_code = codes::storage_error(&e);
                    any_error = true;
                }
            }
            parts.push(pd);
        }
        let mut t = FetchableTopicResponse::default();
        if version >= 13 {
            t.topic_id = topic.topic_id;
        } else {
            t.topic = TopicName(sb(name.unwrap_or_default()));
            t.topic_id = Uuid::nil();
        }
        t.partitions = parts;
        out.push(t);
    }
    (out, total, any_error)
}
