//! `sluice groups list|describe|delete|reset-offsets`: consumer groups and their lag, over the
//! Kafka protocol only (so the tool works against Apache Kafka too). `describe` adds the
//! broker's Burrow-style status from Sluice's HTTP API when it is reachable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};
use sluice_client::{Client, GroupDescription, OffsetSpec, NON_EMPTY_GROUP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::output::{print, print_json, progress, table};
use super::{CommonArgs, OutputFormat};

/// Arguments of `sluice groups`.
#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Debug, Subcommand)]
enum GroupsCommand {
    /// List consumer groups.
    List,
    /// Show a group's partitions with committed offset, log-end offset, lag and owner.
    Describe(DescribeArgs),
    /// Delete a group (it must have no active members).
    Delete(DeleteArgs),
    /// Plan (default) or --execute a change of a group's committed offsets.
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
struct DescribeArgs {
    /// Group id.
    group: String,
    /// Sluice HTTP API to read the group's lag status from (`off` to skip).
    #[arg(long, default_value = "127.0.0.1:9644", value_name = "HOST:PORT")]
    http_server: String,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    /// Group id.
    group: String,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args([
    "to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"
])))]
struct ResetArgs {
    /// Group id.
    group: String,
    /// Topic whose offsets change.
    #[arg(long)]
    topic: String,
    /// Only this partition (default: every partition of the topic).
    #[arg(long, value_name = "N")]
    partition: Option<i32>,
    /// Move to the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// Move to the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// Move to this offset (clamped to the partition's range).
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// Move to the first offset with a timestamp at or after this time (RFC 3339, e.g.
    /// 2026-11-23T10:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// Move by N (negative: back), clamped to the partition's range.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Commit the new offsets (without it, only the plan is printed).
    #[arg(long)]
    execute: bool,
}

pub async fn run(args: GroupsArgs) -> anyhow::Result<i32> {
    let mut client = args.common.connect().await?;
    let fmt = args.common.output;
    match args.command {
        GroupsCommand::List => list(&mut client, fmt).await,
        GroupsCommand::Describe(a) => describe(&mut client, fmt, a).await,
        GroupsCommand::Delete(a) => delete(&mut client, fmt, a).await,
        GroupsCommand::ResetOffsets(a) => reset(&mut client, fmt, a).await,
    }
}

async fn list(client: &mut Client, fmt: OutputFormat) -> anyhow::Result<i32> {
    let groups = client.list_groups().await?;
    match fmt {
        OutputFormat::Json => print_json(&Value::Array(
            groups
                .iter()
                .map(|g| json!({"group": g.group_id, "protocol_type": g.protocol_type, "state": g.state}))
                .collect(),
        ))?,
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|g| {
                    vec![
                        g.group_id.clone(),
                        g.state.clone().unwrap_or_else(|| "-".into()),
                        if g.protocol_type.is_empty() {
                            "-".into()
                        } else {
                            g.protocol_type.clone()
                        },
                    ]
                })
                .collect();
            print(&table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows))?;
        }
    }
    Ok(0)
}

/// One row of `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    topic: String,
    partition: i32,
    current: Option<i64>,
    end: Option<i64>,
    member: Option<(String, String, String)>,
}

impl Row {
    fn lag(&self) -> Option<i64> {
        match (self.current, self.end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        }
    }
}

