//! Produce: validate the batch, patch offsets in place, append, answer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use sluice_storage::batch::{self, BatchError, BatchHeader, RecordInfo};

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
    let md = broker.metadata();
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(u64::try_from(req.timeout_ms.max(0)).unwrap_or(0));
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut hinted = std::collections::BTreeSet::new();
    // acks=all writes waiting for the high watermark: (topic #, partition #, partition,
    // offset the high watermark must reach, leader epoch of the append).
    let mut replicating: Vec<(usize, usize, Arc<Partition>, i64, i32)> = Vec::new();
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
                None => Err(Refusal::new(codes::UNKNOWN_TOPIC_ID, "unknown topic id")),
                Some(_) if !matches!(acks, -1..=1) => Err(Refusal::new(
                    codes::INVALID_REQUIRED_ACKS,
                    format!("acks must be 0, 1 or -1 (all), got {acks}"),
                )),
                Some(_) if req.transactional_id.is_some() => Err(Refusal::new(
                    codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "transactions are not supported by this broker yet",
                )),
                Some(name) => match broker
                    .leader_partition(topic_ref(version, &topic.topic_id, name), p.index)
                {
                    Ok(h) => append(broker, h, p.records, acks).await,
                    Err(code) => Err(Refusal::new(code, lookup_message(code, name, p.index))),
                },
            };
            match outcome {
                Ok(done) => {
                    r.base_offset = done.base_offset;
                    r.log_append_time_ms = done.append_time;
                    r.log_start_offset = done.log_start;
                    if let Some((h, required, epoch)) = done.replicate {
                        replicating.push((responses.len(), parts.len(), h, required, epoch));
                    }
                }
                Err(refusal) => {
                    tracing::debug!(
                        topic = ?name,
                        partition = p.index,
                        code = refusal.code,
                        "produce rejected: {}",
                        refusal.message
                    );
                    r.error_code = refusal.code;
                    if version >= 10 && super::leader_hint::wants_hint(refusal.code) {
                        if let Some((id, epoch)) = name
                            .as_deref()
                            .and_then(|n| super::leader_hint::current_leader(&md, n, p.index))
                        {
                            r.current_leader.leader_id = kafka_protocol::messages::BrokerId(id);
                            r.current_leader.leader_epoch = epoch;
                            hinted.insert(id);
                        }
                    }
                    // error_message and record_errors (KIP-467) exist from v8.
                    if version >= 8 {
                        r.error_message = Some(sb(refusal.message));
                        r.record_errors = refusal
                            .record_errors
                            .into_iter()
                            .map(|(index, msg)| {
                                let mut e = BatchIndexAndErrorMessage::default();
                                e.batch_index = index;
                                e.batch_index_error_message = Some(sb(msg));
                                e
                            })
                            .collect();
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
    for (ti, pi, h, required, epoch) in replicating {
        let code = h.wait_replicated(required, epoch, deadline).await;
        if code == codes::NONE {
            continue;
        }
        if let Some(r) = responses
            .get_mut(ti)
            .and_then(|t: &mut TopicProduceResponse| t.partition_responses.get_mut(pi))
        {
            r.error_code = code;
            r.base_offset = -1;
            if version >= 8 {
                r.error_message = Some(sb(match code {
                    codes::REQUEST_TIMED_OUT => format!(
                        "{}-{} was not replicated to the in-sync replicas within the request timeout",
                        h.topic, h.index
                    ),
                    codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND => format!(
                        "{}-{}: the write was appended but the ISR shrank below min.insync.replicas",
                        h.topic, h.index
                    ),
                    _ => lookup_message(code, &h.topic, h.index),
                }));
            }
        }
    }
    let mut resp = ProduceResponse::default();
    resp.responses = responses;
    if version >= 10 {
        resp.node_endpoints = super::leader_hint::endpoints(&md, &hinted)
            .into_iter()
            .map(|(id, host, port, rack)| {
                let mut e = kafka_protocol::messages::produce_response::NodeEndpoint::default();
                e.node_id = kafka_protocol::messages::BrokerId(id);
                e.host = sb(host);
                e.port = port;
                e.rack = rack.map(sb);
                e
            })
            .collect();
    }
    Some(resp)
}

/// Why a partition's records were refused: the code and message of the partition response and,
/// when the refusal is because of some records only, which ones (KIP-467 `record_errors`:
/// index of the record in its batch and why). Clients fail the listed records with `code`
/// and the others with their "invalid different record" error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: i16,
    pub message: String,
    pub record_errors: Vec<(i32, String)>,
}

impl Refusal {
    fn new(code: i16, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            record_errors: Vec::new(),
        }
    }
}

