//! End-to-end tests of `sluice configs describe|alter`: the built `sluice` binary against a
//! broker.
//!
//! Broker: `SLUICE_TEST_BOOTSTRAP=host:port` uses a running one (e.g. Apache Kafka, for
//! differential checks); otherwise every test starts its own `sluice broker` (harness in
//! `common/mod.rs`) on a free loopback port with a fresh data directory.

use serde_json::Value;

mod common;
use common::{parse_json, unique, Broker};

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
