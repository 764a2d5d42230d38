//! Unit tests of the topic commands and planners.

use super::*;

fn broker(id: i32) -> MetadataCommand {
    MetadataCommand::RegisterBroker(BrokerRegistration {
        node_id: id,
        incarnation_id: Uuid::nil(),
        host: "127.0.0.1".into(),
        port: 9092 + id,
        rack: None,
        inter_broker: None,
    })
}

fn md_with_brokers(n: i32) -> Metadata {
    let mut md = Metadata::new("cluster", 1);
    for i in 1..=n {
        md.apply(&broker(i)).unwrap();
    }
    md
}

fn defaults() -> BrokerSettings {
    BrokerSettings::default()
}

fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn create(md: &mut Metadata, name: &str, p: i32, rf: i16) -> Uuid {
    let cmd = plan_create_topic(md, name, p, rf, &BTreeMap::new(), &defaults()).unwrap();
    md.apply(&cmd).unwrap();
    md.topics[name].id
}

#[test]
fn topic_names() {
    assert!(validate_topic_name("a.b_c-D9").is_ok());
    assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
        let e = validate_topic_name(bad).unwrap_err();
        assert_eq!(e.error_code(), 17, "{bad:?}");
    }
}

#[test]
fn create_topic_defaults_and_placement() {
    let mut md = md_with_brokers(3);
    let (b, _) = BrokerSettings::from_map(&cfg(&[
        ("num.partitions", "4"),
        ("default.replication.factor", "2"),
    ]))
    .unwrap();
    let cmd = plan_create_topic(&md, "t", -1, -1, &BTreeMap::new(), &b).unwrap();
    md.apply(&cmd).unwrap();
    let t = &md.topics["t"];
    assert!(!t.internal);
    assert_eq!(t.partitions.len(), 4);
    for (i, p) in t.partitions.iter().enumerate() {
        assert_eq!(p.index, i as i32);
        assert_eq!(p.replicas.len(), 2);
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!(p.leader_epoch, 0);
        assert_eq!(p.isr, p.replicas);
        assert_ne!(p.replicas[0], p.replicas[1]);
    }
    // Leaders rotate over the brokers.
    let leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders, vec![1, 2, 3, 1]);
    // The next topic starts at a rotated broker.
    create(&mut md, "u", 1, 1);
    assert_eq!(md.topics["u"].partitions[0].leader, 2); // 4 existing partitions % 3 = 1
    assert_eq!(md.topic_by_id(&md.topics["t"].id).unwrap().name, "t");
}

#[test]
fn create_topic_errors() {
    let mut md = md_with_brokers(1);
    create(&mut md, "a.b", 1, 1);
    let d = defaults();
    let none = BTreeMap::new();
    let code = |r: Result<MetadataCommand, ControllerError>| r.unwrap_err().error_code();
    assert_eq!(code(plan_create_topic(&md, "a.b", 1, 1, &none, &d)), 36);
    assert_eq!(code(plan_create_topic(&md, "a_b", 1, 1, &none, &d)), 17);
    assert_eq!(
        code(plan_create_topic(&md, "bad name", 1, 1, &none, &d)),
        17
    );
    assert_eq!(code(plan_create_topic(&md, "x", 0, 1, &none, &d)), 37);
    assert_eq!(code(plan_create_topic(&md, "x", -2, 1, &none, &d)), 37);
    assert_eq!(
        code(plan_create_topic(&md, "x", i32::MAX, 1, &none, &d)),
        37
    );
    assert_eq!(code(plan_create_topic(&md, "x", 1, 0, &none, &d)), 38);
    assert_eq!(code(plan_create_topic(&md, "x", 1, -2, &none, &d)), 38);
    assert_eq!(code(plan_create_topic(&md, "x", 1, 2, &none, &d)), 38);
    let bad = cfg(&[("segment.bytes", "100")]);
    assert_eq!(code(plan_create_topic(&md, "x", 1, 1, &bad, &d)), 40);
    let unknown = cfg(&[("nope", "1")]);
    assert_eq!(code(plan_create_topic(&md, "x", 1, 1, &unknown, &d)), 40);
    // No brokers at all.
    let empty = Metadata::new("c", 1);
    assert_eq!(code(plan_create_topic(&empty, "x", 1, -1, &none, &d)), 38);
    // Internal topic flag.
    let cmd = plan_create_topic(&md, CONSUMER_OFFSETS_TOPIC, 2, 1, &none, &d).unwrap();
    md.apply(&cmd).unwrap();
    assert!(md.topics[CONSUMER_OFFSETS_TOPIC].internal);
}

