//! End-to-end tests of `sluice consume --group`: the built `sluice` binary as a member of a
//! consumer group on a real broker.
//!
//! Broker: `SLUICE_TEST_BOOTSTRAP=host:port` uses a running one (e.g. Apache Kafka, for
//! differential checks; it should have `group.initial.rebalance.delay.ms=0`); otherwise every
//! test starts its own `sluice broker` (harness in `common/mod.rs`) on a free loopback port with
//! a fresh data directory and `group.initial.rebalance.delay.ms=0`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{parse_json, unique, wait_with_timeout, Broker};

/// Group tests wait longer per command than the other CLI tests (rebalances take time).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// A broker without the initial group rebalance delay; its commands time out after
/// [`COMMAND_TIMEOUT`].
fn start_broker() -> Broker {
    Broker::start_with(&["--set", "group.initial.rebalance.delay.ms=0"])
        .with_command_timeout(COMMAND_TIMEOUT)
}

impl Broker {
    /// Produces `key-{i}:value-{i}` for i in `range` and returns the lines a consumer prints
    /// with `--print-key`.
    fn produce_keyed(&self, topic: &str, range: std::ops::Range<u32>) -> Vec<String> {
        let input: String = range
            .clone()
            .map(|i| format!("key-{i}:value-{i}\n"))
            .collect();
        self.ok(
            &["produce", topic, "--key-separator", ":"],
            Some(input.as_bytes()),
        );
        range.map(|i| format!("key-{i}\tvalue-{i}")).collect()
    }

    fn describe(&self, group: &str) -> Value {
        let out = self.ok(
            &[
                "groups",
                "describe",
                group,
                "--http-server",
                "off",
                "--output",
                "json",
            ],
            None,
        );
        parse_json(&out)
    }

