//! `sluice consume TOPIC`: print records of a topic to stdout.
//!
//! Without `--group`, partitions are assigned statically (all partitions, or `--partition`).
//! With `--group`, the tool is a member of a consumer group like kafka-console-consumer: it
//! joins with the classic protocol ([`Membership`]), starts at the group's committed offsets
//! (else `--from-beginning` → earliest, otherwise latest), rejoins on rebalances, commits
//! its positions every `--commit-interval-ms` and on exit, then leaves the group. The
//! fetch/print loop is the same in both modes.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use serde_json::{json, Value};
use sluice_client::{
    Client, ConsumedRecord, FetchOptions, FetchPosition, GroupEvent, KafkaCode, Membership,
    MembershipConfig, OffsetSpec, TimestampKind,
};

use super::output::unescape;
use super::{CommonArgs, OutputFormat};

/// Arguments of `sluice consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Topic to read.
    topic: String,
    /// Start at the earliest offset (default: only new records, like Kafka).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Read only this partition (default: all partitions).
    #[arg(long, value_name = "N", conflicts_with = "group")]
    partition: Option<i32>,
    /// Where to start: an offset number (needs --partition), `earliest` or `latest`.
    #[arg(long, value_name = "N|earliest|latest", value_parser = parse_start, conflicts_with = "group")]
    offset: Option<Start>,
    /// Consume as a member of this consumer group: partitions are shared with the group's
    /// other members and positions are committed (start: committed offsets, else
    /// --from-beginning → earliest, otherwise latest).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Group session timeout [default: 10000].
    #[arg(long, value_name = "MS", requires = "group")]
    session_timeout_ms: Option<u64>,
    /// How often consumed positions are committed to the group [default: 5000].
    #[arg(long, value_name = "MS", requires = "group")]
    commit_interval_ms: Option<u64>,
    /// Exit after printing this many records.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// Exit when no record arrived for this many milliseconds (default: wait forever).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Print the key before the value.
    #[arg(long)]
    print_key: bool,
    /// Print headers (`k:v,k2:v2`, or `NO_HEADERS`) before key and value.
    #[arg(long)]
    print_headers: bool,
    /// Print the timestamp (`CreateTime:<ms>` or `LogAppendTime:<ms>`) first.
    #[arg(long)]
    print_timestamp: bool,
    /// Print the partition (`Partition:<n>`).
    #[arg(long)]
    print_partition: bool,
    /// Print the offset (`Offset:<n>`).
    #[arg(long)]
    print_offset: bool,
    /// Separator between printed fields (key, value, ...); `\t` and `\n` are understood.
    #[arg(long, value_name = "SEP", default_value = "\t")]
    key_separator: String,
}

/// Where consumption starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Log start.
    Earliest,
    /// Log end (only new records).
    Latest,
    /// An explicit offset.
    At(i64),
}

fn parse_start(s: &str) -> Result<Start, String> {
    match s {
        "earliest" | "beginning" => Ok(Start::Earliest),
        "latest" | "end" => Ok(Start::Latest),
        n => match n.parse::<i64>() {
            Ok(v) if v >= 0 => Ok(Start::At(v)),
            _ => Err(format!(
                "expected a non-negative offset, 'earliest' or 'latest', got '{s}'"
            )),
        },
    }
}

/// How records are printed in plain (table) mode.
#[derive(Debug, Clone, Default)]
struct PlainFormat {
    key: bool,
    headers: bool,
    timestamp: bool,
    partition: bool,
    offset: bool,
    separator: String,
}

fn bytes_or_null(b: &Option<Bytes>) -> &[u8] {
    b.as_deref().unwrap_or(b"null")
}

