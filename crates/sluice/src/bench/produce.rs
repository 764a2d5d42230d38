//! The load-generating producer: batches per partition, several Produce requests in flight
//! per connection, optional idempotence and a rate limit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_client::{
    decode_response, now_ms, BatchBuilder, ClientError, Compression, Pipeline, PipelineFrame,
    ProducerFields, Uuid,
};
use tokio::sync::mpsc;

use super::stats::Stats;

/// Largest Produce request we build (Kafka's `max.request.size` default).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// What one producer does.
#[derive(Debug, Clone)]
pub struct ProducerSpec {
    pub client_id: String,
    pub topic: String,
    pub topic_id: Uuid,
    /// Partitions and their leaders' addresses.
    pub partitions: Vec<(i32, String)>,
    pub num_records: u64,
    pub record_size: usize,
    /// Records per second for this producer (`None`: as fast as possible).
    pub throughput: Option<f64>,
    /// 0, 1 or -1.
    pub acks: i16,
    pub compression: Compression,
    pub batch_size: usize,
    pub linger: Duration,
    /// Producer id and epoch when idempotent.
    pub idempotence: Option<(i64, i16)>,
    pub max_in_flight: usize,
    pub buffer_memory: usize,
    /// Put the wall-clock send time (us since the epoch, big-endian) in each value's first
    /// 8 bytes, for end-to-end latency.
    pub stamp: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// Random upper-case letters, as Kafka's ProducerPerformance generates its payload.
pub fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

/// Microseconds since the Unix epoch.
pub fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Open {
    builder: BatchBuilder,
    first: Instant,
    /// Each record's creation time as microseconds after `first`.
    offsets_us: Vec<u32>,
}

struct Sealed {
    part: usize,
    batch: Bytes,
    records: u64,
    first: Instant,
    offsets_us: Vec<u32>,
}

struct Conn {
    pipe: Pipeline,
    version: i16,
    /// Batches of each request in flight, oldest first.
    in_flight: VecDeque<(Instant, Vec<Sealed>)>,
}

struct Producer {
    spec: ProducerSpec,
    conns: Vec<Conn>,
    /// Connection index of each partition (by position in `spec.partitions`).
    part_conn: Vec<usize>,
    open: Vec<Option<Open>>,
    ready: Vec<VecDeque<Sealed>>,
    sequences: Vec<i32>,
    queued_bytes: usize,
    topic_name: TopicName,
    stats: Arc<Mutex<Stats>>,
}

fn record_latencies(stats: &mut Stats, sealed: &[Sealed], now: Instant) {
    for s in sealed {
        let age = now.saturating_duration_since(s.first);
        let mut i = 0;
        while i < s.offsets_us.len() {
            let off = s.offsets_us[i];
            let mut j = i + 1;
            while j < s.offsets_us.len() && s.offsets_us[j] == off {
                j += 1;
            }
            let lat = age.saturating_sub(Duration::from_micros(u64::from(off)));
            stats.latency(lat, (j - i) as u64);
            i = j;
        }
    }
}

impl Producer {
    fn seal(&mut self, part: usize) -> anyhow::Result<()> {
        let Some(open) = self.open[part].take() else {
            return Ok(());
        };
        let records = open.builder.count();
        let producer = self.spec.idempotence.map(|(id, epoch)| ProducerFields {
            producer_id: id,
            producer_epoch: epoch,
            base_sequence: self.sequences[part],
        });
        if producer.is_some() {
            self.sequences[part] = self.sequences[part].wrapping_add(records) & i32::MAX;
        }
        let batch = open
            .builder
            .finish(self.spec.compression, producer)
            .map_err(anyhow::Error::msg)?;
        self.ready[part].push_back(Sealed {
            part,
            batch,
            records: u64::try_from(records).unwrap_or(0),
            first: open.first,
            offsets_us: open.offsets_us,
        });
        Ok(())
    }

    fn on_frame(&mut self, frame: PipelineFrame) -> anyhow::Result<()> {
        let c = frame.tag;
        let body = frame.body?;
        let conn = &mut self.conns[c];
        let sent = conn.pipe.complete(&body)?;
        let resp = decode_response::<ProduceRequest>(body, sent.version, sent.correlation_id)
            .map_err(|m| anyhow::anyhow!("{}: {m}", conn.pipe.addr()))?;
        let Some((_, batches)) = conn.in_flight.pop_front() else {
            bail!("{}: a Produce response without a request", conn.pipe.addr());
        };
        for b in &batches {
            let partition = self.spec.partitions[b.part].0;
            let pr = resp
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == partition)
                .with_context(|| {
                    format!("the Produce response lacks {}-{partition}", self.spec.topic)
                })?;
            let message = pr.error_message.as_deref().map(str::to_owned);
            ClientError::check(pr.error_code, message.as_deref(), || {
                format!("produce to {}-{partition}", self.spec.topic)
            })?;
        }
        self.completed(&batches, Instant::now());
        Ok(())
    }

