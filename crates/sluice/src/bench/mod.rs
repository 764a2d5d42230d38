//! `sluice bench`: producer-perf, consumer-perf and end-to-end latency in one tool.
//!
//! It drives any Kafka-compatible broker with its own load generator (`produce.rs`: batches
//! per partition, several Produce requests in flight per connection; `consume.rs`: the next
//! Fetch sent before the last answer's records are read). Progress goes to stderr once a
//! second; the summary (records/s, MB/s, latency avg/p50/p95/p99/p99.9/max from an HDR
//! histogram) to stdout, as text or `--output json`; `--plot FILE.svg` draws the run.

mod consume;
mod plot;
mod produce;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use sluice_client::{
    Acks, Client, ClientError, Compression, Membership, MembershipConfig, NewTopic, OffsetSpec,
};

use crate::cli::{CommonArgs, OutputFormat};
use consume::{ConsumeOutcome, ConsumerSpec};
use produce::ProducerSpec;
use stats::{progress_line, summary_line, Stats, Summary};

/// `sluice bench ...`
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Produce records as fast as possible (or at --throughput); report throughput and
    /// latency from send to acknowledgement.
    Produce(ProduceBenchArgs),
    /// Read records from a topic (assigned partitions, or as a group member); report
    /// throughput and fetch round-trip latency.
    Consume(ConsumeBenchArgs),
    /// Produce and consume at once; report end-to-end latency (send time stamped in the
    /// record's first 8 bytes to the moment the consumer reads it).
    E2e(E2eBenchArgs),
}

/// Summary output and plot.
#[derive(Debug, Clone, Args)]
struct ReportArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Draw throughput and latency percentiles over the run into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse()
}

/// Producer settings, with Kafka's producer defaults.
#[derive(Debug, Clone, Args)]
struct ProducerOpts {
    /// Topic (created with --partitions if it does not exist).
    #[arg(long)]
    topic: String,
    /// Records to produce (in total, over all producers).
    #[arg(long, value_name = "N")]
    num_records: u64,
    /// Value size in bytes (random upper-case letters; no key).
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    record_size: usize,
    /// Records per second in total; -1 or absent: as fast as possible.
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    throughput: Option<f64>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Partitions of the topic if it has to be created (default 1).
    #[arg(long, value_name = "P")]
    partitions: Option<i32>,
    /// Replication factor of the topic if it has to be created (default: the broker's).
    #[arg(long, value_name = "RF")]
    replication_factor: Option<i16>,
    /// Independent producers (each with its own connections), sharing the records.
    #[arg(long, value_name = "K", default_value_t = 1)]
    producers: usize,
    /// Largest batch per partition in bytes (Kafka's batch.size).
    #[arg(long, value_name = "BYTES", default_value_t = 16384)]
    batch_size: usize,
    /// How long a batch may wait for more records (Kafka's linger.ms).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    linger_ms: u64,
    /// Idempotent producer (needs --acks all; at most 5 requests in flight).
    #[arg(long)]
    idempotence: bool,
    /// Produce requests in flight per connection.
    #[arg(long, value_name = "M", default_value_t = 5)]
    max_in_flight: usize,
    /// Bytes of records a producer may hold unacknowledged (Kafka's buffer.memory).
    #[arg(long, value_name = "BYTES", default_value_t = 32 * 1024 * 1024)]
    buffer_memory: usize,
}

#[derive(Debug, Clone, Args)]
struct ProduceBenchArgs {
    #[command(flatten)]
    producer: ProducerOpts,
    #[command(flatten)]
    report: ReportArgs,
}

/// Consumer settings, with Kafka's consumer defaults.
#[derive(Debug, Clone, Args)]
struct ConsumerOpts {
    /// Consume as a member of this group (committed offsets, else --from-latest or the
    /// earliest); without it every partition is assigned directly.
    #[arg(long)]
    group: Option<String>,
    /// Limit for one Fetch response (fetch.max.bytes).
    #[arg(long, value_name = "BYTES", default_value_t = 52_428_800)]
    fetch_max_bytes: i32,
    /// Limit per partition in one Fetch (max.partition.fetch.bytes).
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    max_partition_fetch_bytes: i32,
    /// How long the broker may hold a Fetch for data (fetch.max.wait.ms).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    fetch_max_wait_ms: u64,
    /// Stop when no record arrived for this long.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,
    /// Skip the CRC check of fetched batches (check.crcs=false).
    #[arg(long)]
    no_check_crcs: bool,
}