/// Formats one record like Kafka's console consumer: optional timestamp, partition, offset,
/// headers and key, then the value, joined by the separator, ending in a newline.
fn format_plain(out: &mut Vec<u8>, fmt: &PlainFormat, partition: i32, r: &ConsumedRecord) {
    let sep = fmt.separator.as_bytes();
    if fmt.timestamp {
        let kind = match r.timestamp_kind {
            TimestampKind::Create => "CreateTime",
            TimestampKind::LogAppend => "LogAppendTime",
        };
        out.extend_from_slice(format!("{kind}:{}", r.timestamp).as_bytes());
        out.extend_from_slice(sep);
    }
    if fmt.partition {
        out.extend_from_slice(format!("Partition:{partition}").as_bytes());
        out.extend_from_slice(sep);
    }
    if fmt.offset {
        out.extend_from_slice(format!("Offset:{}", r.offset).as_bytes());
        out.extend_from_slice(sep);
    }
    if fmt.headers {
        if r.headers.is_empty() {
            out.extend_from_slice(b"NO_HEADERS");
        }
        for (i, (k, v)) in r.headers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(k.as_bytes());
            out.push(b':');
            out.extend_from_slice(bytes_or_null(v));
        }
        out.extend_from_slice(sep);
    }
    if fmt.key {
        out.extend_from_slice(bytes_or_null(&r.key));
        out.extend_from_slice(sep);
    }
    out.extend_from_slice(bytes_or_null(&r.value));
    out.push(b'\n');
}

fn text_or_null(b: &Option<Bytes>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
    }
}

/// One JSON object per record (UTF-8 lossy strings; null for missing key/value).
fn format_json(topic: &str, partition: i32, r: &ConsumedRecord) -> String {
    let headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), text_or_null(v)))
        .collect();
    json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "timestamp_type": match r.timestamp_kind {
            TimestampKind::Create => "CreateTime",
            TimestampKind::LogAppend => "LogAppendTime",
        },
        "key": text_or_null(&r.key),
        "value": text_or_null(&r.value),
        "headers": headers,
    })
    .to_string()
}

/// Static partition assignment: the chosen partition or all of them, at their start offsets.
async fn assign(client: &mut Client, args: &ConsumeArgs) -> anyhow::Result<Vec<FetchPosition>> {
    let info = client.topic(&args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            if !info.partitions.iter().any(|x| x.partition == p) {
                bail!(
                    "topic '{}' has no partition {p} (it has {} partitions)",
                    args.topic,
                    info.partitions.len()
                );
            }
            vec![p]
        }
        None => info.partition_ids(),
    };
    let start = match (args.offset, args.from_beginning) {
        (Some(s), _) => s,
        (None, true) => Start::Earliest,
        (None, false) => Start::Latest,
    };
    let offsets: BTreeMap<i32, i64> = match start {
        Start::At(n) => partitions.iter().map(|&p| (p, n)).collect(),
        Start::Earliest => {
            client
                .list_offsets(&args.topic, &partitions, OffsetSpec::Earliest)
                .await?
        }
        Start::Latest => {
            client
                .list_offsets(&args.topic, &partitions, OffsetSpec::Latest)
                .await?
        }
    };
    Ok(offsets
        .into_iter()
        .map(|(partition, offset)| FetchPosition {
            topic: args.topic.clone(),
            partition,
            offset,
        })
        .collect())
}

/// Moves a position that fell outside the log back inside it: to the nearer end, or (in a
/// group, like Kafka's `auto.offset.reset`) to the end `reset` names.
async fn reset_out_of_range(
    client: &mut Client,
    pos: &mut FetchPosition,
    reset: Option<OffsetSpec>,
) -> anyhow::Result<()> {
    let parts = [pos.partition];
    let earliest = client
        .list_offsets(&pos.topic, &parts, OffsetSpec::Earliest)
        .await?;
    let latest = client
        .list_offsets(&pos.topic, &parts, OffsetSpec::Latest)
        .await?;
    let lo = earliest.get(&pos.partition).copied().unwrap_or(0);
    let hi = latest.get(&pos.partition).copied().unwrap_or(lo);
    let new = match reset {
        Some(OffsetSpec::Earliest) => lo,
        Some(_) => hi,
        None if pos.offset < lo => lo,
        None => hi,
    };
    eprintln!(
        "warning: offset {} is out of range for {}-{} (valid {lo}..{hi}); continuing at {new}",
        pos.offset, pos.topic, pos.partition
    );
    pos.offset = new;
    Ok(())
}

