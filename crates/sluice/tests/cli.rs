//! End-to-end tests of the console tools: they run the built `sluice` binary against a broker.
//!
//! Broker: `SLUICE_TEST_BOOTSTRAP=host:port` uses a running one (e.g. Apache Kafka, for
//! differential checks); otherwise every test starts its own `sluice broker` on a free loopback
//! port with a fresh data directory and waits for it to log `listening on`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(60);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A broker for one test: either external (env) or a child `sluice broker` process.
struct Broker {
    bootstrap: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
    log: Arc<Mutex<String>>,
}

impl Broker {
    fn start() -> Broker {
        if let Ok(b) = std::env::var("SLUICE_TEST_BOOTSTRAP") {
            if !b.trim().is_empty() {
                return Broker {
                    bootstrap: b,
                    child: None,
                    dir: None,
                    log: Arc::default(),
                };
            }
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("sluice-cli-test"));
        std::fs::create_dir_all(&dir).expect("create data dir");
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(SLUICE)
            .args(["broker", "--listen", &listen, "--data-dir"])
            .arg(&dir)
            .args(["--http", "off"])
            .env_remove("SLUICE_CONFIG")
            .env_remove("SLUICE_SET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice broker");
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let pipes: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for pipe in pipes {
            let log = Arc::clone(&log);
            let ready_tx = ready_tx.clone();
            // Keeps draining after readiness so the broker never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("listening on") {
                        let _ = ready_tx.send(());
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        let mut broker = Broker {
            bootstrap: listen,
            child: Some(child),
            dir: Some(dir),
            log,
        };
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                return broker;
            }
            let exited = broker
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "sluice broker exited with {status} before listening:\n{}",
                    broker.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "sluice broker did not log 'listening on' within {BROKER_START_TIMEOUT:?}:\n{}",
                    broker.log_text()
                );
            }
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Runs `sluice ARGS --bootstrap-server B` with optional stdin, killing it after a timeout.
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(SLUICE);
        cmd.args(args)
            .args(["--bootstrap-server", &self.bootstrap])
            .env_remove("SLUICE_BOOTSTRAP_SERVER")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn sluice");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        wait_with_timeout(child, COMMAND_TIMEOUT, args)
    }

    /// Like [`Broker::run`] but asserts success and returns stdout.
    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "sluice {args:?} failed ({}):\nstdout: {}\nstderr: {}\nbroker log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Asserts the command fails and returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            !out.status.success(),
            "sluice {args:?} unexpectedly succeeded:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        self.ok(
            &[
                "topics",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ],
            None,
        );
    }

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

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Waits for `child`, draining its stdout/stderr concurrently (so a chatty child never blocks
/// on a full pipe), and kills it after `limit`.
fn wait_with_timeout(mut child: Child, limit: Duration, args: &[&str]) -> Output {
    fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait after kill");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for sluice: {e}"),
        }
    };
    let out = Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    if timed_out {
        panic!(
            "sluice {args:?} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{s}"))
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