    /// Like `describe`, but `None` while the group does not exist yet (its first member may
    /// still be joining).
    fn try_describe(&self, group: &str) -> Option<Value> {
        let out = self.run(
            &[
                "groups",
                "describe",
                group,
                "--http-server",
                "off",
                "--output",
                "json",
            ],
            None,
        );
        out.status
            .success()
            .then(|| parse_json(&String::from_utf8_lossy(&out.stdout)))
    }
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// Asserts the group has no members and every partition of `topic` is committed at its log
/// end (lag 0).
fn assert_empty_without_lag(b: &Broker, group: &str, topic: &str, partitions: usize) {
    let d = b.describe(group);
    assert_eq!(d["state"], "Empty", "{d}");
    assert_eq!(d["members"], 0, "{d}");
    assert_eq!(d["total_lag"], 0, "{d}");
    let parts: Vec<&Value> = d["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["topic"] == topic)
        .collect();
    assert_eq!(parts.len(), partitions, "{d}");
    for p in parts {
        assert_eq!(p["lag"], 0, "{d}");
        assert_eq!(p["current_offset"], p["log_end_offset"], "{d}");
        assert_eq!(p["consumer_id"], Value::Null, "{d}");
    }
}

#[test]
fn group_commits_positions_across_runs() {
    let b = start_broker();
    let topic = unique("grp");
    let group = unique("g");
    b.create_topic(&topic, 3);
    let mut expected = b.produce_keyed(&topic, 0..30);
    expected.sort();

    let first = b.ok(
        &[
            "consume",
            &topic,
            "--group",
            &group,
            "--from-beginning",
            "--print-key",
            "--max-messages",
            "30",
            "--timeout-ms",
            "30000",
        ],
        None,
    );
    assert_eq!(sorted_lines(&first), expected);
    assert_empty_without_lag(&b, &group, &topic, 3);

    // Everything was committed: a second run (even --from-beginning) prints nothing.
    let second = b.ok(
        &[
            "consume",
            &topic,
            "--group",
            &group,
            "--from-beginning",
            "--print-key",
            "--timeout-ms",
            "2000",
        ],
        None,
    );
    assert_eq!(second, "");

    let mut more = b.produce_keyed(&topic, 30..35);
    more.sort();
    let third = b.ok(
        &[
            "consume",
            &topic,
            "--group",
            &group,
            "--print-key",
            "--timeout-ms",
            "3000",
        ],
        None,
    );
    assert_eq!(sorted_lines(&third), more);
    assert_empty_without_lag(&b, &group, &topic, 3);
}

#[test]
fn new_group_without_from_beginning_starts_at_the_end() {
    let b = start_broker();
    let topic = unique("latest");
    let group = unique("g");
    b.create_topic(&topic, 2);
    b.produce_keyed(&topic, 0..10);
    let out = b.ok(
        &["consume", &topic, "--group", &group, "--timeout-ms", "1500"],
        None,
    );
    assert_eq!(out, "");
    // The end positions were committed, so old records stay unread even --from-beginning.
    let mut more = b.produce_keyed(&topic, 10..12);
    more.sort();
    let out = b.ok(
        &[
            "consume",
            &topic,
            "--group",
            &group,
            "--from-beginning",
            "--print-key",
            "--timeout-ms",
            "2000",
        ],
        None,
    );
    assert_eq!(sorted_lines(&out), more);
}

#[test]
fn two_members_split_the_partitions() {
    let b = start_broker();
    let topic = unique("split");
    let group = unique("g");
    b.create_topic(&topic, 4);
    let mut expected = b.produce_keyed(&topic, 0..20);
    let consume = [
        "consume",
        &topic,
        "--group",
        &group,
        "--from-beginning",
        "--print-key",
        "--print-partition",
        "--timeout-ms",
        "8000",
    ];
    let c1 = b.spawn(&consume, None);
    std::thread::sleep(Duration::from_millis(500));
    let c2 = b.spawn(&consume, None);

    // Wait for a stable generation with both members owning two partitions each.
    let deadline = Instant::now() + Duration::from_secs(40);
    let owners = loop {
        let Some(d) = b.try_describe(&group) else {
            assert!(Instant::now() < deadline, "the group was never created");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let mut owners: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for p in d["partitions"].as_array().into_iter().flatten() {
            if let (Some(c), Some(n)) = (p["consumer_id"].as_str(), p["partition"].as_i64()) {
                owners.entry(c.to_owned()).or_default().push(n);
            }
        }
        if d["state"] == "Stable" && d["members"] == 2 && owners.len() == 2 {
            break owners;
        }
        assert!(
            Instant::now() < deadline,
            "the group never split between two members: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for parts in owners.values() {
        assert_eq!(parts.len(), 2, "{owners:?}");
    }
    // Range assignment: contiguous ranges.
    let mut ranges: Vec<Vec<i64>> = owners.values().cloned().collect();
    ranges.sort();
    assert_eq!(ranges, vec![vec![0, 1], vec![2, 3]]);

    expected.extend(b.produce_keyed(&topic, 20..40));
    expected.sort();
    let out1 = b.check(
        &["consume c1"],
        wait_with_timeout(c1, COMMAND_TIMEOUT, &["c1"]),
    );
    let out2 = b.check(
        &["consume c2"],
        wait_with_timeout(c2, COMMAND_TIMEOUT, &["c2"]),
    );

    // Every record exactly once across both members.
    let strip = |s: &str| -> Vec<(i64, String)> {
        s.lines()
            .map(|l| {
                let (p, rest) = l.split_once('\t').expect("partition field");
                let p = p
                    .trim_start_matches("Partition:")
                    .parse()
                    .expect("partition");
                (p, rest.to_owned())
            })
            .collect()
    };
    let (r1, r2) = (strip(&out1), strip(&out2));
    let mut all: Vec<String> = r1.iter().chain(&r2).map(|(_, l)| l.clone()).collect();
    all.sort();
    assert_eq!(all, expected, "c1:\n{out1}\nc2:\n{out2}");
    // The records produced after the split came from the partitions each member owned.
    let late = |r: &[(i64, String)]| -> Vec<i64> {
        let mut v: Vec<i64> = r
            .iter()
            .filter(|(_, l)| {
                l.trim_start_matches("key-")
                    .split('\t')
                    .next()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n >= 20)
            })
            .map(|(p, _)| *p)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let (l1, l2) = (late(&r1), late(&r2));
    assert!(
        l1.iter().all(|p| !l2.contains(p)),
        "both members read a partition: {l1:?} {l2:?}"
    );
    assert_empty_without_lag(&b, &group, &topic, 4);
}

#[test]
fn group_conflicts_with_partition_and_offset() {
    let b = start_broker();
    let topic = unique("conf");
    b.create_topic(&topic, 1);
    for extra in [["--partition", "0"], ["--offset", "earliest"]] {
        let mut args = vec!["consume", topic.as_str(), "--group", "g"];
        args.extend(extra);
        let out = b.run(&args, None);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot be used with"), "{err}");
    }
    let out = b.run(&["consume", &topic, "--session-timeout-ms", "6000"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--group"), "{err}");
}

#[test]
fn interrupt_commits_and_leaves() {
    let b = start_broker();
    let topic = unique("intr");
    let group = unique("g");
    b.create_topic(&topic, 2);
    let mut expected = b.produce_keyed(&topic, 0..10);
    expected.sort();
    // A long commit interval: only the commit on exit can store the positions.
    let mut child = b.spawn(
        &[
            "consume",
            &topic,
            "--group",
            &group,
            "--from-beginning",
            "--print-key",
            "--commit-interval-ms",
            "600000",
        ],
        None,
    );
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    while got.len() < expected.len() {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => got.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("consumer printed {got:?} then stopped ({e})");
            }
        }
    }
    got.sort();
    assert_eq!(got, expected);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let out = wait_with_timeout(child, COMMAND_TIMEOUT, &["consume (interrupted)"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(
        stderr.contains("Processed a total of 10 messages"),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_empty_without_lag(&b, &group, &topic, 2);
}

/// Commits `offset` for every partition of `topic` as an admin would.
fn commit_directly(b: &Broker, group: &str, topic: &str, partitions: i32, offset: i64) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut client = sluice_client::Client::connect(sluice_client::ClientConfig {
            bootstrap: b.bootstrap.clone(),
            ..Default::default()
        })
        .await
        .expect("connect");
        let offsets: Vec<(String, i32, i64)> = (0..partitions)
            .map(|p| (topic.to_owned(), p, offset))
            .collect();
        client
            .commit_group_offsets(group, &offsets)
            .await
            .expect("commit");
    });
}

#[test]
fn out_of_range_committed_offsets_reset_like_auto_offset_reset() {
    let b = start_broker();
    let topic = unique("oor");
    b.create_topic(&topic, 2);
    let mut old = b.produce_keyed(&topic, 0..6);
    old.sort();

    // --from-beginning: an out-of-range commit resets to the earliest offset.
    let early = unique("g");
    commit_directly(&b, &early, &topic, 2, 1000);
    let out = b.run(
        &[
            "consume",
            &topic,
            "--group",
            &early,
            "--from-beginning",
            "--print-key",
            "--timeout-ms",
            "2500",
        ],
        None,
    );
    let stdout = b.check(&["consume (earliest)"], out.clone());
    assert_eq!(sorted_lines(&stdout), old);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("out of range"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_empty_without_lag(&b, &early, &topic, 2);

    // Otherwise it resets to the end: old records are skipped, new ones read next time.
    let late = unique("g");
    commit_directly(&b, &late, &topic, 2, 1000);
    let out = b.ok(
        &["consume", &topic, "--group", &late, "--timeout-ms", "2000"],
        None,
    );
    assert_eq!(out, "");
    assert_empty_without_lag(&b, &late, &topic, 2);
    let mut new = b.produce_keyed(&topic, 6..8);
    new.sort();
    let out = b.ok(
        &[
            "consume",
            &topic,
            "--group",
            &late,
            "--print-key",
            "--timeout-ms",
            "2000",
        ],
        None,
    );
    assert_eq!(sorted_lines(&out), new);
}