fn dash(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

async fn log_end_offsets(
    client: &mut Client,
    topics: &BTreeSet<String>,
    spec: OffsetSpec,
) -> BTreeMap<(String, i32), i64> {
    let mut out = BTreeMap::new();
    for t in topics {
        // A deleted topic keeps its committed offsets; show "-" instead of failing.
        if let Ok(m) = client.list_offsets(t, &[], spec).await {
            for (p, o) in m {
                out.insert((t.clone(), p), o);
            }
        }
    }
    out
}

async fn describe(client: &mut Client, fmt: OutputFormat, a: DescribeArgs) -> anyhow::Result<i32> {
    let desc = client.describe_group(&a.group).await?;
    let committed = client.committed_offsets(&a.group).await?;
    if desc.state == "Dead" && committed.is_empty() {
        bail!("consumer group '{}' does not exist", a.group);
    }
    let mut rows: BTreeMap<(String, i32), Row> = BTreeMap::new();
    for c in &committed {
        rows.insert(
            (c.topic.clone(), c.partition),
            Row {
                topic: c.topic.clone(),
                partition: c.partition,
                current: Some(c.offset),
                end: None,
                member: None,
            },
        );
    }
    for m in &desc.members {
        for (topic, parts) in &m.assignment {
            for p in parts {
                let row = rows.entry((topic.clone(), *p)).or_insert_with(|| Row {
                    topic: topic.clone(),
                    partition: *p,
                    current: None,
                    end: None,
                    member: None,
                });
                row.member = Some((
                    m.member_id.clone(),
                    m.client_host.clone(),
                    m.client_id.clone(),
                ));
            }
        }
    }
    let topics: BTreeSet<String> = rows.keys().map(|(t, _)| t.clone()).collect();
    let ends = log_end_offsets(client, &topics, OffsetSpec::Latest).await;
    for (k, row) in rows.iter_mut() {
        row.end = ends.get(k).copied();
    }
    let status = if a.http_server == "off" {
        Err("not requested (--http-server off)".to_string())
    } else {
        http_status(&a.http_server, &a.group).await
    };
    match fmt {
        OutputFormat::Json => {
            let parts: Vec<Value> = rows
                .values()
                .map(|r| {
                    json!({
                        "topic": r.topic,
                        "partition": r.partition,
                        "current_offset": r.current,
                        "log_end_offset": r.end,
                        "lag": r.lag(),
                        "consumer_id": r.member.as_ref().map(|m| &m.0),
                        "host": r.member.as_ref().map(|m| &m.1),
                        "client_id": r.member.as_ref().map(|m| &m.2),
                    })
                })
                .collect();
            let (st, st_err) = match &status {
                Ok(s) => (Some(s.clone()), None),
                Err(e) => (None, Some(e.clone())),
            };
            print_json(&json!({
                "group": a.group,
                "state": desc.state,
                "protocol_type": desc.protocol_type,
                "protocol": desc.protocol,
                "members": desc.members.len(),
                "total_lag": rows.values().filter_map(Row::lag).sum::<i64>(),
                "status": st,
                "status_error": st_err,
                "partitions": parts,
            }))?;
        }
        OutputFormat::Table => {
            let table_rows: Vec<Vec<String>> = rows
                .values()
                .map(|r| {
                    let (m, h, c) = r
                        .member
                        .clone()
                        .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
                    vec![
                        a.group.clone(),
                        r.topic.clone(),
                        r.partition.to_string(),
                        dash(r.current),
                        dash(r.end),
                        dash(r.lag()),
                        m,
                        h,
                        c,
                    ]
                })
                .collect();
            let mut text = format!(
                "Group {} is {} with {} member(s).\n",
                a.group,
                desc.state,
                desc.members.len()
            );
            match &status {
                Ok(s) => text.push_str(&format!("STATUS: {s}\n\n")),
                Err(e) => text.push_str(&format!("STATUS: unknown ({e})\n\n")),
            }
            text.push_str(&table(
                &[
                    "GROUP",
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "CONSUMER-ID",
                    "HOST",
                    "CLIENT-ID",
                ],
                &table_rows,
            ));
            print(&text)?;
        }
    }
    Ok(0)
}

async fn delete(client: &mut Client, fmt: OutputFormat, a: DeleteArgs) -> anyhow::Result<i32> {
    match client.delete_group(&a.group).await {
        Ok(()) => {}
        Err(e) if e.kafka_code() == Some(NON_EMPTY_GROUP) => bail!(
            "group '{}' still has active members; stop its consumers first ({e})",
            a.group
        ),
        Err(e) => return Err(e.into()),
    }
    match fmt {
        OutputFormat::Json => print_json(&json!({"group": a.group, "deleted": true}))?,
        OutputFormat::Table => print(&format!("Deleted consumer group '{}'.\n", a.group))?,
    }
    Ok(0)
}

/// Where `reset-offsets` moves a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    /// Offset found by time (-1: no record at/after the time, i.e. the end).
    ByTime(i64),
    Shift(i64),
}

/// The new offset for one partition given its current committed offset and range.
fn new_offset(target: Target, current: Option<i64>, start: i64, end: i64) -> i64 {
    let clamp = |o: i64| o.clamp(start, end.max(start));
    match target {
        Target::Earliest => start,
        Target::Latest => end,
        Target::Offset(o) => clamp(o),
        Target::ByTime(o) if o < 0 => end,
        Target::ByTime(o) => clamp(o),
        Target::Shift(n) => clamp(current.unwrap_or(end).saturating_add(n)),
    }
}