#[test]
fn apply_rejects_without_change() {
    let mut md = md_with_brokers(1);
    let id = create(&mut md, "t", 1, 1);
    let before = md.clone();
    let dup = MetadataCommand::CreateTopic {
        name: "t".into(),
        id: Uuid::new_v4(),
        partitions: before.topics["t"].partitions.clone(),
        configs: BTreeMap::new(),
        internal: false,
    };
    assert_eq!(md.apply(&dup).unwrap_err().error_code(), 36);
    let dup_id = MetadataCommand::CreateTopic {
        name: "t2".into(),
        id,
        partitions: before.topics["t"].partitions.clone(),
        configs: BTreeMap::new(),
        internal: false,
    };
    assert_eq!(md.apply(&dup_id).unwrap_err().error_code(), 42);
    let bad_idx = MetadataCommand::CreatePartitions {
        name: "t".into(),
        new_partitions: vec![PartitionInfo {
            index: 5,
            leader: 1,
            leader_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }],
    };
    assert_eq!(md.apply(&bad_idx).unwrap_err().error_code(), 42);
    let bad_cfg = MetadataCommand::AlterTopicConfigs {
        name: "t".into(),
        configs: [("cleanup.policy".to_string(), Some("nope".to_string()))].into(),
    };
    assert_eq!(md.apply(&bad_cfg).unwrap_err().error_code(), 40);
    let bad_broker = MetadataCommand::RegisterBroker(BrokerRegistration {
        node_id: -1,
        incarnation_id: Uuid::new_v4(),
        host: "h".into(),
        port: 1,
        rack: None,
        inter_broker: None,
    });
    assert_eq!(md.apply(&bad_broker).unwrap_err().error_code(), 42);
    assert_eq!(
        md.apply(&MetadataCommand::DeleteTopic { name: "zz".into() })
            .unwrap_err()
            .error_code(),
        3
    );
    assert_eq!(md, before);
}

#[test]
fn create_partitions() {
    let mut md = md_with_brokers(2);
    create(&mut md, "t", 2, 2);
    assert_eq!(
        plan_create_partitions(&md, "t", 1)
            .unwrap_err()
            .error_code(),
        37
    );
    assert_eq!(
        plan_create_partitions(&md, "t", 2)
            .unwrap_err()
            .error_code(),
        37
    );
    assert_eq!(
        plan_create_partitions(&md, "zz", 5)
            .unwrap_err()
            .error_code(),
        3
    );
    assert_eq!(
        plan_create_partitions(&md, "t", MAX_PARTITIONS_PER_TOPIC + 1)
            .unwrap_err()
            .error_code(),
        37
    );
    let cmd = plan_create_partitions(&md, "t", 5).unwrap();
    md.apply(&cmd).unwrap();
    let t = &md.topics["t"];
    assert_eq!(t.partitions.len(), 5);
    assert!(t
        .partitions
        .iter()
        .enumerate()
        .all(|(i, p)| p.index == i as i32 && p.replicas.len() == 2));
    // RF 2 topic cannot grow when only one broker remains registered.
    let mut one = md_with_brokers(1);
    one.topics = md.topics.clone();
    one.rebuild_index();
    assert_eq!(
        plan_create_partitions(&one, "t", 6)
            .unwrap_err()
            .error_code(),
        38
    );
}

#[test]
fn delete_topic() {
    let mut md = md_with_brokers(1);
    let id = create(&mut md, "t", 1, 1);
    create(&mut md, CONSUMER_OFFSETS_TOPIC, 1, 1);
    assert_eq!(plan_delete_topic(&md, "zz").unwrap_err().error_code(), 3);
    assert_eq!(
        plan_delete_topic(&md, CONSUMER_OFFSETS_TOPIC)
            .unwrap_err()
            .error_code(),
        42
    );
    assert_eq!(
        plan_delete_topic_by_id(&md, &Uuid::new_v4())
            .unwrap_err()
            .error_code(),
        100
    );
    let cmd = plan_delete_topic_by_id(&md, &id).unwrap();
    md.apply(&cmd).unwrap();
    assert!(md.topic("t").is_none());
    assert!(md.topic_by_id(&id).is_none());
    // Name can be reused with a new id.
    let id2 = create(&mut md, "t", 1, 1);
    assert_ne!(id, id2);
}