fn write_out(buf: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(buf).context("writing to stdout")?;
    stdout.flush().context("writing to stdout")
}

/// Group mode: the membership plus what the consume loop needs to commit.
struct GroupSession {
    membership: Membership,
    /// Where a partition without a committed offset starts (and an out-of-range one resets).
    reset: OffsetSpec,
    commit_interval: Duration,
    last_commit: Instant,
    /// Positions as last committed successfully (to skip commits that change nothing).
    committed: BTreeMap<(String, i32), i64>,
}

impl GroupSession {
    /// Joins (or rejoins) the group and returns fetch positions for the new assignment:
    /// the group's committed offsets, else the reset policy.
    async fn join(&mut self, client: &mut Client) -> anyhow::Result<Vec<FetchPosition>> {
        let group = self.membership.group().to_owned();
        let assignment = self
            .membership
            .join(client)
            .await
            .with_context(|| format!("joining consumer group '{group}'"))?;
        let committed: BTreeMap<(String, i32), i64> = client
            .committed_offsets(&group)
            .await
            .with_context(|| format!("reading committed offsets of group '{group}'"))?
            .into_iter()
            .map(|c| ((c.topic, c.partition), c.offset))
            .collect();
        self.committed = committed.clone();
        let mut positions = Vec::new();
        for (topic, partitions) in assignment {
            let missing: Vec<i32> = partitions
                .iter()
                .copied()
                .filter(|p| !committed.contains_key(&(topic.clone(), *p)))
                .collect();
            let reset = if missing.is_empty() {
                BTreeMap::new()
            } else {
                client.list_offsets(&topic, &missing, self.reset).await?
            };
            for p in partitions {
                let offset = committed
                    .get(&(topic.clone(), p))
                    .or_else(|| reset.get(&p))
                    .copied();
                let Some(offset) = offset else {
                    bail!("no start offset for {topic}-{p}");
                };
                positions.push(FetchPosition {
                    topic: topic.clone(),
                    partition: p,
                    offset,
                });
            }
        }
        self.last_commit = Instant::now();
        Ok(positions)
    }

    /// Commits `positions` (next offsets to read) if any changed; a failure is a warning
    /// (the records since the last commit may be read again by the next owner).
    async fn commit(&mut self, client: &mut Client, positions: &[FetchPosition]) {
        self.last_commit = Instant::now();
        let changed: Vec<(String, i32, i64)> = positions
            .iter()
            .filter(|p| self.committed.get(&(p.topic.clone(), p.partition)) != Some(&p.offset))
            .map(|p| (p.topic.clone(), p.partition, p.offset))
            .collect();
        if changed.is_empty() {
            return;
        }
        match self.membership.commit(client, &changed).await {
            Ok(()) => {
                for (t, p, o) in changed {
                    self.committed.insert((t, p), o);
                }
            }
            Err(e) => eprintln!(
                "warning: could not commit offsets of group '{}': {e}",
                self.membership.group()
            ),
        }
    }

