//! `sluice produce TOPIC`: one record per stdin line.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use serde_json::json;
use sluice_client::{
    partition_for_key, Acks, Client, Compression, ProduceRecord, StickyPartitioner,
};
use tokio::sync::mpsc;

use super::output::{print, print_json, table, unescape};
use super::topics::parse_key_value;
use super::{CommonArgs, OutputFormat};

/// Largest batch we build before sending (bytes, approximate).
const MAX_BATCH_BYTES: usize = 16 * 1024;

/// Arguments of `sluice produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Topic to write to.
    topic: String,
    /// Split each line into key and value at the first SEP (lines without SEP are an error;
    /// `\t` means a tab).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Header added to every record, e.g. `--header source=cli` (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    headers: Vec<(String, String)>,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Write every record to this partition (default: hash of the key, or sticky for keyless).
    #[arg(long, value_name = "N")]
    partition: Option<i32>,
    /// Records per batch (batches are also capped at 16 KiB and sent when input pauses).
    #[arg(long, value_name = "LINES", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Send what is buffered when no new line arrived for this long.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    linger_ms: u64,
    /// A key or value equal to this string is sent as null (e.g. tombstones).
    #[arg(long, value_name = "STR")]
    null_value_marker: Option<String>,
    /// Print a summary (records and offsets per partition) when done.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse()
}

/// Splits a stdin line into (key, value) following the options. `line_no` is 1-based.
fn parse_line(
    line: &[u8],
    line_no: u64,
    key_separator: Option<&str>,
    null_marker: Option<&str>,
) -> anyhow::Result<(Option<Bytes>, Option<Bytes>)> {
    let nullable = |b: &[u8]| -> Option<Bytes> {
        match null_marker {
            Some(m) if b == m.as_bytes() => None,
            _ => Some(Bytes::copy_from_slice(b)),
        }
    };
    match key_separator {
        None => Ok((None, nullable(line))),
        Some(sep) => {
            let sep = sep.as_bytes();
            let at = if sep.is_empty() {
                None
            } else {
                line.windows(sep.len()).position(|w| w == sep)
            };
            match at {
                Some(i) => Ok((nullable(&line[..i]), nullable(&line[i + sep.len()..]))),
                None => bail!(
                    "line {line_no} has no key separator {:?}; every line must look like KEY{}VALUE",
                    String::from_utf8_lossy(sep),
                    String::from_utf8_lossy(sep)
                ),
            }
        }
    }
}

/// Removes a trailing "\n" or "\r\n".
fn trim_newline(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    line
}

/// Reads stdin lines on a plain thread (stdin reads block) and forwards them.
fn spawn_stdin_reader() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(4096);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
            let mut buf = Vec::new();
            match lock.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    if tx.blocking_send(Ok(trim_newline(buf))).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    rx
}

#[derive(Default)]
struct Pending {
    records: Vec<ProduceRecord>,
    bytes: usize,
}

#[derive(Default)]
struct PartitionSummary {
    count: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
}

struct Producer {
    client: Client,
    topic: String,
    acks: Acks,
    compression: Compression,
    pending: BTreeMap<i32, Pending>,
    summary: BTreeMap<i32, PartitionSummary>,
    sticky: StickyPartitioner,
    num_partitions: i32,
    batch_size: usize,
}

impl Producer {
    async fn flush_partition(&mut self, partition: i32) -> anyhow::Result<()> {
        let Some(p) = self.pending.remove(&partition) else {
            return Ok(());
        };
        if p.records.is_empty() {
            return Ok(());
        }
        let n = p.records.len();
        let outcome = self
            .client
            .produce(
                &self.topic,
                partition,
                &p.records,
                self.acks,
                self.compression,
            )
            .await?;
        let s = self.summary.entry(partition).or_default();
        s.count += n as u64;
        if let Some(base) = outcome.base_offset {
            s.first_offset.get_or_insert(base);
            s.last_offset = Some(base + n as i64 - 1);
        }
        // Keyless records stick to one partition until its batch is sent.
        if self.sticky.partition(self.num_partitions) == partition {
            self.sticky.next_batch();
        }
        Ok(())
    }

    async fn flush_all(&mut self) -> anyhow::Result<()> {
        let parts: Vec<i32> = self.pending.keys().copied().collect();
        for p in parts {
            self.flush_partition(p).await?;
        }
        Ok(())
    }