    fn completed(&mut self, batches: &[Sealed], now: Instant) {
        let records: u64 = batches.iter().map(|b| b.records).sum();
        let bytes = records * self.spec.record_size as u64;
        self.queued_bytes = self
            .queued_bytes
            .saturating_sub(usize::try_from(bytes).unwrap_or(usize::MAX));
        let Ok(mut stats) = self.stats.lock() else {
            return;
        };
        record_latencies(&mut stats, batches, now);
        stats.done(records, bytes, now);
    }

    /// Sends the ready batches the connections have room for (one batch per partition per
    /// request, as Kafka's producer drains them).
    async fn send_ready(&mut self) -> anyhow::Result<()> {
        for c in 0..self.conns.len() {
            loop {
                let acks0 = self.spec.acks == 0;
                if !acks0 && self.conns[c].pipe.in_flight() >= self.spec.max_in_flight {
                    break;
                }
                let mut batches = Vec::new();
                let mut size = 0;
                for p in 0..self.ready.len() {
                    if self.part_conn[p] != c {
                        continue;
                    }
                    let fits = self.ready[p]
                        .front()
                        .is_some_and(|b| size == 0 || size + b.batch.len() <= MAX_REQUEST_BYTES);
                    if fits {
                        if let Some(b) = self.ready[p].pop_front() {
                            size += b.batch.len();
                            batches.push(b);
                        }
                    }
                }
                if batches.is_empty() {
                    break;
                }
                let mut td = TopicProduceData::default();
                td.name = self.topic_name.clone();
                td.topic_id = self.spec.topic_id;
                td.partition_data = batches
                    .iter()
                    .map(|b| {
                        let mut pd = PartitionProduceData::default();
                        pd.index = self.spec.partitions[b.part].0;
                        pd.records = Some(b.batch.clone());
                        pd
                    })
                    .collect();
                let mut req = ProduceRequest::default();
                req.acks = self.spec.acks;
                req.timeout_ms =
                    i32::try_from(self.spec.request_timeout.as_millis()).unwrap_or(i32::MAX);
                req.topic_data = vec![td];
                let conn = &mut self.conns[c];
                conn.pipe.send(&req, conn.version, !acks0).await?;
                if acks0 {
                    self.completed(&batches, Instant::now());
                } else {
                    conn.in_flight.push_back((Instant::now(), batches));
                }
            }
        }
        Ok(())
    }

    fn idle(&self) -> bool {
        self.open.iter().all(Option::is_none)
            && self.ready.iter().all(VecDeque::is_empty)
            && self.conns.iter().all(|c| c.in_flight.is_empty())
    }
}