#[derive(Debug, Clone, Args)]
struct ConsumeBenchArgs {
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Records to read.
    #[arg(long, value_name = "N")]
    num_records: u64,
    /// Start at the end of each partition instead of the beginning (without a committed
    /// offset).
    #[arg(long)]
    from_latest: bool,
    #[command(flatten)]
    consumer: ConsumerOpts,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Debug, Clone, Args)]
struct E2eBenchArgs {
    #[command(flatten)]
    producer: ProducerOpts,
    #[command(flatten)]
    consumer: ConsumerOpts,
    #[command(flatten)]
    report: ReportArgs,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `sluice bench ...`.
pub async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    match args.command {
        BenchCommand::Produce(a) => produce_bench(a).await,
        BenchCommand::Consume(a) => consume_bench(a).await,
        BenchCommand::E2e(a) => e2e_bench(a).await,
    }
}

/// Makes sure `topic` exists (creating it with `partitions`) and returns its id and the
/// leader address of each partition.
async fn prepare_topic(
    client: &mut Client,
    topic: &str,
    create: Option<(i32, i16)>,
) -> anyhow::Result<(sluice_client::Uuid, Vec<(i32, String)>)> {
    match client.topic(topic).await {
        Ok(_) => {}
        Err(ClientError::UnknownTopic(_)) if create.is_some() => {
            let (partitions, rf) = create.unwrap_or((1, -1));
            let results = client
                .create_topics(
                    &[NewTopic {
                        name: topic.to_owned(),
                        partitions,
                        replication_factor: rf,
                        configs: Vec::new(),
                    }],
                    false,
                )
                .await?;
            for (_, r) in results {
                match r {
                    Ok(_)
                    | Err(ClientError::Kafka {
                        code: sluice_client::KafkaCode(36),
                        ..
                    }) => {}
                    Err(e) => return Err(e).context(format!("creating topic '{topic}'")),
                }
            }
            client.topic(topic).await?;
        }
        Err(e) => return Err(e.into()),
    }
    // A new partition's leader may not act as one yet (Kafka answers NOT_LEADER_OR_FOLLOWER
    // for a moment after CreateTopics): ListOffsets, retried, waits for every leader.
    client.list_offsets(topic, &[], OffsetSpec::Latest).await?;
    let md = client.metadata(Some(&[topic.to_owned()])).await?;
    consume::leaders(&md, topic)
}

fn producer_specs(
    o: &ProducerOpts,
    topic_id: sluice_client::Uuid,
    leaders: &[(i32, String)],
    idempotence: Option<(i64, i16)>,
    stamp: bool,
) -> Vec<ProducerSpec> {
    let k = o.producers.max(1) as u64;
    (0..k)
        .map(|i| ProducerSpec {
            client_id: format!("sluice-bench-producer-{i}"),
            topic: o.topic.clone(),
            topic_id,
            partitions: leaders.to_vec(),
            num_records: o.num_records / k + u64::from(i < o.num_records % k),
            record_size: o.record_size,
            throughput: o.throughput.filter(|r| *r > 0.0).map(|r| r / k as f64),
            acks: match o.acks {
                Acks::None => 0,
                Acks::Leader => 1,
                Acks::All => -1,
            },
            compression: o.compression,
            batch_size: o.batch_size.max(1),
            linger: Duration::from_millis(o.linger_ms),
            idempotence,
            max_in_flight: o.max_in_flight.max(1),
            buffer_memory: o.buffer_memory.max(o.record_size),
            stamp,
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        })
        .collect()
}

fn check_producer_opts(o: &ProducerOpts, stamp: bool) -> anyhow::Result<()> {
    if o.idempotence {
        if o.acks != Acks::All {
            bail!("--idempotence needs --acks all");
        }
        if o.max_in_flight > 5 {
            bail!("--idempotence allows at most 5 requests in flight per connection (--max-in-flight {})", o.max_in_flight);
        }
    }
    if stamp && o.record_size < 8 {
        bail!("e2e needs --record-size of at least 8 (the send time is stamped in the value)");
    }
    if o.producers == 0 {
        bail!("--producers must be at least 1");
    }
    Ok(())
}