#[test]
fn alter_configs() {
    let mut md = md_with_brokers(1);
    create(&mut md, "t", 1, 1);
    let set = [("retention.ms".to_string(), Some("1000".to_string()))].into();
    md.apply(&plan_alter_configs(&md, "t", &set).unwrap())
        .unwrap();
    assert_eq!(md.topics["t"].configs["retention.ms"], "1000");
    let unknown = [("foo".to_string(), Some("1".to_string()))].into();
    assert_eq!(
        plan_alter_configs(&md, "t", &unknown)
            .unwrap_err()
            .error_code(),
        40
    );
    let unknown_del = [("foo".to_string(), None)].into();
    assert_eq!(
        plan_alter_configs(&md, "t", &unknown_del)
            .unwrap_err()
            .error_code(),
        40
    );
    assert_eq!(
        plan_alter_configs(&md, "zz", &set)
            .unwrap_err()
            .error_code(),
        3
    );
    // Cross-config rule against existing overrides.
    let max = [("max.compaction.lag.ms".to_string(), Some("5".to_string()))].into();
    md.apply(&plan_alter_configs(&md, "t", &max).unwrap())
        .unwrap();
    let min = [("min.compaction.lag.ms".to_string(), Some("6".to_string()))].into();
    assert_eq!(
        plan_alter_configs(&md, "t", &min).unwrap_err().error_code(),
        40
    );

    // Replace semantics drop unnamed overrides.
    let cmd = plan_replace_configs(&md, "t", &cfg(&[("segment.ms", "100")])).unwrap();
    md.apply(&cmd).unwrap();
    assert_eq!(md.topics["t"].configs, cfg(&[("segment.ms", "100")]));
    let del = [("segment.ms".to_string(), None)].into();
    md.apply(&plan_alter_configs(&md, "t", &del).unwrap())
        .unwrap();
    assert!(md.topics["t"].configs.is_empty());
}

#[test]
fn incremental_alter() {
    let mut md = md_with_brokers(1);
    create(&mut md, "t", 1, 1);
    let d = defaults();
    let ops = vec![(
        "cleanup.policy".to_string(),
        AlterConfigOp::Append,
        Some("compact".to_string()),
    )];
    md.apply(&plan_incremental_alter_configs(&md, "t", &ops, &d).unwrap())
        .unwrap();
    assert_eq!(md.topics["t"].configs["cleanup.policy"], "delete,compact");
    let ops = vec![(
        "cleanup.policy".to_string(),
        AlterConfigOp::Subtract,
        Some("delete".to_string()),
    )];
    md.apply(&plan_incremental_alter_configs(&md, "t", &ops, &d).unwrap())
        .unwrap();
    assert_eq!(md.topics["t"].configs["cleanup.policy"], "compact");
    // Subtracting everything leaves an empty policy (accepted, as in Kafka 4.1).
    let ops = vec![(
        "cleanup.policy".to_string(),
        AlterConfigOp::Subtract,
        Some("compact".to_string()),
    )];
    md.apply(&plan_incremental_alter_configs(&md, "t", &ops, &d).unwrap())
        .unwrap();
    assert_eq!(md.topics["t"].configs["cleanup.policy"], "");
    let ops = vec![(
        "retention.ms".to_string(),
        AlterConfigOp::Append,
        Some("1".to_string()),
    )];
    assert_eq!(
        plan_incremental_alter_configs(&md, "t", &ops, &d)
            .unwrap_err()
            .error_code(),
        40
    );
    let ops = vec![
        (
            "retention.ms".to_string(),
            AlterConfigOp::Set,
            Some("1".to_string()),
        ),
        ("retention.ms".to_string(), AlterConfigOp::Delete, None),
    ];
    assert_eq!(
        plan_incremental_alter_configs(&md, "t", &ops, &d)
            .unwrap_err()
            .error_code(),
        42
    );
    let ops = vec![
        (
            "retention.ms".to_string(),
            AlterConfigOp::Set,
            Some("1".to_string()),
        ),
        ("cleanup.policy".to_string(), AlterConfigOp::Delete, None),
    ];
    md.apply(&plan_incremental_alter_configs(&md, "t", &ops, &d).unwrap())
        .unwrap();
    assert_eq!(md.topics["t"].configs, cfg(&[("retention.ms", "1")]));
    assert_eq!(AlterConfigOp::from_wire(3), Some(AlterConfigOp::Subtract));
    assert_eq!(AlterConfigOp::from_wire(4), None);
}