/// Runs one producer to completion, adding to `stats`.
pub async fn run(
    spec: ProducerSpec,
    stats: Arc<Mutex<Stats>>,
    start: Instant,
) -> anyhow::Result<()> {
    if spec.partitions.is_empty() {
        bail!("topic '{}' has no partitions", spec.topic);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut addrs: Vec<String> = Vec::new();
    let mut part_conn = Vec::new();
    for (_, addr) in &spec.partitions {
        let i = match addrs.iter().position(|a| a == addr) {
            Some(i) => i,
            None => {
                addrs.push(addr.clone());
                addrs.len() - 1
            }
        };
        part_conn.push(i);
    }
    let mut conns = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let pipe = Pipeline::connect(
            addr,
            &spec.client_id,
            spec.connect_timeout,
            spec.request_timeout,
            i,
            tx.clone(),
        )
        .await?;
        let version = pipe.version_for::<ProduceRequest>()?;
        if version >= 13 && spec.topic_id.is_nil() {
            bail!(
                "{addr} wants topic ids (Produce v13) but gave none for '{}'",
                spec.topic
            );
        }
        conns.push(Conn {
            pipe,
            version,
            in_flight: VecDeque::new(),
        });
    }
    drop(tx);
    let n = spec.partitions.len();
    let payload = payload(spec.record_size, 0x5eed ^ spec.num_records);
    let mut p = Producer {
        topic_name: TopicName(StrBytes::from_string(spec.topic.clone())),
        spec,
        conns,
        part_conn,
        open: (0..n).map(|_| None).collect(),
        ready: (0..n).map(|_| VecDeque::new()).collect(),
        sequences: vec![0; n],
        queued_bytes: 0,
        stats,
    };
    let total = p.spec.num_records;
    let mut generated: u64 = 0;
    let mut cur = 0usize;
    let mut value = payload.clone();
    let record_size = p.spec.record_size;
    loop {
        while let Ok(frame) = rx.try_recv() {
            p.on_frame(frame)?;
        }
        let now = Instant::now();
        let allowed = match p.spec.throughput {
            None => total,
            Some(r) => {
                total.min((now.saturating_duration_since(start).as_secs_f64() * r) as u64 + 1)
            }
        };
        if generated < allowed && p.queued_bytes < p.spec.buffer_memory {
            let ts = now_ms();
            if p.spec.stamp && value.len() >= 8 {
                value[..8].copy_from_slice(&wall_us().to_be_bytes());
            }
            let mut round = 0;
            while generated < allowed && p.queued_bytes < p.spec.buffer_memory && round < 4096 {
                let open = p.open[cur].get_or_insert_with(|| Open {
                    builder: BatchBuilder::new(p.spec.batch_size.max(record_size + 64)),
                    first: now,
                    offsets_us: Vec::new(),
                });
                open.builder.push(ts, None, &value);
                let off = now.saturating_duration_since(open.first).as_micros();
                open.offsets_us.push(u32::try_from(off).unwrap_or(u32::MAX));
                let full = open.builder.size() + record_size >= p.spec.batch_size;
                generated += 1;
                round += 1;
                p.queued_bytes += record_size;
                if full {
                    p.seal(cur)?;
                    cur = (cur + 1) % n;
                }
            }
        }
        // A batch is ready when full (sealed above), when it lingered long enough, when the
        // buffer is exhausted, or when nothing more will be added.
        let flush = generated == total || p.queued_bytes >= p.spec.buffer_memory;
        for part in 0..n {
            let due = p.open[part]
                .as_ref()
                .is_some_and(|o| flush || now.saturating_duration_since(o.first) >= p.spec.linger);
            if due {
                p.seal(part)?;
                if part == cur {
                    cur = (cur + 1) % n;
                }
            }
        }
        p.send_ready().await?;
        if generated == total && p.idle() {
            return Ok(());
        }
        let can_generate = generated < total
            && p.queued_bytes < p.spec.buffer_memory
            && p.spec.throughput.is_none();
        if can_generate {
            tokio::task::yield_now().await;
            continue;
        }
        // Wait for an answer, the next record the rate allows, or a batch's linger.
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let Some(r) = p.spec.throughput {
            if generated < total && p.queued_bytes < p.spec.buffer_memory {
                at(start + Duration::from_secs_f64(generated as f64 / r));
            }
        }
        for o in p.open.iter().flatten() {
            at(o.first + p.spec.linger);
        }
        let oldest = p
            .conns
            .iter()
            .filter_map(|c| c.in_flight.front().map(|(t, _)| *t))
            .min();
        if let Some(t) = oldest {
            at(t + p.spec.request_timeout);
        }
        let Some(wake) = wake else {
            bail!("the producer has nothing to wait for (a bug)");
        };
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(f) => p.on_frame(f)?,
                None => bail!("every connection closed"),
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                if let Some(t) = oldest {
                    if Instant::now() >= t + p.spec.request_timeout {
                        bail!("no Produce response within {} ms", p.spec.request_timeout.as_millis());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_upper_case_letters() {
        let p = payload(1000, 1);
        assert_eq!(p.len(), 1000);
        assert!(p.iter().all(u8::is_ascii_uppercase));
        assert!(p.iter().any(|&b| b != p[0]));
    }

    #[test]
    fn latencies_count_every_record() {
        let t0 = Instant::now();
        let mut stats = Stats::new(t0);
        let sealed = vec![Sealed {
            part: 0,
            batch: Bytes::new(),
            records: 4,
            first: t0,
            offsets_us: vec![0, 0, 1000, 3000],
        }];
        record_latencies(&mut stats, &sealed, t0 + Duration::from_millis(5));
        stats.done(4, 4, t0 + Duration::from_millis(5));
        let s = stats.summary(t0 + Duration::from_millis(5));
        assert!((s.latency_ms.max - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.latency_ms.p50 - 5.0).abs() < 0.01 || (s.latency_ms.p50 - 4.0).abs() < 0.01);
        // Records sent 0, 0, 1 and 3 ms after the first, all acknowledged at 5 ms: 5, 5, 4, 2.
        assert!((s.latency_ms.avg - 4.0).abs() < 0.01, "{s:?}");
    }
}