async fn connect(common: &CommonArgs) -> anyhow::Result<Client> {
    Ok(Client::connect(sluice_client::ClientConfig {
        bootstrap: common.bootstrap_server.clone(),
        client_id: "sluice-bench".into(),
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
        retries: 8,
    })
    .await?)
}

/// Prints a progress line per second for each (verb, stats) until dropped.
struct Progress(tokio::task::JoinHandle<()>);

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn progress(quiet: bool, sides: Vec<(&'static str, Arc<Mutex<Stats>>)>) -> Progress {
    Progress(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = Instant::now();
            for (verb, s) in &sides {
                let Ok(mut s) = s.lock() else { return };
                let sample = s.tick(now);
                if !quiet {
                    eprintln!("{}", progress_line(verb, &sample));
                }
            }
        }
    }))
}

async fn run_producers(
    specs: Vec<ProducerSpec>,
    stats: Arc<Mutex<Stats>>,
    start: Instant,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for spec in specs {
        let stats = Arc::clone(&stats);
        tasks.push(tokio::spawn(produce::run(spec, stats, start)));
    }
    for t in tasks {
        t.await.context("producer task")??;
    }
    Ok(())
}

fn summary(stats: &Arc<Mutex<Stats>>) -> anyhow::Result<Summary> {
    let mut s = stats
        .lock()
        .map_err(|_| anyhow::anyhow!("statistics lock poisoned"))?;
    Ok(s.summary(Instant::now()))
}

fn config_json(o: &ProducerOpts) -> serde_json::Value {
    json!({
        "record_size": o.record_size,
        "throughput": o.throughput.filter(|r| *r > 0.0),
        "acks": match o.acks { Acks::None => "0", Acks::Leader => "1", Acks::All => "all" },
        "compression": o.compression.name(),
        "producers": o.producers,
        "batch_size": o.batch_size,
        "linger_ms": o.linger_ms,
        "idempotence": o.idempotence,
        "max_in_flight": o.max_in_flight,
    })
}

fn emit(report: &ReportArgs, text: &[String], doc: serde_json::Value) -> anyhow::Result<()> {
    match report.common.output {
        OutputFormat::Json => println!("{doc}"),
        OutputFormat::Table => {
            for line in text {
                println!("{line}");
            }
        }
    }
    Ok(())
}

async fn produce_bench(a: ProduceBenchArgs) -> anyhow::Result<i32> {
    let o = &a.producer;
    check_producer_opts(o, false)?;
    let mut client = connect(&a.report.common).await?;
    let create = Some((
        o.partitions.unwrap_or(1),
        o.replication_factor.unwrap_or(-1),
    ));
    let (topic_id, leaders) = prepare_topic(&mut client, &o.topic, create).await?;
    let mut specs = Vec::new();
    for spec in producer_specs(o, topic_id, &leaders, None, false) {
        let mut spec = spec;
        if o.idempotence {
            spec.idempotence = Some(client.init_producer_id().await?);
        }
        specs.push(spec);
    }
    let start = Instant::now();
    let stats = Arc::new(Mutex::new(Stats::new(start)));
    let ticker = progress(a.report.quiet, vec![("sent", Arc::clone(&stats))]);
    run_producers(specs, Arc::clone(&stats), start).await?;
    drop(ticker);
    let s = summary(&stats)?;
    if let Some(path) = &a.report.plot {
        plot::draw(
            path,
            &format!("sluice bench produce: {}", o.topic),
            "latency",
            &s.series,
        )?;
    }
    let doc = json!({
        "mode": "produce",
        "bootstrap": a.report.common.bootstrap_server,
        "topic": o.topic,
        "partitions": leaders.len(),
        "config": config_json(o),
        "records": s.records,
        "bytes": s.bytes,
        "elapsed_s": s.elapsed_s,
        "records_per_sec": s.records_per_sec,
        "mb_per_sec": s.mb_per_sec,
        "latency_ms": s.latency_ms,
        "series": s.series,
    });
    emit(&a.report, &[summary_line("sent", &s, "latency")], doc)?;
    Ok(0)
}

