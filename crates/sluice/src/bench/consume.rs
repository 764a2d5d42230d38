//! The load-generating consumer: one Fetch in flight per leader, the next one sent as soon as
//! the previous answer's batch headers say where to continue, before its records are read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_client::{
    decode_response, next_offset_after, walk_batches, ClientError, Pipeline, PipelineFrame, Uuid,
};
use tokio::sync::mpsc;

use super::produce::wall_us;
use super::stats::Stats;

/// What one consumer does.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub client_id: String,
    pub topic: String,
    pub topic_id: Uuid,
    /// Partition, start offset, leader address.
    pub positions: Vec<(i32, i64, String)>,
    pub num_records: u64,
    pub fetch_max_bytes: i32,
    pub partition_max_bytes: i32,
    pub max_wait: Duration,
    /// Stop when no record arrived for this long.
    pub idle_timeout: Duration,
    pub check_crcs: bool,
    /// Latency per record from the send time stamped in its value (e2e) instead of the
    /// fetch round trip.
    pub end_to_end: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// How a consumer run ended.
#[derive(Debug, Clone)]
pub struct ConsumeOutcome {
    /// Next offset of each partition.
    pub positions: BTreeMap<i32, i64>,
    /// True when it stopped on the idle timeout before reading every record.
    pub timed_out: bool,
}

struct Conn {
    pipe: Pipeline,
    version: i16,
    partitions: Vec<i32>,
    sent_at: Instant,
}

fn fetch_request(
    spec: &ConsumerSpec,
    partitions: &[i32],
    positions: &BTreeMap<i32, i64>,
) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = i32::try_from(spec.max_wait.as_millis()).unwrap_or(i32::MAX);
    req.min_bytes = 1;
    req.max_bytes = spec.fetch_max_bytes;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(spec.topic.clone()));
    t.topic_id = spec.topic_id;
    t.partitions = partitions
        .iter()
        .map(|&p| {
            let mut fp = FetchPartition::default();
            fp.partition = p;
            fp.current_leader_epoch = -1;
            fp.fetch_offset = positions.get(&p).copied().unwrap_or(0);
            fp.last_fetched_epoch = -1;
            fp.log_start_offset = -1;
            fp.partition_max_bytes = spec.partition_max_bytes;
            fp
        })
        .collect();
    req.topics = vec![t];
    req
}

/// Reads `spec.num_records` records (or until the idle timeout), adding to `stats`.
pub async fn run(spec: ConsumerSpec, stats: Arc<Mutex<Stats>>) -> anyhow::Result<ConsumeOutcome> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PipelineFrame>();
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (p, offset, addr) in &spec.positions {
        positions.insert(*p, *offset);
        by_leader.entry(addr.clone()).or_default().push(*p);
    }
    let mut conns = Vec::new();
    for (i, (addr, partitions)) in by_leader.into_iter().enumerate() {
        let pipe = Pipeline::connect(
            &addr,
            &spec.client_id,
            spec.connect_timeout,
            spec.request_timeout,
            i,
            tx.clone(),
        )
        .await?;
        let version = pipe.version_for::<FetchRequest>()?;
        if version >= 13 && spec.topic_id.is_nil() {
            bail!(
                "{addr} wants topic ids (Fetch v13) but gave none for '{}'",
                spec.topic
            );
        }
        conns.push(Conn {
            pipe,
            version,
            partitions,
            sent_at: Instant::now(),
        });
    }
    drop(tx);
    let mut consumed: u64 = 0;
    if spec.num_records == 0 || conns.is_empty() {
        return Ok(ConsumeOutcome {
            positions,
            timed_out: false,
        });
    }
    for c in &mut conns {
        let req = fetch_request(&spec, &c.partitions, &positions);
        c.sent_at = Instant::now();
        c.pipe.send(&req, c.version, true).await?;
    }
    let mut last_progress = Instant::now();
    let mut timed_out = false;
    while consumed < spec.num_records {
        let deadline = last_progress + spec.idle_timeout;
        let frame = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => bail!("every connection closed"),
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                timed_out = true;
                break;
            }
        };
        let c = frame.tag;
        let body = frame.body?;
        let conn = &mut conns[c];
        let sent = conn.pipe.complete(&body)?;
        let round_trip = conn.sent_at.elapsed();
        let resp = decode_response::<FetchRequest>(body, sent.version, sent.correlation_id)
            .map_err(|m| anyhow::anyhow!("{}: {m}", conn.pipe.addr()))?;
        ClientError::check(resp.error_code, None, || "fetch".into())?;
        // Where each partition continues, from the batch headers alone.
        let mut work = Vec::new();
        for pd in resp.responses.iter().flat_map(|t| t.partitions.iter()) {
            let p = pd.partition_index;
            ClientError::check(pd.error_code, None, || {
                format!("fetch from {}-{p}", spec.topic)
            })?;
            let Some(data) = pd.records.as_ref().filter(|d| !d.is_empty()) else {
                continue;
            };
            let from = positions.get(&p).copied().unwrap_or(0);
            if let Some(next) = next_offset_after(data) {
                positions.insert(p, next.max(from));
            }
            work.push((p, from, data.clone()));
        }
        // Ask for more at once, then read what came.
        let req = fetch_request(&spec, &conn.partitions, &positions);
        conn.sent_at = Instant::now();
        conn.pipe.send(&req, conn.version, true).await?;
        let mut records = 0u64;
        let mut bytes = 0u64;
        let mut e2e: Vec<u64> = Vec::new();
        let want = spec.num_records - consumed;
        for (p, from, data) in work {
            walk_batches(&data, from, spec.check_crcs, |_, key, value| {
                if records >= want {
                    return;
                }
                records += 1;
                bytes += (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64;
                if spec.end_to_end {
                    if let Some(v) = value.and_then(|v| v.get(..8)) {
                        let mut ts = [0u8; 8];
                        ts.copy_from_slice(v);
                        e2e.push(u64::from_be_bytes(ts));
                    }
                }
            })
            .map_err(|m| anyhow::anyhow!("{}-{p}: {m}", spec.topic))?;
        }
        let now = Instant::now();
        if records > 0 {
            last_progress = now;
            consumed += records;
            let Ok(mut s) = stats.lock() else {
                bail!("statistics lock poisoned");
            };
            if spec.end_to_end {
                let now_us = wall_us();
                for sent_us in e2e {
                    s.latency(Duration::from_micros(now_us.saturating_sub(sent_us)), 1);
                }
            } else {
                s.latency(round_trip, records);
            }
            s.done(records, bytes, now);
        }
    }
    Ok(ConsumeOutcome {
        positions,
        timed_out,
    })
}

/// The leader address of each partition, from metadata.
pub fn leaders(
    md: &sluice_client::ClusterMetadata,
    topic: &str,
) -> anyhow::Result<(Uuid, Vec<(i32, String)>)> {
    let t = md
        .topics
        .iter()
        .find(|t| t.name == topic)
        .with_context(|| format!("topic '{topic}' is not in the metadata"))?;
    let mut out = Vec::new();
    for p in &t.partitions {
        let b = md
            .brokers
            .iter()
            .find(|b| b.id == p.leader)
            .with_context(|| format!("{topic}-{} has no live leader", p.partition))?;
        out.push((p.partition, b.addr()));
    }
    Ok((t.topic_id, out))
}
