//! Shared harness for the end-to-end CLI tests (`cli.rs`, `cli_configs.rs`, `cli_group.rs`):
//! they run the built `sluice` binary against a broker.
//!
//! Broker: `SLUICE_TEST_BOOTSTRAP=host:port` uses a running one (e.g. Apache Kafka, for
//! differential checks); otherwise every test starts its own `sluice broker` on a free loopback
//! port with a fresh data directory and waits for it to log `listening on`.

// Each test binary compiles this module on its own and uses only some of the helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The `sluice` binary under test.
pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
/// How long a started broker may take to log `listening on`.
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit for one console command (see [`Broker::with_command_timeout`]).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, for topics, groups and data directories.
pub fn unique(prefix: &str) -> String {
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

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Parses `s` as JSON, panicking with the text on failure.
pub fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{s}"))
}

/// A broker for one test: either external (env) or a child `sluice broker` process.
pub struct Broker {
    /// The `host:port` console commands are pointed at.
    pub bootstrap: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
    log: Arc<Mutex<String>>,
    command_timeout: Duration,
}

impl Broker {
    /// Starts a broker with its default settings (or uses `SLUICE_TEST_BOOTSTRAP`).
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts `sluice broker` with `extra` appended to its arguments (e.g.
    /// `["--set", "group.initial.rebalance.delay.ms=0"]`). With `SLUICE_TEST_BOOTSTRAP` set the
    /// external broker is used as it is and `extra` is ignored.
    pub fn start_with(extra: &[&str]) -> Broker {
        if let Ok(b) = std::env::var("SLUICE_TEST_BOOTSTRAP") {
            if !b.trim().is_empty() {
                return Broker {
                    bootstrap: b,
                    child: None,
                    dir: None,
                    log: Arc::default(),
                    command_timeout: COMMAND_TIMEOUT,
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
            .args(extra)
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
            command_timeout: COMMAND_TIMEOUT,
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

    /// Sets the limit [`Broker::run`] (and so [`Broker::ok`], [`Broker::fails`]) puts on one
    /// command; the default is [`COMMAND_TIMEOUT`].
    pub fn with_command_timeout(mut self, limit: Duration) -> Broker {
        self.command_timeout = limit;
        self
    }

    /// Everything the child broker has printed so far (empty for an external broker).
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Starts `sluice ARGS --bootstrap-server B` with optional stdin.
    pub fn spawn(&self, args: &[&str], stdin: Option<&[u8]>) -> Child {
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

    /// Runs `sluice ARGS --bootstrap-server B` with optional stdin, killing it after the
    /// command timeout.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        wait_with_timeout(self.spawn(args, stdin), self.command_timeout, args)
    }

    /// Like [`Broker::run`] but asserts success and returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        self.check(args, self.run(args, stdin))
    }

    /// Asserts `out` (of `sluice ARGS`) is a success and returns its stdout.
    pub fn check(&self, args: &[&str], out: Output) -> String {
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
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            !out.status.success(),
            "sluice {args:?} unexpectedly succeeded:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Creates `name` with `partitions` partitions, asserting success.
    pub fn create_topic(&self, name: &str, partitions: u32) {
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
pub fn wait_with_timeout(mut child: Child, limit: Duration, args: &[&str]) -> Output {
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

/// One node of a [`Cluster`]: a `sluice broker` process that is a broker and a quorum voter.
pub struct ClusterNode {
    /// Node id (1..n).
    pub id: i32,
    /// Kafka `host:port`.
    pub bootstrap: String,
    /// HTTP `host:port`.
    pub http: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

/// A cluster of `n` combined broker+controller nodes on loopback, each with its own data dir
/// and HTTP port; killed and removed on drop.
pub struct Cluster {
    /// The nodes, by id order.
    pub nodes: Vec<ClusterNode>,
    dir: PathBuf,
}

impl Cluster {
    /// Starts `n` nodes (`--controller-quorum` naming all of them) and waits until each has
    /// logged `listening on`.
    pub fn start(n: i32) -> Cluster {
        let dir = std::env::temp_dir().join(unique("sluice-cluster-test"));
        std::fs::create_dir_all(&dir).expect("create cluster dir");
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let quorum = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{}", i + 1, p.1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        let mut ready = Vec::new();
        for (i, (kafka, ctl, http)) in ports.iter().enumerate() {
            let id = i as i32 + 1;
            let data = dir.join(format!("node{id}"));
            let listen = format!("127.0.0.1:{kafka}");
            let mut child = Command::new(SLUICE)
                .args(["broker", "--node-id", &id.to_string()])
                .args(["--listen", &listen, "--advertised", &listen])
                .args(["--controller-listen", &format!("127.0.0.1:{ctl}")])
                .args(["--controller-quorum", &quorum])
                .arg("--data-dir")
                .arg(&data)
                .args(["--http", &format!("127.0.0.1:{http}")])
                .env_remove("SLUICE_CONFIG")
                .env_remove("SLUICE_SET")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn sluice broker");
            let log = Arc::new(Mutex::new(String::new()));
            let (tx, rx) = mpsc::channel::<()>();
            let pipes: Vec<Box<dyn Read + Send>> = vec![
                Box::new(child.stdout.take().expect("stdout")),
                Box::new(child.stderr.take().expect("stderr")),
            ];
            for pipe in pipes {
                let log = Arc::clone(&log);
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines() {
                        let Ok(line) = line else { break };
                        if line.contains("listening on") {
                            let _ = tx.send(());
                        }
                        if let Ok(mut l) = log.lock() {
                            l.push_str(&line);
                            l.push('\n');
                        }
                    }
                });
            }
            ready.push(rx);
            nodes.push(ClusterNode {
                id,
                bootstrap: listen,
                http: format!("127.0.0.1:{http}"),
                child,
                log,
            });
        }
        let cluster = Cluster { nodes, dir };
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        for (i, rx) in ready.iter().enumerate() {
            while rx.recv_timeout(Duration::from_millis(100)).is_err() {
                if Instant::now() > deadline {
                    panic!(
                        "node {} did not log 'listening on' in time:\n{}",
                        i + 1,
                        cluster.logs()
                    );
                }
            }
        }
        cluster
    }

    /// Every node's log so far.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- node {} ---\n{}",
                    n.id,
                    n.log.lock().map(|l| l.clone()).unwrap_or_default()
                )
            })
            .collect()
    }

    /// Runs `sluice ARGS --bootstrap-server <node 1>` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        let child = Command::new(SLUICE)
            .args(args)
            .args(["--bootstrap-server", &self.nodes[0].bootstrap])
            .env_remove("SLUICE_BOOTSTRAP_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        wait_with_timeout(child, COMMAND_TIMEOUT, args)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET http://ADDR/PATH` (HTTP/1.0, no keep-alive); returns the status code and body.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