/// Start offsets of every partition of `topic`, and the group membership when `group` is set.
async fn consumer_positions(
    client: &mut Client,
    topic: &str,
    leaders: &[(i32, String)],
    group: Option<&str>,
    from_latest: bool,
) -> anyhow::Result<(Vec<(i32, i64, String)>, Option<Membership>)> {
    let spec = if from_latest {
        OffsetSpec::Latest
    } else {
        OffsetSpec::Earliest
    };
    let addr_of = |p: i32| {
        leaders
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, a)| a.clone())
            .with_context(|| format!("{topic}-{p} has no leader"))
    };
    let Some(group) = group else {
        let offsets = client.list_offsets(topic, &[], spec).await?;
        let mut out = Vec::new();
        for (p, o) in offsets {
            out.push((p, o, addr_of(p)?));
        }
        return Ok((out, None));
    };
    let mut membership = Membership::new(MembershipConfig::new(group, vec![topic.to_owned()]));
    let assignment = membership
        .join(client)
        .await
        .with_context(|| format!("joining consumer group '{group}'"))?;
    let committed: BTreeMap<i32, i64> = client
        .committed_offsets(group)
        .await?
        .into_iter()
        .filter(|c| c.topic == topic)
        .map(|c| (c.partition, c.offset))
        .collect();
    let mine: Vec<i32> = assignment
        .into_iter()
        .filter(|(t, _)| t == topic)
        .flat_map(|(_, ps)| ps)
        .collect();
    let missing: Vec<i32> = mine
        .iter()
        .copied()
        .filter(|p| !committed.contains_key(p))
        .collect();
    let reset = if missing.is_empty() {
        BTreeMap::new()
    } else {
        client.list_offsets(topic, &missing, spec).await?
    };
    let mut out = Vec::new();
    for p in mine {
        let Some(o) = committed.get(&p).or_else(|| reset.get(&p)).copied() else {
            bail!("no start offset for {topic}-{p}");
        };
        out.push((p, o, addr_of(p)?));
    }
    Ok((out, Some(membership)))
}

async fn finish_group(
    client: &mut Client,
    topic: &str,
    membership: Option<Membership>,
    outcome: &ConsumeOutcome,
) {
    let Some(mut m) = membership else { return };
    let offsets: Vec<(String, i32, i64)> = outcome
        .positions
        .iter()
        .map(|(p, o)| (topic.to_owned(), *p, *o))
        .collect();
    if let Err(e) = m.commit(client, &offsets).await {
        eprintln!(
            "warning: could not commit offsets of group '{}': {e}",
            m.group()
        );
    }
    if let Err(e) = m.leave(client).await {
        eprintln!("warning: could not leave group '{}': {e}", m.group());
    }
}

fn consumer_spec(
    topic: &str,
    topic_id: sluice_client::Uuid,
    positions: Vec<(i32, i64, String)>,
    num_records: u64,
    o: &ConsumerOpts,
    end_to_end: bool,
) -> ConsumerSpec {
    ConsumerSpec {
        client_id: "sluice-bench-consumer".into(),
        topic: topic.to_owned(),
        topic_id,
        positions,
        num_records,
        fetch_max_bytes: o.fetch_max_bytes,
        partition_max_bytes: o.max_partition_fetch_bytes,
        max_wait: Duration::from_millis(o.fetch_max_wait_ms),
        idle_timeout: Duration::from_millis(o.timeout_ms.max(1)),
        check_crcs: !o.no_check_crcs,
        end_to_end,
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
    }
}

fn timeout_warning(outcome: &ConsumeOutcome, s: &Summary, want: u64, timeout_ms: u64) {
    if outcome.timed_out {
        eprintln!(
            "warning: stopped after {} of {want} records: nothing arrived for {timeout_ms} ms",
            s.records
        );
    }
}