#[test]
fn commands_roundtrip_json() {
    let mut md = md_with_brokers(1);
    let cmd =
        plan_create_topic(&md, "t", 2, 1, &cfg(&[("retention.ms", "5")]), &defaults()).unwrap();
    let json = serde_json::to_string(&cmd).unwrap();
    let back: MetadataCommand = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cmd);
    md.apply(&back).unwrap();
    let snap = serde_json::to_string(&md).unwrap();
    let mut md2: Metadata = serde_json::from_str(&snap).unwrap();
    md2.rebuild_index();
    assert_eq!(md2, md);
}

#[test]
fn old_json_still_replays() {
    // Written by the single-node version: no incarnation, epochs or fencing.
    let old_cmd = r#"{"RegisterBroker":{"node_id":1,"host":"h","port":9092,"rack":null}}"#;
    let cmd: MetadataCommand = serde_json::from_str(old_cmd).unwrap();
    let mut md = Metadata::new("c", 1);
    md.apply(&cmd).unwrap();
    let b = &md.brokers[&1];
    assert!(b.is_eligible() && b.incarnation_id.is_nil());
    let old_topic = r#"{"CreateTopic":{"name":"t","id":"0b9a6c4e-7f39-4a36-9c1e-5d0d2f7b1c11","partitions":[{"index":0,"leader":1,"leader_epoch":3,"replicas":[1],"isr":[1]}],"configs":{},"internal":false}}"#;
    let cmd: MetadataCommand = serde_json::from_str(old_topic).unwrap();
    md.apply(&cmd).unwrap();
    assert_eq!(md.topics["t"].partitions[0].leader, 1);
    assert_eq!(md.topics["t"].partitions[0].partition_epoch, 0);
    let old_snapshot = r#"{"cluster_id":"c","controller_id":1,"brokers":{"1":{"node_id":1,"host":"h","port":9092,"rack":null}},"topics":{}}"#;
    let snap: Metadata = serde_json::from_str(old_snapshot).unwrap();
    assert!(snap.brokers[&1].is_eligible());
    assert_eq!((snap.last_broker_epoch, snap.next_producer_id), (0, 0));
    // The next real registration gets an epoch above the legacy 0.
    let mut snap = snap;
    snap.apply(&MetadataCommand::RegisterBroker(BrokerRegistration {
        node_id: 1,
        incarnation_id: Uuid::new_v4(),
        host: "h".into(),
        port: 9092,
        rack: None,
        inter_broker: None,
    }))
    .unwrap();
    assert_eq!(snap.brokers[&1].broker_epoch, 1);
    assert!(snap.brokers[&1].fenced);
}

#[test]
fn topic_ids_are_kafka_safe() {
    let md = md_with_brokers(1);
    for _ in 0..200 {
        let id = new_topic_id(&md).unwrap();
        assert!(!id.is_nil());
        assert_ne!(id.as_bytes()[0] >> 2, 62);
    }
}

#[test]
fn manual_assignment_is_kept_and_checked() {
    let mut md = md_with_brokers(4);
    let a = vec![vec![1, 2, 3], vec![4, 1, 2]];
    let cmd =
        plan_create_topic_with_assignment(&md, "m", &a, &BTreeMap::new(), &defaults()).unwrap();
    md.apply(&cmd).unwrap();
    let t = &md.topics["m"];
    assert_eq!(t.partitions[0].replicas, vec![1, 2, 3]);
    assert_eq!(t.partitions[1].replicas, vec![4, 1, 2]);
    assert_eq!(t.partitions[1].isr, vec![4, 1, 2]);
    let code = |a: Vec<Vec<i32>>| {
        plan_create_topic_with_assignment(&md, "n", &a, &BTreeMap::new(), &defaults())
            .unwrap_err()
            .error_code()
    };
    assert_eq!(code(vec![]), 39);
    assert_eq!(code(vec![vec![]]), 39);
    assert_eq!(code(vec![vec![1, 1]]), 39);
    assert_eq!(code(vec![vec![1, 2], vec![3]]), 39);
    assert_eq!(code(vec![vec![1, 9]]), 39);
}
