//! End-to-end tests of `sluice consume --group`: the built `sluice` binary as a member of a
//! consumer group on a real broker.
//!
//! Broker: `SLUICE_TEST_BOOTSTRAP=host:port` uses a running one (e.g. Apache Kafka, for
//! differential checks; it should have `group.initial.rebalance.delay.ms=0`); otherwise every
//! test starts its own `sluice broker` (same harness as `cli.rs`) on a free loopback port with
//! a fresh data directory and `group.initial.rebalance.delay.ms=0`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(60);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

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
        let dir = std::env::temp_dir().join(unique("sluice-group-test"));
        std::fs::create_dir_all(&dir).expect("create data dir");
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(SLUICE)
            .args(["broker", "--listen", &listen, "--data-dir"])
            .arg(&dir)
            .args(["--http", "off"])
            .args(["--set", "group.initial.rebalance.delay.ms=0"])
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

    /// Starts `sluice ARGS --bootstrap-server B` with optional stdin.
    fn spawn(&self, args: &[&str], stdin: Option<&[u8]>) -> Child {
        let mut child = Command::new(SLUICE)
            .args(args)
            .args(["--bootstrap-server", &self.bootstrap])
            .env_remove("SLUICE_BOOTSTRAP_SERVER")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        child
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        wait_with_timeout(self.spawn(args, stdin), COMMAND_TIMEOUT, args)
    }

    /// Runs a command, asserts success and returns stdout.
    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        self.check(args, self.run(args, stdin))
    }

    fn check(&self, args: &[&str], out: Output) -> String {
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
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{out}"))
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

/// Waits for `child`, draining its stdout/stderr concurrently, and kills it after `limit`.
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
    let b = Broker::start();
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
    let b = Broker::start();
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
    let b = Broker::start();
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
        let d = b.describe(&group);
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
    let b = Broker::start();
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
    let b = Broker::start();
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
    let b = Broker::start();
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
