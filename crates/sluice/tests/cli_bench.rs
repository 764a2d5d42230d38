//! `sluice bench` against a real broker process: the JSON summaries must add up (records
//! counted == records asked for == records in the topic, bytes == records x size, ordered
//! percentiles), with and without a group, idempotence and compression, and end to end.
//! Small record counts: these check the tool's accounting, never its speed.

use serde_json::Value;

mod common;
use common::{parse_json, unique, Broker};

impl Broker {
    /// Runs `sluice bench ARGS --output json --quiet` and parses the summary.
    fn bench(&self, args: &[&str]) -> Value {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--output", "json", "--quiet"]);
        parse_json(&self.ok(&all, None))
    }
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number '{key}' in {v}"))
}

/// Rates and percentiles are present and ordered.
fn check_figures(v: &Value, records: u64, bytes: u64) {
    assert_eq!(v["records"].as_u64(), Some(records), "{v}");
    assert_eq!(v["bytes"].as_u64(), Some(bytes), "{v}");
    let elapsed = num(v, "elapsed_s");
    assert!(elapsed > 0.0, "{v}");
    let rate = num(v, "records_per_sec");
    assert!((rate * elapsed - records as f64).abs() < 1.0, "{v}");
    let mb = num(v, "mb_per_sec");
    assert!(
        (mb * elapsed * 1024.0 * 1024.0 - bytes as f64).abs() < 1024.0,
        "{v}"
    );
    let l = &v["latency_ms"];
    let ps: Vec<f64> = ["p50", "p95", "p99", "p999", "max"]
        .iter()
        .map(|k| num(l, k))
        .collect();
    assert!(ps[0] > 0.0, "{v}");
    assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{v}");
    let avg = num(l, "avg");
    assert!(avg > 0.0 && avg <= ps[4], "{v}");
    let series = v["series"].as_array().expect("series");
    assert!(!series.is_empty(), "{v}");
    let last = series.last().expect("a sample");
    assert_eq!(last["records"].as_u64(), Some(records), "{v}");
}

#[test]
fn produce_then_consume_counts_every_record() {
    let b = Broker::start();
    let topic = unique("bench");
    let dir = tempfile::tempdir().expect("temp dir");
    let plot = dir.path().join("produce.svg");
    let plot_arg = plot.to_string_lossy().to_string();
    let p = b.bench(&[
        "produce",
        "--topic",
        &topic,
        "--num-records",
        "5000",
        "--record-size",
        "200",
        "--partitions",
        "3",
        "--producers",
        "2",
        "--acks",
        "1",
        "--batch-size",
        "4096",
        "--plot",
        &plot_arg,
    ]);
    assert_eq!(p["mode"], "produce");
    assert_eq!(p["partitions"].as_u64(), Some(3));
    check_figures(&p, 5000, 5000 * 200);
    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    assert!(
        svg.starts_with("<svg") && svg.contains("MB/s"),
        "{svg:.200}"
    );

    // Every record is in the topic, and no more: asking for one more runs into the timeout.
    let c = b.bench(&["consume", "--topic", &topic, "--num-records", "5000"]);
    assert_eq!(c["mode"], "consume");
    check_figures(&c, 5000, 5000 * 200);
    let ends: i64 = c["positions"]
        .as_object()
        .expect("positions")
        .values()
        .map(|o| o.as_i64().expect("offset"))
        .sum();
    assert_eq!(ends, 5000, "{c}");
    let over = b.run(
        &[
            "bench",
            "consume",
            "--topic",
            &topic,
            "--num-records",
            "5001",
            "--timeout-ms",
            "700",
            "--output",
            "json",
            "--quiet",
        ],
        None,
    );
    assert_eq!(over.status.code(), Some(3), "{over:?}");
    let over = parse_json(&String::from_utf8_lossy(&over.stdout));
    assert_eq!(over["records"].as_u64(), Some(5000), "{over}");
    assert_eq!(over["timed_out"], true);
    assert!(String::from_utf8_lossy(
        &b.run(
            &[
                "bench",
                "consume",
                "--topic",
                &topic,
                "--num-records",
                "5001",
                "--timeout-ms",
                "300",
                "--quiet"
            ],
            None
        )
        .stderr
    )
    .contains("stopped after 5000 of 5001 records"));
}

#[test]
fn idempotent_compressed_produce_and_group_consume() {
    let b = Broker::start();
    let topic = unique("bench-idem");
    let group = unique("bench-group");
    for codec in ["lz4", "zstd"] {
        let p = b.bench(&[
            "produce",
            "--topic",
            &topic,
            "--num-records",
            "3000",
            "--record-size",
            "100",
            "--partitions",
            "2",
            "--idempotence",
            "--max-in-flight",
            "5",
            "--compression",
            codec,
        ]);
        check_figures(&p, 3000, 3000 * 100);
        assert_eq!(p["config"]["compression"], codec);
        assert_eq!(p["config"]["idempotence"], true);
    }
    let c = b.bench(&[
        "consume",
        "--topic",
        &topic,
        "--num-records",
        "6000",
        "--group",
        &group,
    ]);
    check_figures(&c, 6000, 6000 * 100);
    assert_eq!(c["group"], group.as_str());
    // The group committed where it stopped: nothing is left for it.
    let again = b.run(
        &[
            "bench",
            "consume",
            "--topic",
            &topic,
            "--num-records",
            "1",
            "--group",
            &group,
            "--timeout-ms",
            "500",
            "--output",
            "json",
            "--quiet",
        ],
        None,
    );
    assert_eq!(again.status.code(), Some(3), "{again:?}");
    let again = parse_json(&String::from_utf8_lossy(&again.stdout));
    assert_eq!(again["records"].as_u64(), Some(0), "{again}");

    // Kafka's limits on idempotence.
    let err = b.fails(&[
        "bench",
        "produce",
        "--topic",
        &topic,
        "--num-records",
        "1",
        "--idempotence",
        "--acks",
        "1",
    ]);
    assert!(err.contains("--idempotence needs --acks all"), "{err}");
    let err = b.fails(&[
        "bench",
        "produce",
        "--topic",
        &topic,
        "--num-records",
        "1",
        "--idempotence",
        "--max-in-flight",
        "6",
    ]);
    assert!(err.contains("at most 5 requests in flight"), "{err}");
}

#[test]
fn end_to_end_reads_what_it_wrote() {
    let b = Broker::start();
    let topic = unique("bench-e2e");
    let v = b.bench(&[
        "e2e",
        "--topic",
        &topic,
        "--num-records",
        "2000",
        "--record-size",
        "64",
        "--throughput",
        "4000",
        "--acks",
        "1",
        "--linger-ms",
        "0",
    ]);
    assert_eq!(v["mode"], "e2e");
    assert_eq!(v["timed_out"], false);
    check_figures(&v, 2000, 2000 * 64);
    check_figures(&v["produce"], 2000, 2000 * 64);
    // The rate limit held: 2000 records at 4000/s take about half a second.
    assert!(num(&v["produce"], "elapsed_s") >= 0.45, "{v}");
    // Clocks of producer and consumer are the same machine's: latencies are sane.
    assert!(num(&v["latency_ms"], "max") < 10_000.0, "{v}");
}
