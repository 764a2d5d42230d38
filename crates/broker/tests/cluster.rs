//! Three in-process nodes forming one cluster over real sockets: partitions spread over the
//! brokers, admin requests sent to any broker take effect everywhere, and a broker asked for
//! a partition another broker leads answers NOT_LEADER_OR_FOLLOWER with the KIP-951 hint.
//! (Process-level cluster tests with SIGKILL live in tests/cluster at the repo root.)

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice_broker::ClusterConfig;

mod common;
use common::*;

struct Cluster {
    nodes: Vec<TestBroker>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn start_cluster(n: i32) -> Cluster {
    let addrs: Vec<String> = (0..n).map(|_| free_addr()).collect();
    let voters: BTreeMap<i32, String> = (1..=n).map(|i| (i, free_addr())).collect();
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    let mut starting = Vec::new();
    for i in 1..=n {
        let dir = tempfile::tempdir().unwrap();
        let cluster =
            ClusterConfig::new(i, voters.clone(), None, None, None, None).expect("cluster config");
        let path = dir.path().to_path_buf();
        let addr = addrs[(i - 1) as usize].clone();
        dirs.push(dir);
        starting.push(tokio::spawn(async move {
            TestBroker::launch_node(&path, &addr, &[], None, i, cluster).await
        }));
    }
    for s in starting {
        nodes.push(s.await.unwrap());
    }
    Cluster { nodes, _dirs: dirs }
}

async fn metadata(c: &mut Conn) -> MetadataResponse {
    c.send(12, &MetadataRequest::default().with_topics(None))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_spread_partitions_and_hint_the_leader() {
    let cl = start_cluster(3).await;
    let mut c1 = Conn::open(&cl.nodes[0].addr).await;
    // Every broker registered and unfenced, one cluster id.
    let mut md = metadata(&mut c1).await;
    for _ in 0..100 {
        if md.brokers.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        md = metadata(&mut c1).await;
    }
    assert_eq!(md.brokers.len(), 3, "{:?}", md.brokers);
    assert!(md.brokers.iter().any(|b| b.node_id == md.controller_id));

    // Created through node 2 (forwarded to the controller when node 2 is not it).
    let mut c2 = Conn::open(&cl.nodes[1].addr).await;
    assert_eq!(create_topic(&mut c2, "spread", 6).await, 0);
    // Node 1 sees it at once: the creator answered only after applying it, and the topic
    // is replicated through the quorum.
    let mut leaders = BTreeMap::new();
    for _ in 0..100 {
        let md = metadata(&mut c1).await;
        if let Some(t) = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("spread"))
        {
            leaders = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            if leaders.len() == 6 && leaders.values().all(|l| *l > 0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let led: std::collections::BTreeSet<i32> = leaders.values().copied().collect();
    assert_eq!(led.len(), 3, "leaders on all three brokers: {leaders:?}");

    // A partition led elsewhere: NOT_LEADER_OR_FOLLOWER with the leader and its endpoint.
    let (&part, &leader) = leaders.iter().find(|(_, l)| **l != 1).unwrap();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("spread")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(part)
                    .with_records(Some(batch(&[("k", "v")], Compression::None, -1, 0))),
            ])]);
    let resp = c1.send(11, &req).await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6);
    assert_eq!(p.current_leader.leader_id.0, leader);
    assert!(resp.node_endpoints.iter().any(|e| e.node_id.0 == leader));
    // The leader itself takes the write.
    let idx = (leader - 1) as usize;
    let mut cl_leader = Conn::open(&cl.nodes[idx].addr).await;
    let (code, _) = produce(
        &mut cl_leader,
        "spread",
        part,
        batch(&[("k", "v")], Compression::None, -1, 0),
    )
    .await;
    assert_eq!(code, 0);

    // Fetch v16 from the wrong broker: same hint.
    let freq = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic_id(
                metadata(&mut c1)
                    .await
                    .topics
                    .iter()
                    .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("spread"))
                    .unwrap()
                    .topic_id,
            )
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(part)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let fresp = c1.send(16, &freq).await;
    let fp = &fresp.responses[0].partitions[0];
    assert_eq!(fp.error_code, 6);
    assert_eq!(fp.current_leader.leader_id.0, leader);
    assert!(fresp.node_endpoints.iter().any(|e| e.node_id.0 == leader));

    // Replication factor 3 fits three brokers; 4 does not.
    let create = |name: &'static str, rf: i16| {
        CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_num_partitions(1)
                .with_replication_factor(rf)])
    };
    let r = c2.send(5, &create("rf3", 3)).await;
    assert_eq!(r.topics[0].error_code, 0);
    let r = c2.send(5, &create("rf4", 4)).await;
    assert_eq!(r.topics[0].error_code, 38);
    for n in cl.nodes {
        n.stop().await;
    }
}
