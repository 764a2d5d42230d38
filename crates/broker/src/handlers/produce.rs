//! Produce: validate the batch, patch offsets in place, append, answer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use sluice_storage::batch::{self, BatchError};

use super::sb;
use crate::codes;
use crate::partition::{Partition, PartitionError, TopicRef};
use crate::state::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    req: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let md = broker.controller.metadata();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name: Option<String> = if version >= 13 {
            md.topic_by_id(&topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.name.to_string())
        };
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let mut r = PartitionProduceResponse::default();
            r.index = p.index;
            r.base_offset = -1;
            r.log_append_time_ms = -1;
            r.log_start_offset = -1;
            let outcome = match &name {
                None => Err((codes::UNKNOWN_TOPIC_ID, "unknown topic id".to_string())),
                Some(_) if !matches!(acks, -1..=1) => Err((
                    codes::INVALID_REQUIRED_ACKS,
                    format!("acks must be 0, 1 or -1 (all), got {acks}"),
                )),
                Some(_) if req.transactional_id.is_some() => Err((
                    codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "transactions are not supported by this broker yet".to_string(),
                )),
                Some(name) => match broker
                    .leader_partition(topic_ref(version, &topic.topic_id, name), p.index)
                {
                    Ok(h) => append(broker, h, p.records).await,
                    Err(code) => Err((code, lookup_message(code, name, p.index))),
                },
            };
            match outcome {
                Ok((base, append_time, start)) => {
                    r.base_offset = base;
                    r.log_append_time_ms = append_time;
                    r.log_start_offset = start;
                }
                Err((code, msg)) => {
                    tracing::debug!(topic = ?name, partition = p.index, code, "produce rejected: {msg}");
                    r.error_code = code;
                    if version >= 8 {
                        r.error_message = Some(sb(msg));
                    }
                }
            }
            parts.push(r);
        }
        let mut t = TopicProduceResponse::default();
        if version >= 13 {
            t.topic_id = topic.topic_id;
        } else {
            t.name = TopicName(sb(name.unwrap_or_default()));
        }
        t.partition_responses = parts;
        responses.push(t);
    }
    if acks == 0 {
        return None;
    }
    let mut resp = ProduceResponse::default();
    resp.responses = responses;
    Some(resp)
}

fn batch_error(e: BatchError) -> (i16, String) {
    let code = match e {
        BatchError::BadMagic(_) | BatchError::Invalid(_) => codes::INVALID_RECORD,
        _ => codes::CORRUPT_MESSAGE,
    };
    (code, e.to_string())
}

/// How a produce request names its topic: by id from v13, by name before.
fn topic_ref<'a>(version: i16, id: &uuid::Uuid, name: &'a str) -> TopicRef<'a> {
    if version >= 13 {
        TopicRef::Id(*id)
    } else {
        TopicRef::Name(name)
    }
}

fn append_error(e: PartitionError) -> (i16, String) {
    (e.code(), e.to_string())
}