impl From<(i16, String)> for Refusal {
    fn from((code, message): (i16, String)) -> Refusal {
        Refusal::new(code, message)
    }
}

/// What record-level validation needs to know about the topic and the moment (Kafka's
/// `LogValidator.validateRecord`, for magic v2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordRules<'a> {
    /// `topic-partition`, as Kafka names it in messages.
    pub topic_partition: &'a str,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// `message.timestamp.type=CreateTime` (otherwise LogAppendTime).
    pub create_time: bool,
    pub before_max_ms: i64,
    pub after_max_ms: i64,
    pub now: i64,
}

impl RecordRules<'_> {
    /// Whether the records must be decoded to validate them. With the default
    /// `message.timestamp.before.max.ms` (unbounded) only a timestamp above now + after can
    /// fail, and the header's `maxTimestamp` bounds those, so an ordinary batch to a
    /// non-compacted topic is never decoded.
    fn need_records(&self, header: &BatchHeader) -> bool {
        self.compacted
            || header.timestamp_type_log_append()
            || (self.create_time
                && (self.before_max_ms != i64::MAX
                    || header.max_timestamp.wrapping_sub(self.now) > self.after_max_ms))
    }
}

/// One record's problem, as Kafka's `LogValidator.validateRecord` finds it: the key rule
/// first, then the timestamp. `batch_log_append` is the batch's own timestamp type.
fn record_error(
    rec: &RecordInfo,
    batch_log_append: bool,
    rules: &RecordRules<'_>,
) -> Option<(i16, String)> {
    if rules.compacted && rec.key.is_none() {
        return Some((
            codes::INVALID_RECORD,
            format!(
                "Compacted topic cannot accept message without key in topic partition {}",
                rules.topic_partition
            ),
        ));
    }
    if rules.create_time && rec.timestamp != -1 {
        // Java's long arithmetic, so the bounds behave exactly as Kafka's at the extremes.
        let diff = rules.now.wrapping_sub(rec.timestamp);
        if diff > rules.before_max_ms || diff.wrapping_neg() > rules.after_max_ms {
            return Some((
                codes::INVALID_TIMESTAMP,
                format!(
                    "Timestamp {} of message with offset {} is out of range. The timestamp should be within [{}, {}]",
                    rec.timestamp,
                    rec.offset,
                    rules.now.wrapping_sub(rules.before_max_ms),
                    rules.now.wrapping_add(rules.after_max_ms)
                ),
            ));
        }
    } else if batch_log_append {
        return Some((
            codes::INVALID_TIMESTAMP,
            format!(
                "Invalid timestamp type in message with offset {}. Producer should not set timestamp type to LogAppendTime.",
                rec.offset
            ),
        ));
    }
    None
}