    /// Commits the final positions and leaves the group.
    async fn close(&mut self, client: &mut Client, positions: &[FetchPosition]) {
        if !matches!(self.membership.event(), Some(GroupEvent::Fenced(_))) {
            self.commit(client, positions).await;
        }
        if let Err(e) = self.membership.leave(client).await {
            eprintln!(
                "warning: could not leave group '{}': {e}",
                self.membership.group()
            );
        }
    }
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<i32> {
    if matches!(args.offset, Some(Start::At(_))) && args.partition.is_none() {
        bail!("--offset with a number needs --partition (use --offset earliest|latest for all partitions)");
    }
    let mut client = args.common.connect().await?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut group = match &args.group {
        None => None,
        Some(g) => {
            if g.is_empty() {
                bail!("--group needs a non-empty group id");
            }
            // Fail early, like the static mode, when the topic does not exist.
            client.topic(&args.topic).await?;
            let mut config = MembershipConfig::new(g.clone(), vec![args.topic.clone()]);
            if let Some(ms) = args.session_timeout_ms {
                config.session_timeout = Duration::from_millis(ms.max(1));
            }
            Some(GroupSession {
                membership: Membership::new(config),
                reset: if args.from_beginning {
                    OffsetSpec::Earliest
                } else {
                    OffsetSpec::Latest
                },
                commit_interval: Duration::from_millis(args.commit_interval_ms.unwrap_or(5000)),
                last_commit: Instant::now(),
                committed: BTreeMap::new(),
            })
        }
    };
    let mut positions = match group.as_mut() {
        None => assign(&mut client, &args).await?,
        Some(g) => {
            let joined = tokio::select! {
                _ = &mut ctrl_c => None,
                r = g.join(&mut client) => Some(r),
            };
            match joined {
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    g.close(&mut client, &[]).await;
                    return Err(e);
                }
                None => {
                    g.close(&mut client, &[]).await;
                    eprintln!("Processed a total of 0 messages");
                    return Ok(0);
                }
            }
        }
    };
    let mut printed: u64 = 0;
    let result = consume_loop(
        &mut client,
        &args,
        &mut positions,
        &mut group,
        &mut printed,
        &mut ctrl_c,
    )
    .await;
    if let Some(g) = group.as_mut() {
        g.close(&mut client, &positions).await;
    }
    result?;
    eprintln!("Processed a total of {printed} messages");
    Ok(0)
}

