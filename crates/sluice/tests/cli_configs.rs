//! End-to-end tests of `sluice configs describe|alter`: the built `sluice` binary against a
//! broker.
//!
//! Broker: `SLUICE_TEST_BOOTSTRAP=host:port` uses a running one (e.g. Apache Kafka, for
//! differential checks); otherwise every test starts its own `sluice broker` (same harness as
//! `cli.rs`) on a free loopback port with a fresh data directory.

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

/// Runs `sluice configs ARGS`, asserts exit code 1 and returns stderr.
fn fails_with_1(b: &Broker, args: &[&str]) -> String {
    let out = b.run(args, None);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "sluice {args:?}: expected exit code 1\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// The configs `describe` reports for `topic` as (name -> object), non-default only unless
/// `all`.
fn describe(b: &Broker, topic: &str, all: bool) -> Vec<Value> {
    let mut args = vec!["configs", "describe", "--topic", topic, "--output", "json"];
    if all {
        args.push("--all");
    }
    let v = parse_json(&b.ok(&args, None));
    v.as_array()
        .unwrap_or_else(|| panic!("describe output is not an array: {v}"))
        .clone()
}

fn entry<'a>(configs: &'a [Value], name: &str) -> Option<&'a Value> {
    configs.iter().find(|c| c["name"] == name)
}

fn names(configs: &[Value]) -> Vec<String> {
    configs
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn fresh_topic_has_no_non_default_configs() {
    let b = Broker::start();
    let topic = unique("fresh");
    b.create_topic(&topic, 1);

    assert_eq!(describe(&b, &topic, false), Vec::<Value>::new());
    let out = b.ok(&["configs", "describe", "--topic", &topic], None);
    assert!(out.contains("no non-default configs"), "{out}");

    // --all lists the defaults, marked as such.
    let all = describe(&b, &topic, true);
    let retention = entry(&all, "retention.ms").expect("retention.ms in --all");
    assert_eq!(retention["source"], "DEFAULT_CONFIG", "{retention}");
    assert_eq!(retention["default"], true, "{retention}");
    assert!(entry(&all, "cleanup.policy").is_some(), "{all:?}");
    let table = b.ok(&["configs", "describe", "--topic", &topic, "--all"], None);
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "NAME",
        "VALUE",
        "SOURCE",
        "DEFAULT",
        "READ-ONLY",
        "SENSITIVE",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("retention.ms ") && l.contains("DEFAULT_CONFIG")),
        "{table}"
    );
}

#[test]
fn set_delete_append_subtract_round_trip() {
    let b = Broker::start();
    let topic = unique("alter");
    b.create_topic(&topic, 1);

    let out = b.ok(
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--set",
            "retention.ms=1000",
            "--set",
            "cleanup.policy=compact",
        ],
        None,
    );
    assert_eq!(out, format!("Altered configs of topic {topic}.\n"));
    let cfg = describe(&b, &topic, false);
    assert_eq!(names(&cfg), ["cleanup.policy", "retention.ms"], "{cfg:?}");
    for (name, value) in [("retention.ms", "1000"), ("cleanup.policy", "compact")] {
        let e = entry(&cfg, name).expect("entry");
        assert_eq!(e["value"], value, "{e}");
        assert_eq!(e["source"], "DYNAMIC_TOPIC_CONFIG", "{e}");
        assert_eq!(e["default"], false, "{e}");
        assert_eq!(e["sensitive"], false, "{e}");
    }
    // The table shows the same.
    let table = b.ok(&["configs", "describe", "--topic", &topic], None);
    assert!(
        table.lines().any(|l| l.starts_with("retention.ms")
            && l.contains("1000")
            && l.contains("DYNAMIC_TOPIC_CONFIG")),
        "{table}"
    );

    // --synonyms: the chain starts at the topic override and ends at a default.
    let syn = parse_json(&b.ok(
        &[
            "configs",
            "describe",
            "--topic",
            &topic,
            "--synonyms",
            "--output",
            "json",
        ],
        None,
    ));
    let chain = syn
        .as_array()
        .and_then(|a| entry(a, "retention.ms"))
        .map(|e| e["synonyms"].clone())
        .expect("retention.ms with synonyms");
    let chain = chain.as_array().expect("synonyms array");
    assert!(chain.len() >= 2, "{chain:?}");
    assert_eq!(chain[0]["name"], "retention.ms", "{chain:?}");
    assert_eq!(chain[0]["value"], "1000", "{chain:?}");
    assert_eq!(chain[0]["source"], "DYNAMIC_TOPIC_CONFIG", "{chain:?}");
    let table = b.ok(
        &["configs", "describe", "--topic", &topic, "--synonyms"],
        None,
    );
    assert!(
        table.contains("retention.ms=1000 (DYNAMIC_TOPIC_CONFIG)"),
        "{table}"
    );

    // --delete restores the default.
    b.ok(
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--delete",
            "retention.ms",
        ],
        None,
    );
    let cfg = describe(&b, &topic, false);
    assert_eq!(names(&cfg), ["cleanup.policy"], "{cfg:?}");
    let all = describe(&b, &topic, true);
    assert_eq!(
        entry(&all, "retention.ms").map(|e| e["source"].clone()),
        Some(Value::from("DEFAULT_CONFIG")),
        "{all:?}"
    );

    // --append and --subtract edit the list.
    b.ok(
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--append",
            "cleanup.policy=delete",
        ],
        None,
    );
    let cfg = describe(&b, &topic, false);
    assert_eq!(
        entry(&cfg, "cleanup.policy").map(|e| e["value"].clone()),
        Some(Value::from("compact,delete")),
        "{cfg:?}"
    );
    b.ok(
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--subtract",
            "cleanup.policy=compact",
        ],
        None,
    );
    let cfg = describe(&b, &topic, false);
    assert_eq!(
        entry(&cfg, "cleanup.policy").map(|e| e["value"].clone()),
        Some(Value::from("delete")),
        "{cfg:?}"
    );

    // JSON output of alter.
    let out = parse_json(&b.ok(
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--set",
            "retention.ms=2000",
            "--output",
            "json",
        ],
        None,
    ));
    assert_eq!(out["altered"], true, "{out}");
    assert_eq!(out["resource"]["name"], topic.as_str(), "{out}");
}

