//! ListOffsets and OffsetForLeaderEpoch.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use crate::codes;
use crate::partition::TopicRef;
use crate::state::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let mut r = ListOffsetsPartitionResponse::default();
            r.partition_index = p.partition_index;
            r.offset = -1;
            r.timestamp = -1;
            match broker.leader_partition(TopicRef::Name(&name), p.partition_index) {
                Err(code) => r.error_code = code,
                Ok(h) => {
                    let code = h.check_leader_epoch(p.current_leader_epoch);
                    // A new leader whose high watermark has not reached its epoch start yet.
                    let not_available = if version >= 5 {
                        codes::OFFSET_NOT_AVAILABLE
                    } else {
                        codes::LEADER_NOT_AVAILABLE
                    };
                    let lagging = h.offsets_not_available().is_some();
                    if code != codes::NONE {
                        r.error_code = code;
                    } else if lagging && p.timestamp == LATEST {
                        r.error_code = not_available;
                    } else {
                        let found: Result<Option<(i64, i64)>, _> = match p.timestamp {
                            // read_uncommitted consumers see up to the high watermark.
                            LATEST => Ok(Some((h.high_watermark(), -1))),
                            EARLIEST | EARLIEST_LOCAL => Ok(Some((h.log.log_start_offset(), -1))),
                            MAX_TIMESTAMP => h.log.max_timestamp(),
                            ts if ts >= 0 => h.log.offset_for_timestamp(ts),
                            _ => Ok(None),
                        };
                        match found {
                            // A timestamp lookup only finds committed records.
                            Ok(Some((offset, _)))
                                if (p.timestamp >= 0 || p.timestamp == MAX_TIMESTAMP)
                                    && offset >= h.high_watermark() =>
                            {
                                if lagging {
                                    r.error_code = not_available;
                                }
                            }
                            Ok(Some((offset, ts))) => {
                                r.offset = offset;
                                r.timestamp = ts;
                                if version >= 4 {
                                    r.leader_epoch = h.leader_epoch();
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::error!(topic = %name, partition = p.partition_index, "list offsets failed: {e}");
                                r.error_code = codes::storage_error(&e);
                            }
                        }
                    }
                }
            }
            parts.push(r);
        }
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name;
        tr.partitions = parts;
        topics.push(tr);
    }
    let mut resp = ListOffsetsResponse::default();
    resp.topics = topics;
    resp
}

pub fn offset_for_leader_epoch(
    broker: &Broker,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.topic.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let mut r = EpochEndOffset::default();
            r.partition = p.partition;
            r.leader_epoch = -1;
            r.end_offset = -1;
            match broker.leader_partition(TopicRef::Name(&name), p.partition) {
                Err(code) => r.error_code = code,
                Ok(h) => {
                    let code = h.check_leader_epoch(p.current_leader_epoch);
                    let epoch = h.leader_epoch();
                    if code != codes::NONE {
                        r.error_code = code;
                    } else if p.leader_epoch == epoch {
                        // The current epoch ends at the log end (not the high watermark:
                        // this is about the log's contents, as in Kafka).
                        r.leader_epoch = epoch;
                        r.end_offset = h.log.log_end_offset();
                    } else if p.leader_epoch < epoch {
                        match h.log.end_offset_for_epoch(p.leader_epoch) {
                            Ok(Some((e, off))) => {
                                r.leader_epoch = e;
                                r.end_offset = off;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::error!(topic = %name, partition = p.partition, "epoch lookup failed: {e}");
                                r.error_code = codes::storage_error(&e);
                            }
                        }
                    }
                }
            }
            parts.push(r);
        }
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic;
        tr.partitions = parts;
        topics.push(tr);
    }
    let mut resp = OffsetForLeaderEpochResponse::default();
    resp.topics = topics;
    resp
}