/// Fetches and prints until --max-messages, --timeout-ms, Ctrl-C or an error; in group mode
/// also commits periodically and follows rebalances.
async fn consume_loop(
    client: &mut Client,
    args: &ConsumeArgs,
    positions: &mut Vec<FetchPosition>,
    group: &mut Option<GroupSession>,
    printed: &mut u64,
    ctrl_c: &mut std::pin::Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
) -> anyhow::Result<()> {
    let plain = PlainFormat {
        key: args.print_key,
        headers: args.print_headers,
        timestamp: args.print_timestamp,
        partition: args.print_partition,
        offset: args.print_offset,
        separator: unescape(&args.key_separator),
    };
    let json_mode = args.common.output == OutputFormat::Json;
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let reset = group.as_ref().map(|g| g.reset);
    let mut last_activity = Instant::now();

    'outer: loop {
        if args.max_messages.is_some_and(|m| *printed >= m) {
            break;
        }
        if let Some(g) = group.as_mut() {
            if let Some(event) = g.membership.event() {
                if event == GroupEvent::Rebalance {
                    g.commit(client, positions).await;
                }
                *positions = tokio::select! {
                    _ = &mut *ctrl_c => break 'outer,
                    r = g.join(client) => r?,
                };
                // Time spent rebalancing does not count as idle.
                last_activity = Instant::now();
            } else if g.last_commit.elapsed() >= g.commit_interval {
                g.commit(client, positions).await;
            }
        }
        let mut opts = FetchOptions::default();
        if let Some(limit) = idle_limit {
            let left = limit.saturating_sub(last_activity.elapsed());
            if left.is_zero() {
                break;
            }
            opts.max_wait = opts.max_wait.min(left);
        }
        let round_started = Instant::now();
        let fetched = tokio::select! {
            _ = &mut *ctrl_c => break 'outer,
            r = client.fetch(positions, opts) => r?,
        };
        let got_records = fetched.iter().any(|p| !p.records.is_empty());
        let mut out = Vec::new();
        let mut transient = false;
        for part in fetched {
            let Some(pos) = positions
                .iter_mut()
                .find(|p| p.partition == part.partition && p.topic == part.topic)
            else {
                continue;
            };
            match part.error {
                None => {}
                Some(KafkaCode::OFFSET_OUT_OF_RANGE) => {
                    reset_out_of_range(client, pos, reset).await?;
                    continue;
                }
                Some(code) if code.is_retriable() => {
                    transient = true;
                    continue;
                }
                Some(code) => bail!(
                    "fetching {}-{}: {code}{}",
                    part.topic,
                    part.partition,
                    code.description()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            }
            for r in &part.records {
                if args.max_messages.is_some_and(|m| *printed >= m) {
                    break;
                }
                if json_mode {
                    out.extend_from_slice(format_json(&part.topic, part.partition, r).as_bytes());
                    out.push(b'\n');
                } else {
                    format_plain(&mut out, &plain, part.partition, r);
                }
                *printed += 1;
                pos.offset = r.offset + 1;
            }
            if args.max_messages.is_none_or(|m| *printed < m) {
                pos.offset = pos.offset.max(part.next_offset);
            }
            if !part.records.is_empty() {
                last_activity = Instant::now();
            }
        }
        if !out.is_empty() {
            write_out(&out)?;
        }
        // Back off after errors, and after empty answers that came back early (a broker that
        // does not honour max_wait, or an empty assignment, would otherwise make this spin).
        let pause = if transient {
            Duration::from_millis(200)
        } else if !got_records {
            opts.max_wait
                .saturating_sub(round_started.elapsed())
                .min(Duration::from_millis(100))
        } else {
            Duration::ZERO
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = &mut *ctrl_c => break 'outer,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> ConsumedRecord {
        ConsumedRecord {
            offset: 5,
            timestamp: 1000,
            timestamp_kind: TimestampKind::Create,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![
                ("a".into(), Some(Bytes::from_static(b"1"))),
                ("b".into(), None),
            ],
        }
    }

    #[test]
    fn plain_value_only() {
        let mut out = Vec::new();
        format_plain(
            &mut out,
            &PlainFormat {
                separator: "\t".into(),
                ..Default::default()
            },
            0,
            &rec(),
        );
        assert_eq!(out, b"v\n");
    }

    #[test]
    fn plain_all_fields() {
        let fmt = PlainFormat {
            key: true,
            headers: true,
            timestamp: true,
            partition: true,
            offset: true,
            separator: "|".into(),
        };
        let mut out = Vec::new();
        format_plain(&mut out, &fmt, 2, &rec());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CreateTime:1000|Partition:2|Offset:5|a:1,b:null|k|v\n"
        );
        let mut r = rec();
        r.headers.clear();
        r.key = None;
        r.value = None;
        let mut out = Vec::new();
        format_plain(
            &mut out,
            &PlainFormat {
                headers: true,
                key: true,
                separator: "\t".into(),
                ..Default::default()
            },
            0,
            &r,
        );
        assert_eq!(out, b"NO_HEADERS\tnull\tnull\n");
    }

    #[test]
    fn json_record() {
        let v: Value = serde_json::from_str(&format_json("t", 3, &rec())).unwrap();
        assert_eq!(v["topic"], "t");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 5);
        assert_eq!(v["timestamp"], 1000);
        assert_eq!(v["key"], "k");
        assert_eq!(v["value"], "v");
        assert_eq!(v["headers"]["a"], "1");
        assert_eq!(v["headers"]["b"], Value::Null);
    }

    #[test]
    fn start_parsing() {
        assert_eq!(parse_start("earliest").unwrap(), Start::Earliest);
        assert_eq!(parse_start("latest").unwrap(), Start::Latest);
        assert_eq!(parse_start("42").unwrap(), Start::At(42));
        assert!(parse_start("-1").is_err());
        assert!(parse_start("soon").is_err());
    }
}
