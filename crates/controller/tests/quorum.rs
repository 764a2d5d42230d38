//! The Raft metadata quorum over real TCP on 127.0.0.1: formation, proposals from leader and
//! follower, leader RPC, failover, restart and catch-up, loss of quorum, a learner, migration
//! and protocol version refusal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_controller::quorum::LeaderHandler;
use sluice_controller::{
    BrokerRegistration, ControllerError, Metadata, MetadataCommand, Quorum, QuorumConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn cfg(id: i32, listen: SocketAddr, voters: &BTreeMap<i32, String>, dir: &Path) -> QuorumConfig {
    QuorumConfig {
        node_id: id,
        listen,
        voters: voters.clone(),
        voter: voters.contains_key(&id),
        data_dir: dir.to_path_buf(),
        cluster_id: None,
        initial: None,
        election_timeout_ms: (300, 600),
        heartbeat_ms: 100,
        request_timeout_ms: 2000,
        snapshot_every: 1000,
    }
}

fn register(id: i32) -> MetadataCommand {
    MetadataCommand::RegisterBroker(BrokerRegistration {
        node_id: id,
        incarnation_id: uuid::Uuid::nil(),
        host: "localhost".into(),
        port: 9092 + id,
        rack: None,
        inter_broker: None,
    })
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader all running nodes agree on.
async fn agreed_leader(nodes: &BTreeMap<i32, Quorum>) -> i32 {
    wait_for("a leader", 10, || {
        let l = nodes.values().find(|q| q.is_leader())?.leader_id()?;
        nodes
            .values()
            .all(|q| q.leader_id() == Some(l))
            .then_some(l)
    })
    .await
}

async fn converged(nodes: &BTreeMap<i32, Quorum>, min_offset: u64) -> Arc<Metadata> {
    wait_for("committed watches to converge", 10, || {
        let states: Vec<_> = nodes
            .values()
            .map(|q| q.committed().borrow().clone())
            .collect();
        let first = states[0].metadata.clone();
        (states
            .iter()
            .all(|c| c.offset >= min_offset && *c.metadata == *first))
        .then_some(first)
    })
    .await
}

fn echo_handler(id: i32) -> LeaderHandler {
    Arc::new(move |req: Vec<u8>| {
        Box::pin(async move {
            let mut out = format!("leader-{id}:").into_bytes();
            out.extend(req);
            out
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_voters_failover_restart_learner_and_lost_quorum() {
    let dirs: Vec<_> = (0..4)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let addrs: Vec<SocketAddr> = (0..4).map(|_| free_port()).collect();
    let voters: BTreeMap<i32, String> = (1..=3)
        .map(|i| (i, addrs[i as usize - 1].to_string()))
        .collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let q = Quorum::start(cfg(
            id,
            addrs[id as usize - 1],
            &voters,
            dirs[id as usize - 1].path(),
        ))
        .await
        .expect("start");
        q.set_leader_handler(echo_handler(id));
        nodes.insert(id, q);
    }
    let t0 = Instant::now();
    let leader = agreed_leader(&nodes).await;
    eprintln!("leader {leader} elected in {:?}", t0.elapsed());
    let follower = *nodes.keys().find(|k| **k != leader).expect("follower");

    // Propose on the leader; a follower's own propose is refused with NOT_CONTROLLER.
    let i1 = nodes[&leader]
        .propose(register(1))
        .await
        .expect("propose on leader");
    let err = nodes[&follower]
        .propose(register(2))
        .await
        .expect_err("follower propose");
    assert_eq!(err.error_code(), 41, "{err:?}");
    // Through the leader RPC from a follower.
    let i2 = nodes[&follower]
        .propose_via_leader(register(2))
        .await
        .expect("via leader");
    assert!(i2 > i1);
    // A refused command is a no-op everywhere and the proposer gets the error.
    let err = nodes[&follower]
        .propose_via_leader(MetadataCommand::DeleteTopic {
            name: "nope".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(err.error_code(), 3, "{err:?}");
    let md = converged(&nodes, i2 + 1).await;
    assert_eq!(md.brokers.len(), 2);

    // call_leader reaches the leader's handler from anywhere.
    let answer = nodes[&follower]
        .call_leader(b"hi".to_vec(), Duration::from_secs(3))
        .await
        .expect("call_leader");
    assert_eq!(answer, format!("leader-{leader}:hi").into_bytes());

    // A broker-only node joins as a learner and follows.
    let learner = Quorum::start(cfg(4, addrs[3], &voters, dirs[3].path()))
        .await
        .expect("learner");
    let i3 = nodes[&leader]
        .propose(register(3))
        .await
        .expect("propose 3");
    nodes.insert(4, learner);
    let md = converged(&nodes, i3).await;
    assert_eq!(md.brokers.len(), 3);
    let status = nodes[&leader].status();
    assert_eq!(status.leader_id, Some(leader));
    assert!(status.high_watermark > i3);
    let obs: Vec<_> = status
        .replicas
        .iter()
        .filter(|r| !r.voter)
        .map(|r| r.node_id)
        .collect();
    assert_eq!(obs, vec![4]);
    assert_eq!(status.replicas.iter().filter(|r| r.voter).count(), 3);
    wait_for("leader to see everyone caught up", 5, || {
        let s = nodes[&leader].status();
        s.replicas
            .iter()
            .all(|r| r.log_end_offset >= Some(i3 + 1) && r.last_caught_up_ms.is_some())
            .then_some(())
    })
    .await;
    assert!(!nodes[&4].is_voter());

    // Kill the leader: a new one is elected and proposals work with 2 of 3.
    let old_term = nodes[&leader].term();
    nodes.remove(&leader).expect("leader").shutdown().await;
    let t0 = Instant::now();
    let new_leader = agreed_leader(&nodes).await;
    eprintln!("new leader {new_leader} after {:?}", t0.elapsed());
    assert_ne!(new_leader, leader);
    assert!(nodes[&new_leader].term() > old_term);
    let some_node = *nodes.keys().find(|k| **k != new_leader).expect("other");
    let i4 = nodes[&some_node]
        .propose_via_leader(register(4))
        .await
        .expect("propose with 2 of 3");

    // Restart the old leader from its data dir: it catches up.
    let q = Quorum::start(cfg(
        leader,
        addrs[leader as usize - 1],
        &voters,
        dirs[leader as usize - 1].path(),
    ))
    .await
    .expect("restart");
    q.set_leader_handler(echo_handler(leader));
    nodes.insert(leader, q);
    let md = converged(&nodes, i4).await;
    assert_eq!(md.brokers.len(), 4);

    // Two of three voters down: a proposal times out (REQUEST_TIMED_OUT), it does not hang.
    let current = agreed_leader(&nodes).await;
    let survivor = *nodes
        .keys()
        .find(|k| **k != current && **k != 4)
        .expect("survivor");
    for id in [1, 2, 3] {
        if id != survivor {
            nodes.remove(&id).expect("node").shutdown().await;
        }
    }
    let t0 = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        nodes[&survivor].propose_via_leader(register(5)),
    )
    .await
    .expect("propose must not hang");
    let err = res.expect_err("no quorum");
    assert!(
        matches!(err, ControllerError::RequestTimedOut(_)),
        "{err:?}"
    );
    assert_eq!(err.error_code(), 7);
    eprintln!("lost-quorum proposal failed after {:?}", t0.elapsed());
    let err = nodes[&survivor]
        .call_leader(b"x".to_vec(), Duration::from_millis(500))
        .await
        .expect_err("no leader");
    assert_eq!(err.error_code(), 7);

    for (_, q) in nodes {
        q.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_leads_at_once_keeps_state_and_migrates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_port();
    let mut initial = Metadata::default();
    initial.apply(&register(7)).expect("apply");
    let mut c = QuorumConfig::single(1, addr, dir.path().to_path_buf());
    c.initial = Some(initial.clone());
    let q = Quorum::start(c.clone()).await.expect("start");
    wait_for("single voter to lead", 5, || q.is_leader().then_some(())).await;
    assert_eq!(q.leader_id(), Some(1));
    let mut rx = q.committed();
    let md = wait_for("migrated state", 5, || {
        let c = rx.borrow_and_update().clone();
        c.metadata.brokers.contains_key(&7).then_some(c.metadata)
    })
    .await;
    // The migrated state, plus the cluster id the leader records when the seed has none.
    assert_eq!(md.brokers, initial.brokers);
    assert_eq!(md.topics, initial.topics);
    let idx = q.propose(register(8)).await.expect("propose");
    q.shutdown().await;

    // Restart: the state is there and the (different) `initial` is ignored.
    c.initial = Some(Metadata::default());
    let q = Quorum::start(c).await.expect("restart");
    let mut rx = q.committed();
    let md = wait_for("replayed state", 5, || {
        let c = rx.borrow_and_update().clone();
        (c.offset >= idx).then_some(c.metadata)
    })
    .await;
    assert!(md.brokers.contains_key(&7) && md.brokers.contains_key(&8));
    let idx2 = q.propose(register(9)).await.expect("propose after restart");
    assert!(idx2 > idx);
    assert_eq!(q.committed().borrow().metadata.brokers.len(), 3);
    q.shutdown().await;
}

#[tokio::test]
async fn unknown_major_version_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_port();
    let q = Quorum::start(QuorumConfig::single(1, addr, dir.path().to_path_buf()))
        .await
        .expect("start");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = b"{}";
    let mut frame = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&99u16.to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame.extend_from_slice(body);
    s.write_all(&frame).await.expect("write");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.expect("read len");
    let mut resp = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).await.expect("read body");
    let text = String::from_utf8_lossy(&resp[4..]).to_string();
    assert!(
        text.contains("unsupported quorum RPC protocol version 99.0"),
        "{text}"
    );
    // The connection is closed afterwards.
    let mut one = [0u8; 1];
    assert_eq!(s.read(&mut one).await.expect("eof"), 0);
    q.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_learner_gets_a_snapshot() {
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let addrs = [free_port(), free_port()];
    let voters = BTreeMap::from([(1, addrs[0].to_string())]);
    let mut c1 = cfg(1, addrs[0], &voters, dirs[0].path());
    c1.snapshot_every = 4;
    let leader = Quorum::start(c1).await.expect("start");
    wait_for("single voter to lead", 5, || {
        leader.is_leader().then_some(())
    })
    .await;
    let mut last = 0;
    for id in 0..12 {
        last = leader.propose(register(id)).await.expect("propose");
    }
    assert!(
        dirs[0]
            .path()
            .join("__cluster_metadata/raft/snapshot")
            .exists(),
        "snapshot written"
    );
    let learner = Quorum::start(cfg(2, addrs[1], &voters, dirs[1].path()))
        .await
        .expect("learner");
    let nodes = BTreeMap::from([(1, leader), (2, learner)]);
    let md = converged(&nodes, last).await;
    assert_eq!(md.brokers.len(), 12);
    assert!(
        dirs[1]
            .path()
            .join("__cluster_metadata/raft/snapshot")
            .exists(),
        "the learner installed the leader's snapshot"
    );
    for (_, q) in nodes {
        q.shutdown().await;
    }
}
