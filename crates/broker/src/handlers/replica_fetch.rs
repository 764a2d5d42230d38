//! Fetch from a follower (a request with a replica id): the leader's side of replication.
//!
//! Differences from a consumer's fetch: the follower reads up to the log end, not the high
//! watermark; its fetch offset is its log end offset, which the leader records (advancing
//! the high watermark and, once it has caught up, proposing it back into the ISR); and a
//! follower whose last fetched epoch ends earlier in the leader's log than its fetch offset
//! is told where the logs diverge (`DivergingEpoch`, KIP-320) instead of getting records.
//! A parked follower fetch wakes on appends and on high-watermark changes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use sluice_storage::StorageError;
use tokio::sync::futures::Notified;
use uuid::Uuid;

use super::sb;
use crate::codes;
use crate::partition::mono_ms;
use crate::replica::throttle::Throttle;
use crate::state::Broker;

/// Longest a follower's fetch may park.
const MAX_WAIT_CAP: Duration = Duration::from_secs(10);

/// Answers a follower's fetch. `replica` and `broker_epoch` come from `ReplicaState` (v15+)
/// or the old `replica_id` field (epoch -1).
pub async fn handle(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
    replica: i32,
    broker_epoch: i64,
) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let resolved = super::fetch::resolve(broker, &req, version);
        let mut waits: Vec<Pin<Box<Notified<'_>>>> = Vec::new();
        for p in resolved.iter().flatten().flatten() {
            waits.push(Box::pin(p.appended()));
            waits.push(Box::pin(p.high_watermark_changed()));
        }
        for w in &mut waits {
            w.as_mut().enable();
        }
        let (topics, bytes, urgent) =
            read_once(broker, &req, version, &resolved, replica, broker_epoch);
        if bytes >= i64::from(req.min_bytes).max(1)
            || urgent
            || tokio::time::Instant::now() >= deadline
        {
            let mut resp = FetchResponse::default();
            resp.responses = topics;
            return resp;
        }
        tokio::select! {
            _ = super::fetch::any_ready(&mut waits) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// One pass. Returns (topics, bytes, whether an error or divergence needs answering now).
fn read_once(
    broker: &Arc<Broker>,
    req: &FetchRequest,
    version: i16,
    resolved: &super::fetch::Resolved,
    replica: i32,
    broker_epoch: i64,
) -> (Vec<FetchableTopicResponse>, i64, bool) {
    let mut budget = super::fetch::response_budget(broker, req.max_bytes);
    let mut total = 0i64;
    let mut urgent = false;
    let mut out = Vec::with_capacity(req.topics.len());
    let throttle = Throttle::leader(
        broker.metadata(),
        &broker.config.settings,
        broker.config.node_id,
    );
    let quota = &broker.replication.leader_quota;
    for (topic, found) in req.topics.iter().zip(resolved) {
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for (fp, found) in topic.partitions.iter().zip(found) {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            pd.records = Some(Bytes::new());
            let p = match found {
                Ok(p) => p,
                Err(code) => {
                    pd.error_code = *code;
                    urgent = true;
                    parts.push(pd);
                    continue;
                }
            };
            let fenced = p.check_leader_epoch(fp.current_leader_epoch);
            if fenced != codes::NONE {
                pd.error_code = fenced;
                urgent = true;
                parts.push(pd);
                continue;
            }
            // KIP-320: does the follower's last fetched epoch end before its fetch offset
            // in our log? Then tell it where, and send nothing.
            if fp.last_fetched_epoch >= 0 {
                match p.log.end_offset_for_epoch(fp.last_fetched_epoch) {
                    Ok(Some((epoch, end)))
                        if end < fp.fetch_offset || epoch < fp.last_fetched_epoch =>
                    {
                        pd.diverging_epoch.epoch = epoch;
                        pd.diverging_epoch.end_offset = end;
                        pd.high_watermark = p.high_watermark();
                        pd.last_stable_offset = pd.high_watermark;
                        pd.log_start_offset = p.log.log_start_offset();
                        urgent = true;
                        parts.push(pd);
                        continue;
                    }
                    _ => {}
                }
            }
            p.record_follower_log_start(replica, fp.log_start_offset);
            if let Some(change) = p.on_follower_fetch(replica, broker_epoch, fp.fetch_offset) {
                crate::replica::isr::propose(broker, p.clone(), change);
            }
            pd.high_watermark = p.high_watermark();
            pd.last_stable_offset = pd.high_watermark;
            pd.log_start_offset = p.log.log_start_offset();
            let part_max = i64::from(fp.partition_max_bytes.max(0));
            let limit = part_max.min(budget).max(0);
            if limit == 0 && total > 0 {
                parts.push(pd);
                continue;
            }
            // A throttled replica out of the ISR gets nothing while the quota is used up.
            let throttled =
                throttle.applies(&p.topic, p.index) && !p.replica_set().isr.contains(&replica);
            if throttled && throttle.exceeded(quota, mono_ms()) {
                parts.push(pd);
                continue;
            }
            // Followers are brokers of this cluster, bounded by their own
            // replica.fetch.response.max.bytes: they do not compete with consumers for the
            // fetch-response pool, so consumer load can never starve replication.
            match p.log.read(fp.fetch_offset, limit as usize, i64::MAX) {
                Ok(info) => {
                    let n = info.data.len() as i64;
                    if throttled {
                        quota.record(n as u64, mono_ms());
                    }
                    total += n;
                    budget -= n;
                    pd.records = Some(info.data);
                    pd.log_start_offset = info.log_start_offset;
                }
                Err(e) => {
                    if !matches!(e, StorageError::OffsetOutOfRange { .. }) {
                        tracing::error!(topic = %p.topic, partition = fp.partition, "replica read failed: {e}");
                    }
                    pd.error_code = codes::storage_error(&e);
                    urgent = true;
                }
            }
            parts.push(pd);
        }
        let mut t = FetchableTopicResponse::default();
        if version >= 13 {
            t.topic_id = topic.topic_id;
        } else {
            t.topic = TopicName(sb(topic.topic.to_string()));
            t.topic_id = Uuid::nil();
        }
        t.partitions = parts;
        out.push(t);
    }
    (out, total, urgent)
}