/// The error message for a failed partition lookup.
fn lookup_message(code: i16, name: &str, index: i32) -> String {
    match code {
        codes::UNKNOWN_TOPIC_OR_PARTITION => format!("{name}-{index} does not exist"),
        codes::KAFKA_STORAGE_ERROR => format!("{name}-{index} is offline after a storage error"),
        codes::NOT_LEADER_OR_FOLLOWER => format!("this broker is not the leader of {name}-{index}"),
        other => format!("{name}-{index}: {}", codes::name(other)),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Validates and appends one partition's records. Ok = (base offset, log append time, log start).
async fn append(
    broker: &Arc<Broker>,
    h: Arc<Partition>,
    records: Option<Bytes>,
) -> Result<(i64, i64, i64), (i16, String)> {
    let cfg = h.config();
    let records = records.unwrap_or_default();
    if records.is_empty() {
        return Err((
            codes::INVALID_RECORD,
            "produce request without records".into(),
        ));
    }
    let batches = batch::split(&records).map_err(batch_error)?;
    if batches.len() != 1 {
        return Err((
            codes::INVALID_RECORD,
            format!(
                "a produce request must carry exactly one record batch per partition, got {}",
                batches.len()
            ),
        ));
    }
    let (header, _) = batches[0];
    let max = i64::from(cfg.max_message_bytes);
    if header.total_len() as i64 > max {
        return Err((
            codes::MESSAGE_TOO_LARGE,
            format!(
                "batch of {} bytes exceeds max.message.bytes={} of topic {}",
                header.total_len(),
                max,
                h.topic
            ),
        ));
    }
    if header.is_control() {
        return Err((
            codes::INVALID_RECORD,
            "clients may not produce control batches".into(),
        ));
    }
    if header.is_transactional() {
        return Err((
            codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            "transactional batches are not supported by this broker yet".into(),
        ));
    }
    if cfg.message_timestamp_type != "LogAppendTime" && header.max_timestamp >= 0 {
        let now = now_ms();
        let earliest = header.base_timestamp.min(header.max_timestamp);
        if header.max_timestamp > now.saturating_add(cfg.message_timestamp_after_max_ms)
            || earliest < now.saturating_sub(cfg.message_timestamp_before_max_ms)
        {
            return Err((
                codes::INVALID_TIMESTAMP,
                format!(
                    "timestamp {} is outside the range allowed by message.timestamp.before.max.ms={} / after.max.ms={} of topic {}",
                    header.max_timestamp,
                    cfg.message_timestamp_before_max_ms,
                    cfg.message_timestamp_after_max_ms,
                    h.topic
                ),
            ));
        }
    }
    // Compacted topics keep the latest value per key, so every record needs a key.
    if cfg.cleanup_compact {
        let recs = batch::records(&records).map_err(batch_error)?;
        if recs.iter().any(|r| r.key.is_none()) {
            return Err((
                codes::INVALID_RECORD,
                format!(
                    "compacted topic {} requires a non-null key on every record",
                    h.topic
                ),
            ));
        }
    }
    let mut buf = BytesMut::from(&records[..]);
    // Topic-level compression other than `producer`: re-encode with the topic's codec.
    if let Some(target) = target_codec(&cfg.compression_type) {
        if target != header.compression() {
            buf = crate::handlers::produce::recompress(&buf, target)
                .map_err(|e| (codes::CORRUPT_MESSAGE, e))?;
        }
    }
    let log_append = cfg.message_timestamp_type == "LogAppendTime";
    let append_time = if log_append {
        let t = now_ms();
        batch::set_log_append_time(&mut buf, t);
        t
    } else {
        -1
    };
    let len = buf.len() as u64;
    let needs_sync = cfg.flush_messages.is_some_and(|n| n > 0 && n < i64::MAX);
    // Appending as leader advances the high watermark, which wakes this partition's fetches.
    let info = if needs_sync {
        let h2 = h.clone();
        tokio::task::spawn_blocking(move || h2.append_as_leader(buf))
            .await
            .map_err(|e| (codes::KAFKA_STORAGE_ERROR, e.to_string()))?
    } else {
        h.append_as_leader(buf)
    }
    .map_err(append_error)?;
    if !info.duplicate {
        broker.metrics.bytes_in.fetch_add(len, Ordering::Relaxed);
        broker.metrics.topic_bytes(&h.topic, len, true);
        broker
            .metrics
            .topic_messages_in(&h.topic, info.record_count);
    }
    Ok((info.base_offset, append_time, info.log_start_offset))
}

/// Maps a `compression.type` value to a batch codec id; `None` for `producer`.
fn target_codec(compression_type: &str) -> Option<u8> {
    match compression_type {
        "uncompressed" | "none" => Some(0),
        "gzip" => Some(1),
        "snappy" => Some(2),
        "lz4" => Some(3),
        "zstd" => Some(4),
        _ => None,
    }
}

/// Re-encodes one batch with another codec, keeping producer id/epoch/sequence, timestamps,
/// keys, values and headers. (The decoder keeps headers in a map, so duplicate header keys
/// collapse; that is why this path runs only when a topic forces a codec.)
pub(crate) fn recompress(buf: &[u8], codec: u8) -> Result<BytesMut, String> {
    use kafka_protocol::records::{
        Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    };
    let mut src = Bytes::copy_from_slice(buf);
    let set =
        RecordBatchDecoder::decode(&mut src).map_err(|e| format!("cannot decode batch: {e}"))?;
    let compression = match codec {
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => Compression::None,
    };
    let mut out = BytesMut::with_capacity(buf.len());
    RecordBatchEncoder::encode(
        &mut out,
        set.records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| format!("cannot re-encode batch: {e}"))?;
    Ok(out)
}