/// Validates every record of a batch; `Some` refuses the whole batch with the per-record
/// errors (Kafka's `processRecordErrors`: INVALID_TIMESTAMP if any record has a bad
/// timestamp, else INVALID_RECORD).
pub(crate) fn validate_records(
    recs: &[RecordInfo],
    batch_log_append: bool,
    rules: &RecordRules<'_>,
) -> Option<Refusal> {
    let mut errors = Vec::new();
    let mut any_timestamp = false;
    for (i, rec) in recs.iter().enumerate() {
        let index = i32::try_from(i).unwrap_or(i32::MAX);
        if let Some((code, msg)) = record_error(rec, batch_log_append, rules) {
            any_timestamp |= code == codes::INVALID_TIMESTAMP;
            errors.push((index, msg));
        }
    }
    if errors.is_empty() {
        return None;
    }
    let (code, message) = if any_timestamp {
        (
            codes::INVALID_TIMESTAMP,
            "One or more records have been rejected due to invalid timestamp".to_string(),
        )
    } else {
        let shown: Vec<String> = errors
            .iter()
            .take(3)
            .map(|(i, m)| format!("RecordError(batchIndex={i}, message='{m}')"))
            .collect();
        (
            codes::INVALID_RECORD,
            format!(
                "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
                errors.len(),
                shown.join(", ")
            ),
        )
    };
    Some(Refusal {
        code,
        message,
        record_errors: errors,
    })
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

/// A partition's accepted write: its offsets and, for acks=all, what to wait for.
struct Appended {
    base_offset: i64,
    append_time: i64,
    log_start: i64,
    /// acks=all: (partition, offset the high watermark must reach, leader epoch).
    replicate: Option<(Arc<Partition>, i64, i32)>,
}

/// Validates and appends one partition's records.
async fn append(
    broker: &Arc<Broker>,
    h: Arc<Partition>,
    records: Option<Bytes>,
    acks: i16,
) -> Result<Appended, Refusal> {
    let cfg = h.config();
    let records = records.unwrap_or_default();
    if records.is_empty() {
        return Err(Refusal::new(
            codes::INVALID_RECORD,
            "produce request without records",
        ));
    }
    // The one check of framing and CRC on the way in; the log trusts it.
    let checked = batch::Checked::new(records).map_err(batch_error)?;
    let header = match checked.parts() {
        [(header, _)] => *header,
        parts => {
            return Err(Refusal::new(
                codes::INVALID_RECORD,
                format!(
                    "a produce request must carry exactly one record batch per partition, got {}",
                    parts.len()
                ),
            ))
        }
    };
    let max = i64::from(cfg.max_message_bytes);
    if header.total_len() as i64 > max {
        return Err(Refusal::new(
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
        return Err(Refusal::new(
            codes::INVALID_RECORD,
            "clients may not produce control batches",
        ));
    }
    if header.is_transactional() {
        return Err(Refusal::new(
            codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            "transactional batches are not supported by this broker yet",
        ));
    }
    // Record-level rules (keys on compacted topics, timestamps): refused per record (KIP-467).
    let tp = format!("{}-{}", h.topic, h.index);
    let rules = RecordRules {
        topic_partition: &tp,
        compacted: cfg.cleanup_compact,
        create_time: cfg.message_timestamp_type != "LogAppendTime",
        before_max_ms: cfg.message_timestamp_before_max_ms,
        after_max_ms: cfg.message_timestamp_after_max_ms,
        now: now_ms(),
    };
    if rules.need_records(&header) {
        let recs = batch::records_checked(checked.data(), &header).map_err(batch_error)?;
        if let Some(refusal) = validate_records(&recs, header.timestamp_type_log_append(), &rules) {
            return Err(refusal);
        }
    }
    // Topic-level compression other than `producer` re-encodes with the topic's codec, and
    // LogAppendTime rewrites the timestamp (and CRC): only then are the bytes copied, and
    // checked again as the new batch they are.
    let recode = target_codec(&cfg.compression_type).filter(|t| *t != header.compression());
    let log_append = cfg.message_timestamp_type == "LogAppendTime";
    let append_time = if log_append { now_ms() } else { -1 };
    let checked = if recode.is_some() || log_append {
        let mut buf = match recode {
            Some(target) => recompress(checked.data(), target)
                .map_err(|e| Refusal::new(codes::CORRUPT_MESSAGE, e))?,
            None => BytesMut::from(&checked.data()[..]),
        };
        if log_append {
            batch::set_log_append_time(&mut buf, append_time);
        }
        batch::Checked::new(buf.freeze()).map_err(batch_error)?
    } else {
        checked
    };
    // acks=all is refused before the append while the ISR is below min.insync.replicas.
    if acks == -1 {
        h.check_enough_replicas().map_err(|code| {
            Refusal::new(
                code,
                format!(
                    "{}-{}: the in-sync replicas are fewer than min.insync.replicas={}",
                    h.topic, h.index, cfg.min_insync_replicas
                ),
            )
        })?;
    }
    let epoch = h.leader_epoch();
    let len = checked.data().len() as u64;
    // An append that may fsync (a `flush.messages` or `flush.ms` policy) runs off the async
    // workers, so a slow disk stalls this partition's producers, not every connection.
    let needs_sync = cfg.flush_messages.is_some_and(|n| n > 0 && n < i64::MAX)
        || cfg.flush_ms.is_some_and(|ms| (0..i64::MAX).contains(&ms));
    // Appending as leader advances the high watermark, which wakes this partition's fetches.
    let info = if needs_sync {
        let h2 = h.clone();
        tokio::task::spawn_blocking(move || h2.append_as_leader(&checked))
            .await
            .map_err(|e| Refusal::new(codes::KAFKA_STORAGE_ERROR, e.to_string()))?
    } else {
        h.append_as_leader(&checked)
    }
    .map_err(append_error)?;
    if !info.duplicate {
        broker.metrics.bytes_in.fetch_add(len, Ordering::Relaxed);
        broker.metrics.topic_bytes(&h.topic, len, true);
        broker
            .metrics
            .topic_messages_in(&h.topic, info.record_count);
    }
    let replicate = (acks == -1).then(|| (h.clone(), info.last_offset + 1, epoch));
    Ok(Appended {
        base_offset: info.base_offset,
        append_time,
        log_start: info.log_start_offset,
        replicate,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn rec(offset: i64, timestamp: i64, key: Option<&'static [u8]>) -> RecordInfo {
        RecordInfo {
            offset,
            timestamp,
            key: key.map(Bytes::from_static),
            value_is_null: false,
        }
    }

    fn rules(compacted: bool) -> RecordRules<'static> {
        RecordRules {
            topic_partition: "t-0",
            compacted,
            create_time: true,
            before_max_ms: i64::MAX,
            after_max_ms: 3_600_000,
            now: NOW,
        }
    }

    #[test]
    fn keyless_records_on_compacted_topic_are_listed_one_by_one() {
        let recs = [
            rec(0, NOW, Some(b"a")),
            rec(1, NOW, None),
            rec(2, NOW, Some(b"b")),
            rec(3, NOW, None),
        ];
        let r = validate_records(&recs, false, &rules(true)).expect("refused");
        assert_eq!(r.code, codes::INVALID_RECORD);
        let idx: Vec<i32> = r.record_errors.iter().map(|e| e.0).collect();
        assert_eq!(idx, vec![1, 3]);
        assert_eq!(
            r.record_errors[0].1,
            "Compacted topic cannot accept message without key in topic partition t-0"
        );
        assert!(
            r.message.starts_with("One or more records have been rejected due to 2 record errors in total, and only showing the first three errors at most: [RecordError(batchIndex=1, message='Compacted topic"),
            "{}",
            r.message
        );
        // Keys are only required on compacted topics.
        assert_eq!(validate_records(&recs, false, &rules(false)), None);
    }

    #[test]
    fn timestamps_out_of_range_are_listed_and_win_over_key_errors() {
        let mut rules = rules(true);
        rules.before_max_ms = 1_000;
        let recs = [
            rec(0, NOW, Some(b"a")),
            rec(1, NOW + 3_600_001, Some(b"b")), // after now + after.max.ms
            rec(2, NOW - 1_001, Some(b"c")),     // before now - before.max.ms
            rec(3, NOW, None),                   // keyless: INVALID_RECORD
            rec(4, -1, Some(b"d")),              // no timestamp: not checked
            rec(5, NOW + 3_600_000, Some(b"e")), // at the bound: fine
        ];
        let r = validate_records(&recs, false, &rules).expect("refused");
        assert_eq!(r.code, codes::INVALID_TIMESTAMP);
        assert_eq!(
            r.message,
            "One or more records have been rejected due to invalid timestamp"
        );
        let idx: Vec<i32> = r.record_errors.iter().map(|e| e.0).collect();
        assert_eq!(idx, vec![1, 2, 3]);
        assert_eq!(
            r.record_errors[0].1,
            format!(
                "Timestamp {} of message with offset 1 is out of range. The timestamp should be within [{}, {}]",
                NOW + 3_600_001,
                NOW - 1_000,
                NOW + 3_600_000
            )
        );
    }

    #[test]
    fn log_append_time_topics_skip_timestamp_checks_but_refuse_producer_log_append_batches() {
        let mut rules = rules(false);
        rules.create_time = false;
        let recs = [rec(0, NOW + 10 * 3_600_000, Some(b"a"))];
        assert_eq!(validate_records(&recs, false, &rules), None);
        let r = validate_records(&recs, true, &rules).expect("refused");
        assert_eq!(r.code, codes::INVALID_TIMESTAMP);
        assert_eq!(r.record_errors.len(), 1);
    }

    #[test]
    fn default_bounds_extremes_behave_like_java_longs() {
        // before.max.ms = Long.MAX_VALUE never refuses an old timestamp...
        let recs = [rec(0, -2, Some(b"a")), rec(1, 0, Some(b"b"))];
        assert_eq!(validate_records(&recs, false, &rules(false)), None);
        // ...but now - Long.MIN_VALUE overflows in Java and reads as "too far ahead".
        let r = validate_records(&[rec(0, i64::MIN, Some(b"a"))], false, &rules(false));
        assert_eq!(r.map(|r| r.code), Some(codes::INVALID_TIMESTAMP));
    }
}