#[test]
fn invalid_changes_fail_with_invalid_config_and_change_nothing() {
    let b = Broker::start();
    let topic = unique("invalid");
    b.create_topic(&topic, 1);
    b.ok(
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--set",
            "retention.ms=5000",
        ],
        None,
    );
    let before = describe(&b, &topic, false);

    let err = fails_with_1(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--set",
            "segment.bytes=10",
        ],
    );
    assert!(err.contains("INVALID_CONFIG"), "{err}");
    assert!(err.contains("segment.bytes"), "{err}");

    let err = fails_with_1(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--set",
            "no.such.config=1",
        ],
    );
    assert!(err.contains("INVALID_CONFIG"), "{err}");
    assert!(err.contains("no.such.config"), "{err}");

    // A batch with one bad change applies none of it.
    let err = fails_with_1(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--set",
            "retention.ms=1",
            "--set",
            "segment.bytes=10",
        ],
    );
    assert!(err.contains("INVALID_CONFIG"), "{err}");
    assert_eq!(describe(&b, &topic, false), before);
}

#[test]
fn validate_only_changes_nothing() {
    let b = Broker::start();
    let topic = unique("validate");
    b.create_topic(&topic, 1);
    let out = b.ok(
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--set",
            "retention.ms=1000",
            "--delete",
            "cleanup.policy",
            "--validate-only",
        ],
        None,
    );
    assert!(out.contains("validate only"), "{out}");
    assert_eq!(describe(&b, &topic, false), Vec::<Value>::new());
    // Validation still rejects bad values.
    let err = fails_with_1(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            &topic,
            "--set",
            "segment.bytes=10",
            "--validate-only",
        ],
    );
    assert!(err.contains("INVALID_CONFIG"), "{err}");
}

#[test]
fn usage_and_missing_topic_errors_are_clear() {
    let b = Broker::start();
    let topic = unique("usage");
    b.create_topic(&topic, 1);

    let err = fails_with_1(&b, &["configs", "alter", "--topic", &topic]);
    assert!(err.contains("at least one of --set"), "{err}");

    let missing = unique("missing");
    let err = fails_with_1(&b, &["configs", "describe", "--topic", &missing]);
    assert!(
        err.contains(&format!("topic '{missing}' does not exist")),
        "{err}"
    );
    let err = fails_with_1(
        &b,
        &[
            "configs",
            "alter",
            "--topic",
            &missing,
            "--set",
            "retention.ms=1",
        ],
    );
    assert!(
        err.contains(&format!("topic '{missing}' does not exist")),
        "{err}"
    );

    // Exactly one of --topic / --broker (a usage error).
    let out = b.run(&["configs", "describe"], None);
    assert!(!out.status.success());
    let out = b.run(
        &["configs", "describe", "--topic", &topic, "--broker", "1"],
        None,
    );
    assert!(!out.status.success());
}

#[test]
fn broker_configs_are_described_and_static() {
    let b = Broker::start();
    let all = parse_json(&b.ok(
        &[
            "configs", "describe", "--broker", "1", "--all", "--output", "json",
        ],
        None,
    ));
    let all = all.as_array().expect("array");
    let np = entry(all, "num.partitions").expect("num.partitions listed");
    assert!(
        np["value"]
            .as_str()
            .is_some_and(|v| v.parse::<i32>().is_ok()),
        "{np}"
    );
    let table = b.ok(&["configs", "describe", "--broker", "1", "--all"], None);
    assert!(
        table.lines().any(|l| l.starts_with("num.partitions ")),
        "{table}"
    );

    // Sluice's broker configs are static: the broker's refusal is surfaced with exit 1.
    let err = fails_with_1(
        &b,
        &[
            "configs",
            "alter",
            "--broker",
            "1",
            "--set",
            "num.partitions=3",
        ],
    );
    assert!(err.contains("alter configs of broker 1"), "{err}");

    // An unknown broker id is a clear error.
    let err = fails_with_1(&b, &["configs", "describe", "--broker", "99"]);
    assert!(err.contains("broker 99 is not in the cluster"), "{err}");
}