    async fn add(&mut self, partition: i32, record: ProduceRecord) -> anyhow::Result<()> {
        let size = record.approx_size();
        let entry = self.pending.entry(partition).or_default();
        if !entry.records.is_empty() && entry.bytes + size > MAX_BATCH_BYTES {
            self.flush_partition(partition).await?;
        }
        let entry = self.pending.entry(partition).or_default();
        entry.records.push(record);
        entry.bytes += size;
        if entry.records.len() >= self.batch_size || entry.bytes >= MAX_BATCH_BYTES {
            self.flush_partition(partition).await?;
        }
        Ok(())
    }
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<i32> {
    let mut client = args.common.connect().await?;
    let topic_info = client.topic(&args.topic).await?;
    let num_partitions = i32::try_from(topic_info.partitions.len()).unwrap_or(i32::MAX);
    if let Some(p) = args.partition {
        if p < 0 || p >= num_partitions {
            bail!(
                "topic '{}' has no partition {p} (it has {num_partitions}: 0..={})",
                args.topic,
                num_partitions - 1
            );
        }
    }
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::copy_from_slice(v.as_bytes()))))
        .collect();
    let start = (sluice_client::now_ms() % i64::from(num_partitions.max(1))) as i32;
    let mut producer = Producer {
        client,
        topic: args.topic.clone(),
        acks: args.acks,
        compression: args.compression,
        pending: BTreeMap::new(),
        summary: BTreeMap::new(),
        sticky: StickyPartitioner::new(start),
        num_partitions,
        batch_size: args.batch_size as usize,
    };
    let key_separator = args.key_separator.as_deref().map(unescape);
    let linger = Duration::from_millis(args.linger_ms);
    let mut lines = spawn_stdin_reader();
    let mut line_no: u64 = 0;
    // Ctrl-C stops reading but still sends what was already read.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = if producer.pending.is_empty() {
            tokio::select! {
                _ = &mut ctrl_c => break,
                n = lines.recv() => n,
            }
        } else {
            tokio::select! {
                _ = &mut ctrl_c => break,
                r = tokio::time::timeout(linger, lines.recv()) => match r {
                    Ok(n) => n,
                    Err(_) => {
                        producer.flush_all().await?;
                        continue;
                    }
                },
            }
        };
        let Some(line) = next else { break };
        let line = line.context("reading stdin")?;
        line_no += 1;
        let (key, value) = parse_line(
            &line,
            line_no,
            key_separator.as_deref(),
            args.null_value_marker.as_deref(),
        )?;
        let partition = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, num_partitions),
            (None, None) => producer.sticky.partition(num_partitions),
        };
        let record = ProduceRecord {
            key,
            value,
            headers: headers.clone(),
            timestamp: None,
        };
        producer
            .add(partition, record)
            .await
            .with_context(|| format!("producing line {line_no}"))?;
    }
    producer
        .flush_all()
        .await
        .context("producing the final batch")?;

    let total: u64 = producer.summary.values().map(|s| s.count).sum();
    match args.common.output {
        OutputFormat::Json => {
            let parts: Vec<serde_json::Value> = producer
                .summary
                .iter()
                .map(|(p, s)| {
                    json!({
                        "partition": p,
                        "count": s.count,
                        "first_offset": s.first_offset,
                        "last_offset": s.last_offset,
                    })
                })
                .collect();
            print_json(&json!({"topic": args.topic, "count": total, "partitions": parts}))?;
        }
        OutputFormat::Table if args.verbose => {
            let rows: Vec<Vec<String>> = producer
                .summary
                .iter()
                .map(|(p, s)| {
                    let off = |o: Option<i64>| o.map_or_else(|| "-".to_owned(), |v| v.to_string());
                    vec![
                        p.to_string(),
                        s.count.to_string(),
                        off(s.first_offset),
                        off(s.last_offset),
                    ]
                })
                .collect();
            let mut text = format!("Produced {total} records to {}.\n", args.topic);
            if !rows.is_empty() {
                text.push_str(&table(
                    &["PARTITION", "RECORDS", "FIRST_OFFSET", "LAST_OFFSET"],
                    &rows,
                ));
            }
            print(&text)?;
        }
        OutputFormat::Table => {}
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_without_separator_are_values() {
        let (k, v) = parse_line(b"hello:world", 1, None, None).unwrap();
        assert_eq!(k, None);
        assert_eq!(v.as_deref(), Some(&b"hello:world"[..]));
    }

    #[test]
    fn key_separator_splits_at_first() {
        let (k, v) = parse_line(b"k:v:w", 1, Some(":"), None).unwrap();
        assert_eq!(k.as_deref(), Some(&b"k"[..]));
        assert_eq!(v.as_deref(), Some(&b"v:w"[..]));
        let (k, v) = parse_line(b"key::value", 1, Some("::"), None).unwrap();
        assert_eq!(k.as_deref(), Some(&b"key"[..]));
        assert_eq!(v.as_deref(), Some(&b"value"[..]));
        let err = parse_line(b"novalue", 7, Some(":"), None).unwrap_err();
        assert!(err.to_string().contains("line 7"), "{err}");
    }

    #[test]
    fn null_marker_applies_to_key_and_value() {
        let (k, v) = parse_line(b"k:NULL", 1, Some(":"), Some("NULL")).unwrap();
        assert_eq!(k.as_deref(), Some(&b"k"[..]));
        assert_eq!(v, None);
        let (k, v) = parse_line(b"NULL:x", 1, Some(":"), Some("NULL")).unwrap();
        assert_eq!(k, None);
        assert_eq!(v.as_deref(), Some(&b"x"[..]));
        let (_, v) = parse_line(b"NULLX", 1, None, Some("NULL")).unwrap();
        assert_eq!(v.as_deref(), Some(&b"NULLX"[..]));
    }

    #[test]
    fn newlines_are_trimmed() {
        assert_eq!(trim_newline(b"a\r\n".to_vec()), b"a");
        assert_eq!(trim_newline(b"a\n".to_vec()), b"a");
        assert_eq!(trim_newline(b"a".to_vec()), b"a");
        assert_eq!(trim_newline(b"a\r".to_vec()), b"a\r");
    }
}
