//! `sluice consume TOPIC`: print records of a topic to stdout.
//!
//! Partitions are assigned statically (all partitions, or `--partition`). Consumer groups are
//! not supported yet; when they are, a `--group` option will replace [`assign`] with group
//! membership and commit positions, while the fetch/print loop stays the same.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use serde_json::{json, Value};
use sluice_client::{
    Client, ConsumedRecord, FetchOptions, FetchPosition, KafkaCode, OffsetSpec, TimestampKind,
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
    #[arg(long, value_name = "N")]
    partition: Option<i32>,
    /// Where to start: an offset number (needs --partition), `earliest` or `latest`.
    #[arg(long, value_name = "N|earliest|latest", value_parser = parse_start)]
    offset: Option<Start>,
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

/// Moves a position that fell outside the log back inside it.
async fn reset_out_of_range(client: &mut Client, pos: &mut FetchPosition) -> anyhow::Result<()> {
    let parts = [pos.partition];
    let earliest = client
        .list_offsets(&pos.topic, &parts, OffsetSpec::Earliest)
        .await?;
    let latest = client
        .list_offsets(&pos.topic, &parts, OffsetSpec::Latest)
        .await?;
    let lo = earliest.get(&pos.partition).copied().unwrap_or(0);
    let hi = latest.get(&pos.partition).copied().unwrap_or(lo);
    let new = if pos.offset < lo { lo } else { hi };
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

pub async fn run(args: ConsumeArgs) -> anyhow::Result<i32> {
    if matches!(args.offset, Some(Start::At(_))) && args.partition.is_none() {
        bail!("--offset with a number needs --partition (use --offset earliest|latest for all partitions)");
    }
    let mut client = args.common.connect().await?;
    let mut positions = assign(&mut client, &args).await?;
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
    let mut last_activity = Instant::now();
    let mut printed: u64 = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    'outer: loop {
        if args.max_messages.is_some_and(|m| printed >= m) {
            break;
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
            _ = &mut ctrl_c => break 'outer,
            r = client.fetch(&positions, opts) => r?,
        };
        let got_records = fetched.iter().any(|p| !p.records.is_empty());
        let mut out = Vec::new();
        let mut transient = false;
        for part in fetched {
            let Some(pos) = positions.iter_mut().find(|p| p.partition == part.partition) else {
                continue;
            };
            match part.error {
                None => {}
                Some(KafkaCode::OFFSET_OUT_OF_RANGE) => {
                    reset_out_of_range(&mut client, pos).await?;
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
                if args.max_messages.is_some_and(|m| printed >= m) {
                    break;
                }
                if json_mode {
                    out.extend_from_slice(format_json(&part.topic, part.partition, r).as_bytes());
                    out.push(b'\n');
                } else {
                    format_plain(&mut out, &plain, part.partition, r);
                }
                printed += 1;
                pos.offset = r.offset + 1;
            }
            if args.max_messages.is_none_or(|m| printed < m) {
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
        // does not honour max_wait would otherwise make this loop spin).
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
                _ = &mut ctrl_c => break 'outer,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
    eprintln!("Processed a total of {printed} messages");
    Ok(0)
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