async fn consume_bench(a: ConsumeBenchArgs) -> anyhow::Result<i32> {
    let mut client = connect(&a.report.common).await?;
    let (topic_id, leaders) = prepare_topic(&mut client, &a.topic, None).await?;
    let (positions, membership) = consumer_positions(
        &mut client,
        &a.topic,
        &leaders,
        a.consumer.group.as_deref(),
        a.from_latest,
    )
    .await?;
    let spec = consumer_spec(
        &a.topic,
        topic_id,
        positions,
        a.num_records,
        &a.consumer,
        false,
    );
    let start = Instant::now();
    let stats = Arc::new(Mutex::new(Stats::new(start)));
    let ticker = progress(a.report.quiet, vec![("received", Arc::clone(&stats))]);
    let outcome = consume::run(spec, Arc::clone(&stats)).await;
    drop(ticker);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let empty = ConsumeOutcome {
                positions: BTreeMap::new(),
                timed_out: false,
            };
            if let Some(mut m) = membership {
                let _ = m.leave(&mut client).await;
            }
            let _ = empty;
            return Err(e);
        }
    };
    finish_group(&mut client, &a.topic, membership, &outcome).await;
    let s = summary(&stats)?;
    timeout_warning(&outcome, &s, a.num_records, a.consumer.timeout_ms);
    if let Some(path) = &a.report.plot {
        plot::draw(
            path,
            &format!("sluice bench consume: {}", a.topic),
            "fetch latency",
            &s.series,
        )?;
    }
    let doc = json!({
        "mode": "consume",
        "bootstrap": a.report.common.bootstrap_server,
        "topic": a.topic,
        "group": a.consumer.group,
        "partitions": leaders.len(),
        "records": s.records,
        "bytes": s.bytes,
        "elapsed_s": s.elapsed_s,
        "records_per_sec": s.records_per_sec,
        "mb_per_sec": s.mb_per_sec,
        "latency_ms": s.latency_ms,
        "timed_out": outcome.timed_out,
        "positions": outcome.positions,
        "series": s.series,
    });
    emit(
        &a.report,
        &[summary_line("received", &s, "fetch latency")],
        doc,
    )?;
    Ok(if outcome.timed_out { 3 } else { 0 })
}

async fn e2e_bench(a: E2eBenchArgs) -> anyhow::Result<i32> {
    let o = &a.producer;
    check_producer_opts(o, true)?;
    let mut client = connect(&a.report.common).await?;
    let create = Some((
        o.partitions.unwrap_or(1),
        o.replication_factor.unwrap_or(-1),
    ));
    let (topic_id, leaders) = prepare_topic(&mut client, &o.topic, create).await?;
    // The consumer starts at the end, so it reads exactly what this run produces.
    let (positions, membership) = consumer_positions(
        &mut client,
        &o.topic,
        &leaders,
        a.consumer.group.as_deref(),
        true,
    )
    .await?;
    let mut specs = producer_specs(o, topic_id, &leaders, None, true);
    if o.idempotence {
        for spec in &mut specs {
            spec.idempotence = Some(client.init_producer_id().await?);
        }
    }
    let start = Instant::now();
    let sent = Arc::new(Mutex::new(Stats::new(start)));
    let received = Arc::new(Mutex::new(Stats::new(start)));
    let ticker = progress(
        a.report.quiet,
        vec![
            ("sent", Arc::clone(&sent)),
            ("received", Arc::clone(&received)),
        ],
    );
    let cspec = consumer_spec(
        &o.topic,
        topic_id,
        positions,
        o.num_records,
        &a.consumer,
        true,
    );
    let consumer = tokio::spawn(consume::run(cspec, Arc::clone(&received)));
    let produced = run_producers(specs, Arc::clone(&sent), start).await;
    if let Err(e) = produced {
        consumer.abort();
        return Err(e);
    }
    let outcome = consumer.await.context("consumer task")??;
    drop(ticker);
    finish_group(&mut client, &o.topic, membership, &outcome).await;
    let p = summary(&sent)?;
    let c = summary(&received)?;
    timeout_warning(&outcome, &c, o.num_records, a.consumer.timeout_ms);
    if let Some(path) = &a.report.plot {
        plot::draw(
            path,
            &format!("sluice bench e2e: {}", o.topic),
            "end-to-end latency",
            &c.series,
        )?;
    }
    let doc = json!({
        "mode": "e2e",
        "bootstrap": a.report.common.bootstrap_server,
        "topic": o.topic,
        "partitions": leaders.len(),
        "config": config_json(o),
        "records": c.records,
        "bytes": c.bytes,
        "elapsed_s": c.elapsed_s,
        "records_per_sec": c.records_per_sec,
        "mb_per_sec": c.mb_per_sec,
        "latency_ms": c.latency_ms,
        "timed_out": outcome.timed_out,
        "produce": p,
        "series": c.series,
    });
    emit(
        &a.report,
        &[
            summary_line("sent", &p, "latency"),
            summary_line("received", &c, "end-to-end latency"),
        ],
        doc,
    )?;
    Ok(if outcome.timed_out { 3 } else { 0 })
}
