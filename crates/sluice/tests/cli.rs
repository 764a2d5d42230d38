//! End-to-end tests of the console tools: they run the built `sluice` binary against a broker.
//!
//! Broker: `SLUICE_TEST_BOOTSTRAP=host:port` uses a running one (e.g. Apache Kafka, for
//! differential checks); otherwise every test starts its own `sluice broker` on a free loopback
//! port with a fresh data directory and waits for it to log `listening on`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{free_port, parse_json, unique, wait_with_timeout, Broker, SLUICE};

impl Broker {
    /// Reads back `n` records from the beginning as parsed JSON objects.
    fn consume_json(&self, topic: &str, n: usize) -> Vec<Value> {
        let out = self.ok(
            &[
                "consume",
                topic,
                "--from-beginning",
                "--max-messages",
                &n.to_string(),
                "--timeout-ms",
                "15000",
                "--output",
                "json",
            ],
            None,
        );
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

#[test]
fn unreachable_broker_gives_a_helpful_error() {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = Command::new(SLUICE)
        .args(["topics", "list", "--bootstrap-server", &addr])
        .output()
        .expect("run sluice");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("could not connect to {addr}")),
        "{err}"
    );
    assert!(err.contains("is a broker running?"), "{err}");
}

#[test]
fn topic_lifecycle() {
    let b = Broker::start();
    let topic = unique("life");

    let out = b.ok(
        &[
            "topics",
            "create",
            &topic,
            "--partitions",
            "3",
            "--config",
            "retention.ms=123456",
        ],
        None,
    );
    assert!(out.contains(&format!("Created topic {topic}")), "{out}");

    // Table list: the topic appears with 3 partitions.
    let out = b.ok(&["topics", "list"], None);
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(topic.as_str()));
    let cols: Vec<&str> = line
        .unwrap_or_else(|| panic!("{topic} missing from:\n{out}"))
        .split_whitespace()
        .collect();
    assert_eq!(cols[1], "3", "{out}");
    assert!(out.starts_with("NAME"), "{out}");

    // JSON list.
    let list = parse_json(&b.ok(&["topics", "list", "--output", "json"], None));
    let entry = list
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == topic.as_str()))
        .unwrap_or_else(|| panic!("{topic} missing from {list}"));
    assert_eq!(entry["partitions"], 3);

    // Describe shows the override and one row per partition.
    let out = b.ok(&["topics", "describe", &topic], None);
    assert!(out.contains("retention.ms=123456"), "{out}");
    assert!(out.contains("PARTITION"), "{out}");
    let desc = parse_json(&b.ok(&["topics", "describe", &topic, "--output", "json"], None));
    assert_eq!(desc[0]["name"], topic.as_str());
    assert_eq!(desc[0]["partition_count"], 3);
    assert_eq!(desc[0]["configs"]["retention.ms"], "123456");
    let parts = desc[0]["partitions"].as_array().expect("partitions array");
    assert_eq!(
        parts
            .iter()
            .map(|p| p["partition"].as_i64().unwrap_or(-1))
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    for p in parts {
        assert!(p["leader"].as_i64().unwrap_or(-1) >= 0, "{p}");
        assert!(
            !p["replicas"].as_array().expect("replicas").is_empty(),
            "{p}"
        );
    }

    // Duplicate create fails unless --if-not-exists.
    let err = b.fails(&["topics", "create", &topic]);
    assert!(err.contains("TOPIC_ALREADY_EXISTS"), "{err}");
    b.ok(&["topics", "create", &topic, "--if-not-exists"], None);

    // Alter to 5 partitions.
    b.ok(&["topics", "alter", &topic, "--partitions", "5"], None);
    let desc = parse_json(&b.ok(&["topics", "describe", &topic, "--output", "json"], None));
    assert_eq!(desc[0]["partition_count"], 5);

    // Shrinking is refused.
    let err = b.fails(&["topics", "alter", &topic, "--partitions", "2"]);
    assert!(err.contains("INVALID_PARTITIONS"), "{err}");

    // Delete, then deleting again fails unless --if-exists.
    let out = b.ok(&["topics", "delete", &topic], None);
    assert!(out.contains(&format!("Deleted topic {topic}")), "{out}");
    let err = b.fails(&["topics", "delete", &topic]);
    assert!(err.contains("does not exist"), "{err}");
    b.ok(&["topics", "delete", &topic, "--if-exists"], None);
    let err = b.fails(&["topics", "describe", &topic]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn validate_only_creates_nothing() {
    let b = Broker::start();
    let topic = unique("validate");
    let out = b.ok(
        &[
            "topics",
            "create",
            &topic,
            "--partitions",
            "2",
            "--validate-only",
        ],
        None,
    );
    assert!(out.contains("valid"), "{out}");
    let err = b.fails(&["topics", "describe", &topic]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn keyed_lines_round_trip_and_follow_kafka_partitioning() {
    let b = Broker::start();
    let topic = unique("keyed");
    b.create_topic(&topic, 3);
    let mut input = String::new();
    let mut expected = Vec::new();
    for i in 0..30 {
        input.push_str(&format!("key-{i}:value {i}\n"));
        expected.push(format!("key-{i}\tvalue {i}"));
    }
    let summary = parse_json(&b.ok(
        &[
            "produce",
            &topic,
            "--key-separator",
            ":",
            "--output",
            "json",
        ],
        Some(input.as_bytes()),
    ));
    assert_eq!(summary["count"], 30);

    let out = b.ok(
        &[
            "consume",
            &topic,
            "--from-beginning",
            "--print-key",
            "--max-messages",
            "30",
            "--timeout-ms",
            "15000",
        ],
        None,
    );
    let mut got: Vec<String> = out.lines().map(str::to_owned).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);

    // Same partition as Kafka's default partitioner, and per-partition order preserved.
    let records = b.consume_json(&topic, 30);
    assert_eq!(records.len(), 30);
    let mut last_per_partition = std::collections::HashMap::new();
    for r in &records {
        let key = r["key"].as_str().expect("key");
        let p = r["partition"].as_i64().expect("partition") as i32;
        assert_eq!(
            p,
            sluice_client::partition_for_key(key.as_bytes(), 3),
            "{r}"
        );
        let n: i64 = key.trim_start_matches("key-").parse().expect("numeric key");
        if let Some(prev) = last_per_partition.insert(p, n) {
            assert!(n > prev, "order within partition {p}: {prev} then {n}");
        }
    }
}

#[test]
fn headers_are_attached_and_printed() {
    let b = Broker::start();
    let topic = unique("headers");
    b.create_topic(&topic, 1);
    b.ok(
        &[
            "produce",
            &topic,
            "--header",
            "source=cli",
            "--header",
            "trace=abc=1",
        ],
        Some(b"one\ntwo\n"),
    );
    let out = b.ok(
        &[
            "consume",
            &topic,
            "--from-beginning",
            "--print-headers",
            "--max-messages",
            "2",
            "--timeout-ms",
            "15000",
        ],
        None,
    );
    assert_eq!(
        out,
        "source:cli,trace:abc=1\tone\nsource:cli,trace:abc=1\ttwo\n"
    );
    let records = b.consume_json(&topic, 2);
    assert_eq!(records[0]["headers"]["source"], "cli");
    assert_eq!(records[1]["headers"]["trace"], "abc=1");
}

#[test]
fn every_compression_round_trips() {
    let b = Broker::start();
    let topic = unique("codecs");
    b.create_topic(&topic, 1);
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let mut expected = Vec::new();
    for codec in codecs {
        let mut input = String::new();
        for i in 0..200 {
            let line = format!("{codec} record {i} {}", "x".repeat(i % 50));
            input.push_str(&line);
            input.push('\n');
            expected.push(line);
        }
        b.ok(
            &[
                "produce",
                &topic,
                "--compression",
                codec,
                "--batch-size",
                "64",
            ],
            Some(input.as_bytes()),
        );
    }
    let records = b.consume_json(&topic, expected.len());
    let values: Vec<String> = records
        .iter()
        .map(|r| r["value"].as_str().expect("value").to_owned())
        .collect();
    assert_eq!(values, expected);
    let offsets: Vec<i64> = records
        .iter()
        .map(|r| r["offset"].as_i64().expect("offset"))
        .collect();
    assert_eq!(offsets, (0..expected.len() as i64).collect::<Vec<_>>());
}

#[test]
fn null_marker_sends_tombstones_and_summary_has_offsets() {
    let b = Broker::start();
    let topic = unique("nulls");
    b.create_topic(&topic, 1);
    let summary = parse_json(&b.ok(
        &[
            "produce",
            &topic,
            "--key-separator",
            "=",
            "--null-value-marker",
            "<null>",
            "--output",
            "json",
        ],
        Some(b"a=1\na=<null>\n"),
    ));
    assert_eq!(summary["count"], 2);
    assert_eq!(summary["partitions"][0]["first_offset"], 0);
    assert_eq!(summary["partitions"][0]["last_offset"], 1);
    let records = b.consume_json(&topic, 2);
    assert_eq!(records[0]["value"], "1");
    assert_eq!(records[1]["key"], "a");
    assert_eq!(records[1]["value"], Value::Null);
}

#[test]
fn consume_from_offset_and_partition() {
    let b = Broker::start();
    let topic = unique("offsets");
    b.create_topic(&topic, 2);
    b.ok(
        &["produce", &topic, "--partition", "1"],
        Some(b"a\nb\nc\nd\n"),
    );
    let out = b.ok(
        &[
            "consume",
            &topic,
            "--partition",
            "1",
            "--offset",
            "2",
            "--print-offset",
            "--timeout-ms",
            "2000",
        ],
        None,
    );
    assert_eq!(out, "Offset:2\tc\nOffset:3\td\n");
    // Partition 0 is empty: the timeout ends the consumer cleanly with no output.
    let out = b.ok(
        &[
            "consume",
            &topic,
            "--partition",
            "0",
            "--from-beginning",
            "--timeout-ms",
            "1000",
        ],
        None,
    );
    assert_eq!(out, "");
    // Default start is "latest": nothing old is printed.
    let out = b.ok(&["consume", &topic, "--timeout-ms", "1000"], None);
    assert_eq!(out, "");
    let err = b.fails(&["consume", &topic, "--offset", "1"]);
    assert!(err.contains("--partition"), "{err}");
    let err = b.fails(&["consume", &topic, "--partition", "7", "--timeout-ms", "500"]);
    assert!(err.contains("no partition 7"), "{err}");
}

#[test]
fn producing_to_a_missing_topic_fails_clearly() {
    let b = Broker::start();
    let topic = unique("missing");
    let out = b.run(&["produce", &topic], Some(b"x\n"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    let out = b.run(
        &["produce", &topic, "--key-separator", ":"],
        Some(b"no separator here\n"),
    );
    assert!(!out.status.success());
}

#[test]
fn separators_understand_escapes() {
    let b = Broker::start();
    let topic = unique("seps");
    b.create_topic(&topic, 1);
    b.ok(
        &["produce", &topic, "--key-separator", "\\t"],
        Some(b"k1\tv:1\n"),
    );
    let out = b.ok(
        &[
            "consume",
            &topic,
            "--from-beginning",
            "--print-key",
            "--key-separator",
            " => ",
            "--max-messages",
            "1",
            "--timeout-ms",
            "15000",
        ],
        None,
    );
    assert_eq!(out, "k1 => v:1\n");
}

#[test]
fn acks_modes_all_deliver() {
    let b = Broker::start();
    let topic = unique("acks");
    b.create_topic(&topic, 1);
    for acks in ["0", "1", "all"] {
        b.ok(
            &["produce", &topic, "--acks", acks],
            Some(format!("acks={acks}\n").as_bytes()),
        );
    }
    let mut values: Vec<String> = b
        .consume_json(&topic, 3)
        .iter()
        .map(|r| r["value"].as_str().expect("value").to_owned())
        .collect();
    values.sort();
    assert_eq!(values, vec!["acks=0", "acks=1", "acks=all"]);
}

#[test]
fn consumer_exits_cleanly_when_stdout_closes() {
    let b = Broker::start();
    let topic = unique("pipe");
    b.create_topic(&topic, 1);
    let input: String = (0..5000)
        .map(|i| format!("line {i} {}\n", "y".repeat(100)))
        .collect();
    b.ok(&["produce", &topic], Some(input.as_bytes()));
    let mut child = Command::new(SLUICE)
        .args([
            "consume",
            &topic,
            "--from-beginning",
            "--bootstrap-server",
            &b.bootstrap,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consumer");
    {
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        reader.read_line(&mut first).expect("read a line");
        assert!(first.starts_with("line 0 "), "{first}");
        // Dropping the reader closes the pipe, like `| head -1`.
    }
    let out = wait_with_timeout(child, Duration::from_secs(30), &["consume (closed pipe)"]);
    assert!(
        out.status.success(),
        "exit {} stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