async fn reset(client: &mut Client, fmt: OutputFormat, a: ResetArgs) -> anyhow::Result<i32> {
    let topic = client.topic(&a.topic).await?;
    let parts: Vec<i32> = match a.partition {
        Some(p) if topic.partition_ids().contains(&p) => vec![p],
        Some(p) => bail!(
            "topic '{}' has no partition {p} (it has {})",
            a.topic,
            topic.partitions.len()
        ),
        None => topic.partition_ids(),
    };
    // Steps: describe, committed, earliest, latest, [by time], [commit].
    let steps = 4 + u64::from(a.to_datetime.is_some()) + u64::from(a.execute);
    let bar = progress(steps, "resetting offsets");
    bar.set_message(format!("describing group {}", a.group));
    let desc: GroupDescription = client.describe_group(&a.group).await?;
    bar.inc(1);
    if a.execute && !desc.is_inactive() {
        bail!(
            "assignments can only be reset if the group '{}' is inactive, but the current state is {}; stop its consumers first",
            a.group,
            desc.state
        );
    }
    bar.set_message("reading committed offsets");
    let committed = client.committed_offsets(&a.group).await?;
    bar.inc(1);
    bar.set_message(format!(
        "listing earliest offsets of {} partitions",
        parts.len()
    ));
    let starts = client
        .list_offsets(&a.topic, &parts, OffsetSpec::Earliest)
        .await?;
    bar.inc(1);
    bar.set_message(format!(
        "listing latest offsets of {} partitions",
        parts.len()
    ));
    let ends = client
        .list_offsets(&a.topic, &parts, OffsetSpec::Latest)
        .await?;
    bar.inc(1);
    let by_time = match a.to_datetime {
        Some(ts) => {
            bar.set_message(format!(
                "listing offsets by time of {} partitions",
                parts.len()
            ));
            let m = client
                .list_offsets(&a.topic, &parts, OffsetSpec::Timestamp(ts))
                .await?;
            bar.inc(1);
            Some(m)
        }
        None => None,
    };
    let mut plan: Vec<(i32, Option<i64>, i64)> = Vec::new();
    for p in &parts {
        let current = committed
            .iter()
            .find(|c| c.topic == a.topic && c.partition == *p)
            .map(|c| c.offset);
        let start = starts.get(p).copied().unwrap_or(0);
        let end = ends.get(p).copied().unwrap_or(start);
        let target = if a.to_earliest {
            Target::Earliest
        } else if a.to_latest {
            Target::Latest
        } else if let Some(o) = a.to_offset {
            Target::Offset(o)
        } else if let Some(m) = &by_time {
            Target::ByTime(m.get(p).copied().unwrap_or(-1))
        } else if let Some(n) = a.shift_by {
            Target::Shift(n)
        } else {
            bail!("no reset target given");
        };
        plan.push((*p, current, new_offset(target, current, start, end)));
    }
    if a.execute {
        let offsets: Vec<(String, i32, i64)> = plan
            .iter()
            .map(|(p, _, o)| (a.topic.clone(), *p, *o))
            .collect();
        bar.set_message(format!("committing {} offsets", offsets.len()));
        client
            .commit_group_offsets(&a.group, &offsets)
            .await
            .with_context(|| format!("committing new offsets for group '{}'", a.group))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    match fmt {
        OutputFormat::Json => print_json(&json!({
            "group": a.group,
            "executed": a.execute,
            "partitions": plan.iter().map(|(p, c, n)| json!({
                "topic": a.topic, "partition": p, "current_offset": c, "new_offset": n,
            })).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = plan
                .iter()
                .map(|(p, c, n)| {
                    vec![
                        a.group.clone(),
                        a.topic.clone(),
                        p.to_string(),
                        dash(*c),
                        n.to_string(),
                    ]
                })
                .collect();
            let mut text = table(
                &[
                    "GROUP",
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "NEW-OFFSET",
                ],
                &rows,
            );
            if !a.execute {
                text.push_str(
                    "\nDry run: nothing changed. Add --execute to commit these offsets.\n",
                );
            }
            print(&text)?;
        }
    }
    Ok(0)
}

/// Parses an RFC 3339 time (`2026-11-23T10:00:00Z`, `...T10:00:00.250+01:00`) to ms since the
/// Unix epoch.
fn parse_datetime(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid time '{s}': expected e.g. 2026-11-23T10:00:00Z");
    let (date, rest) = s.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let num = |v: &str| v.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d.as_slice() else {
        return Err(bad());
    };
    let (y, mo, da) = (num(y)?, num(mo)?, num(da)?);
    // Split the offset off the time of day.
    let (time, offset_min) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
        (t, sign * (num(oh)? * 60 + num(om)?))
    } else {
        return Err(bad());
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let t: Vec<&str> = hms.split(':').collect();
    let [h, mi, se] = t.as_slice() else {
        return Err(bad());
    };
    let (h, mi, se) = (num(h)?, num(mi)?, num(se)?);
    let ms = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        num(&digits)?
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, da);
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + se * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Percent-encodes a path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads `status` of `group` from Sluice's HTTP API; Err says why it is not known.
async fn http_status(server: &str, group: &str) -> Result<String, String> {
    let path = format!("/v1/groups/{}", encode_segment(group));
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(server)
            .await
            .map_err(|e| format!("HTTP API at {server} unreachable: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("HTTP API at {server}: {e}"))?;
        let mut buf = Vec::new();
        s.take(4 << 20)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| format!("HTTP API at {server}: {e}"))?;
        Ok::<Vec<u8>, String>(buf)
    };
    let raw = tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .map_err(|_| format!("HTTP API at {server} did not answer in 3 s"))??;
    parse_status_response(&raw).map_err(|e| format!("HTTP API at {server}: {e}"))
}

/// Extracts `status` from an HTTP response carrying the `/v1/groups/{g}` JSON.
fn parse_status_response(raw: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed HTTP status line")?;
    if code == 404 {
        return Err("the broker does not know this group (is this a Sluice broker?)".into());
    }
    if code != 200 {
        return Err(format!("HTTP status {code}"));
    }
    let v: Value = serde_json::from_str(body.trim()).map_err(|e| format!("bad JSON: {e}"))?;
    v.get("status")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "response has no status".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_datetime("2026-11-23T10:00:00Z"),
            Ok(1_795_428_000_000)
        );
        assert_eq!(
            parse_datetime("2026-11-23T11:00:00.5+01:00"),
            Ok(1_795_428_000_500)
        );
        assert_eq!(
            parse_datetime("2000-03-01T00:00:00-00:30"),
            Ok(951_870_600_000)
        );
        assert!(parse_datetime("2026-13-01T00:00:00Z").is_err());
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2026-11-23T10:00:00").is_err());
    }

    #[test]
    fn reset_targets_clamp() {
        assert_eq!(new_offset(Target::Earliest, Some(5), 2, 9), 2);
        assert_eq!(new_offset(Target::Latest, Some(5), 2, 9), 9);
        assert_eq!(new_offset(Target::Offset(100), None, 2, 9), 9);
        assert_eq!(new_offset(Target::Offset(0), None, 2, 9), 2);
        assert_eq!(new_offset(Target::Shift(-2), Some(5), 2, 9), 3);
        assert_eq!(new_offset(Target::Shift(-20), Some(5), 2, 9), 2);
        assert_eq!(new_offset(Target::ByTime(-1), Some(5), 2, 9), 9);
        assert_eq!(new_offset(Target::ByTime(4), Some(5), 2, 9), 4);
    }

    #[test]
    fn http_status_parsing() {
        let ok =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"status\":\"STALLED\"}";
        assert_eq!(parse_status_response(ok), Ok("STALLED".into()));
        let nf = b"HTTP/1.1 404 Not Found\r\n\r\n{\"error\":\"x\"}";
        assert!(parse_status_response(nf).is_err());
        assert!(parse_status_response(b"garbage").is_err());
        assert_eq!(encode_segment("a b/ç"), "a%20b%2F%C3%A7");
    }

    #[derive(Debug, clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: GroupsArgs,
    }

    fn parse(args: &[&str]) -> Result<Wrapper, clap::Error> {
        use clap::Parser;
        Wrapper::try_parse_from(std::iter::once("groups").chain(args.iter().copied()))
    }

    #[test]
    fn reset_needs_exactly_one_target() {
        let w = parse(&["reset-offsets", "g", "--topic", "t", "--shift-by", "-3"]).unwrap();
        match w.args.command {
            GroupsCommand::ResetOffsets(a) => {
                assert_eq!(a.shift_by, Some(-3));
                assert!(!a.execute);
            }
            other => panic!("parsed as {other:?}"),
        }
        let w = parse(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-datetime",
            "2026-11-23T10:00:00Z",
            "--execute",
        ])
        .unwrap();
        assert!(
            matches!(w.args.command, GroupsCommand::ResetOffsets(ref a) if a.execute && a.to_datetime == Some(1_795_428_000_000))
        );
        assert!(parse(&["reset-offsets", "g", "--topic", "t"]).is_err());
        assert!(parse(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
        assert!(parse(&["reset-offsets", "g", "--to-earliest"]).is_err());
        assert!(parse(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-datetime",
            "soon"
        ])
        .is_err());
        let w = parse(&["describe", "g", "--output", "json", "--http-server", "off"]).unwrap();
        assert!(matches!(w.args.command, GroupsCommand::Describe(ref d) if d.http_server == "off"));
        assert!(parse(&["describe"]).is_err());
    }

    #[test]
    fn lag_of_row() {
        let mut r = Row {
            topic: "t".into(),
            partition: 0,
            current: Some(3),
            end: Some(10),
            member: None,
        };
        assert_eq!(r.lag(), Some(7));
        r.current = None;
        assert_eq!(r.lag(), None);
    }
}
