//! DeleteRecords (KIP-107): move a partition's log start offset forward, on the leader and
//! then (through their fetches) on every live follower; the answer waits for the low
//! watermark, the smallest log start over the live replicas, as Kafka's does.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use sluice_storage::StorageError;

use crate::codes;
use crate::partition::TopicRef;
use crate::state::Broker;

pub async fn handle(broker: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(u64::try_from(req.timeout_ms.max(0)).unwrap_or(0));
    let md = broker.metadata();
    let alive: std::collections::BTreeSet<i32> = md
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.node_id)
        .collect();
    let node = broker.config.node_id;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let mut r = DeleteRecordsPartitionResult::default();
            r.partition_index = p.partition_index;
            r.low_watermark = -1;
            match broker.leader_partition(TopicRef::Name(&name), p.partition_index) {
                Err(code) => r.error_code = code,
                Ok(h) if !h.config().cleanup_delete => {
                    // Kafka only deletes records of topics whose cleanup.policy includes delete.
                    r.error_code = codes::POLICY_VIOLATION;
                }
                Ok(h) => {
                    // -1 means "up to the high watermark".
                    let target = if p.offset == -1 {
                        h.high_watermark()
                    } else {
                        p.offset
                    };
                    let outcome = if target < 0 || target > h.high_watermark() {
                        Err(StorageError::OffsetOutOfRange {
                            requested: target,
                            log_start: h.log.log_start_offset(),
                            log_end: h.log.log_end_offset(),
                        })
                    } else {
                        tokio::task::block_in_place(|| h.log.delete_records_before(target))
                    };
                    match outcome {
                        Ok(start) => {
                            if h.wait_low_watermark(start, &alive, node, deadline).await {
                                r.low_watermark = h.low_watermark(&alive, node);
                            } else if h.is_leader() {
                                r.error_code = codes::REQUEST_TIMED_OUT;
                            } else {
                                r.error_code = codes::NOT_LEADER_OR_FOLLOWER;
                            }
                        }
                        Err(e) => {
                            if !matches!(e, StorageError::OffsetOutOfRange { .. }) {
                                tracing::error!(topic = %name, partition = p.partition_index, "delete records failed: {e}");
                            }
                            r.error_code = codes::storage_error(&e);
                        }
                    }
                }
            }
            parts.push(r);
        }
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name;
        tr.partitions = parts;
        topics.push(tr);
    }
    let mut resp = DeleteRecordsResponse::default();
    resp.topics = topics;
    resp
}
