//! `sluice cluster status` and `/v1/cluster` against a 3-node cluster.

mod common;

use std::time::{Duration, Instant};

use common::{http_get, parse_json, Cluster};
use serde_json::Value;

/// Runs `cluster status --output json` until every voter's lag is known (the leader learns
/// followers' progress from their first replication round) or the deadline passes.
fn status_with_lags(c: &Cluster) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.run(&["cluster", "status", "--output", "json"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            let doc = parse_json(&stdout);
            let voters = doc["quorum"]["voters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let nodes = doc["nodes"].as_array().map(Vec::len).unwrap_or(0);
            let fenced = doc["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["fenced"] == true));
            if voters.len() == 3
                && nodes == 3
                && !fenced
                && voters.iter().all(|v| v["lag"].is_u64())
            {
                return doc;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "cluster status never showed 3 unfenced nodes with known lags:\n{stdout}\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn cluster_status_cli_and_http_agree() {
    let c = Cluster::start(3);
    let doc = status_with_lags(&c);
    let ids: Vec<i64> = doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    for n in doc["nodes"].as_array().expect("nodes") {
        assert_eq!(
            n["roles"],
            serde_json::json!(["broker", "controller"]),
            "{n}"
        );
        assert!(n["endpoints"]["kafka"].is_string(), "{n}");
        assert!(n["endpoints"]["controller"].is_string(), "{n}");
    }
    let leader = doc["quorum"]["leader_id"].as_i64().expect("one leader");
    assert!((1..=3).contains(&leader));
    assert!(doc["quorum"]["term"].as_u64().is_some_and(|t| t >= 1));

    // Every node's /v1/cluster lists the same nodes and leader.
    for node in &c.nodes {
        let (code, body) = http_get(&node.http, "/v1/cluster").expect("GET /v1/cluster");
        assert_eq!(code, 200, "{body}");
        let h = parse_json(&body);
        assert_eq!(h["nodes"], doc["nodes"], "node {}: {body}", node.id);
        assert_eq!(h["quorum"]["leader_id"].as_i64(), Some(leader), "{body}");
        assert_eq!(h["cluster_id"], doc["cluster_id"]);
    }

    // The table form names the leader and the voters.
    let out = c.run(&["cluster", "status"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("Quorum: leader {leader}")), "{text}");
    assert!(text.contains("VOTER"), "{text}");

    // The gauges.
    let (_, metrics) = http_get(&c.nodes[0].http, "/metrics").expect("GET /metrics");
    assert!(
        metrics.contains(&format!("sluice_quorum_leader_id {leader}")),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_fenced_brokers 0"), "{metrics}");
    assert!(metrics.contains("sluice_offline_partitions 0"), "{metrics}");
    assert!(
        metrics.contains("sluice_quorum_commit_lag{voter=\"1\"}"),
        "{metrics}"
    );
}
