//! Consumer-group coordinator over real sockets against an in-process broker: the classic
//! join/sync protocol, offset commit/fetch, and that offsets and group metadata survive a
//! restart (they are replayed from `__consumer_offsets`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use sluice_broker::{BrokerConfig, BrokerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: PathBuf, addr: &str) -> Running {
    let mut map = BTreeMap::new();
    map.insert(
        "group.initial.rebalance.delay.ms".to_string(),
        "0".to_string(),
    );
    map.insert("offsets.topic.num.partitions".to_string(), "3".to_string());
    let (settings, _) = BrokerSettings::from_map(&map).unwrap();
    let cfg = BrokerConfig {
        listen: addr.to_string(),
        advertised: None,
        data_dir: dir,
        node_id: 1,
        http: None,
        settings,
        cluster: Default::default(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        sluice_broker::run(cfg, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return Running { stop: tx, task };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("broker did not start");
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(8), self.task)
            .await
            .expect("broker stops")
            .unwrap();
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

struct Conn {
    s: TcpStream,
    next: i32,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        Conn {
            s: TcpStream::connect(addr).await.unwrap(),
            next: 1,
        }
    }

    async fn send<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let cid = self.next;
        self.next += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(cid)
            .with_client_id(Some(StrBytes::from_static_str("group-test")))
            .encode(&mut buf, R::header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.s.write_all(&buf).await.unwrap();
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(20), self.s.read_exact(&mut len))
            .await
            .expect("response in time")
            .unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut body).await.unwrap();
        let mut frame = Bytes::from(body);
        let hdr = ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
        assert_eq!(hdr.correlation_id, cid);
        R::Response::decode(&mut frame, version).unwrap()
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn assignment(topic: &str, parts: &[i32]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(1);
    b.put_i16(topic.len() as i16);
    b.put_slice(topic.as_bytes());
    b.put_i32(parts.len() as i32);
    for p in parts {
        b.put_i32(*p);
    }
    b.put_i32(-1);
    b.freeze()
}

fn join_req(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        // Long enough that a slow CI machine never expires the session mid-test.
        .with_session_timeout_ms(120_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(
            b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff",
        ))])
}

/// Joins with MEMBER_ID_REQUIRED first; returns the response of the second join.
async fn join(c: &mut Conn, group: &str) -> JoinGroupResponse {
    let r = c.send(7, &join_req(group, "")).await;
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
    assert!(r.member_id.starts_with("group-test-"));
    c.send(7, &join_req(group, &r.member_id)).await
}

fn commit_req(group: &str, generation: i32, member: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(3)
                        .with_committed_metadata(Some(s("meta"))),
                ]),
        ])
}

async fn fetch(c: &mut Conn, groups: &[&str]) -> OffsetFetchResponse {
    let req = OffsetFetchRequest::default().with_groups(
        groups
            .iter()
            .map(|g| {
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(g)))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0, 1]),
                    ]))
            })
            .collect(),
    );
    c.send(8, &req).await
}

fn fetched(r: &OffsetFetchResponse, group: usize) -> (i64, i32, String, i64) {
    let g = &r.groups[group];
    assert_eq!(g.error_code, 0);
    let p = &g.topics[0].partitions;
    (
        p[0].committed_offset,
        p[0].committed_leader_epoch,
        p[0].metadata
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        p[1].committed_offset,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_and_group_metadata_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let b = start(dir.path().to_path_buf(), &addr).await;
    let mut c = Conn::open(&addr).await;
    // Offsets are only accepted for partitions that exist (Kafka: UNKNOWN_TOPIC_OR_PARTITION).
    let cr = c.send(8, &commit_req("g0", -1, "", 1)).await;
    assert_eq!(cr.topics[0].partitions[0].error_code, 3);
    let ct = c
        .send(
            5,
            &CreateTopicsRequest::default()
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_num_partitions(2)
                    .with_replication_factor(1)])
                .with_timeout_ms(5000),
        )
        .await;
    assert_eq!(ct.topics[0].error_code, 0);

    // FindCoordinator, batched (v4) and classic (v3); transactions are not available.
    let fc = c
        .send(
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![s("g1"), s("g2")]),
        )
        .await;
    assert_eq!(fc.coordinators.len(), 2);
    for co in &fc.coordinators {
        assert_eq!(
            (co.error_code, co.node_id.0, co.port),
            (0, 1, addr.rsplit(':').next().unwrap().parse().unwrap())
        );
    }
    let fc = c
        .send(3, &FindCoordinatorRequest::default().with_key(s("g1")))
        .await;
    assert_eq!((fc.error_code, fc.node_id.0), (0, 1));
    let fc = c
        .send(
            3,
            &FindCoordinatorRequest::default()
                .with_key(s("tx"))
                .with_key_type(1),
        )
        .await;
    // Transactions are not implemented: a non-retriable error so clients fail at once.
    assert_eq!(fc.error_code, 53);

    let j = join(&mut c, "g1").await;
    assert_eq!((j.error_code, j.generation_id), (0, 1));
    assert_eq!(j.leader, j.member_id);
    assert_eq!(j.members.len(), 1);
    let member = j.member_id.clone();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_generation_id(1)
        .with_member_id(member.clone())
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(assignment("t", &[0, 1])),
        ]);
    let sr = c.send(3, &sync).await;
    assert_eq!(sr.error_code, 0);
    assert_eq!(sr.assignment, assignment("t", &[0, 1]));

    let cr = c.send(8, &commit_req("g1", 1, &member, 42)).await;
    assert_eq!(cr.topics[0].partitions[0].error_code, 0);
    let cr = c.send(8, &commit_req("g1", 0, &member, 43)).await;
    assert_eq!(
        cr.topics[0].partitions[0].error_code, 22,
        "ILLEGAL_GENERATION"
    );
    // A consumer using assign() commits for a group without members.
    let cr = c.send(8, &commit_req("simple", -1, "", 7)).await;
    assert_eq!(cr.topics[0].partitions[0].error_code, 0);

    let f = fetch(&mut c, &["g1", "simple", "none"]).await;
    assert_eq!(fetched(&f, 0), (42, 3, "meta".into(), -1));
    assert_eq!(fetched(&f, 1).0, 7);
    assert_eq!(fetched(&f, 2).0, -1);
    drop(c);
    b.stop().await;

    // Restart: everything comes back from __consumer_offsets.
    let b = start(dir.path().to_path_buf(), &addr).await;
    let mut c = Conn::open(&addr).await;
    let f = fetch(&mut c, &["g1", "simple"]).await;
    assert_eq!(fetched(&f, 0), (42, 3, "meta".into(), -1));
    assert_eq!(fetched(&f, 1).0, 7);
    let d = c
        .send(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g1"))]),
        )
        .await;
    let g = &d.groups[0];
    assert_eq!(
        (
            g.error_code,
            g.group_state.as_str(),
            g.protocol_data.as_str()
        ),
        (0, "Stable", "range")
    );
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].member_id, member);
    assert_eq!(g.members[0].member_assignment, assignment("t", &[0, 1]));
    // The restored member carries on with its generation.
    let hb = c
        .send(
            4,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s("g1")))
                .with_generation_id(1)
                .with_member_id(member.clone()),
        )
        .await;
    assert_eq!(hb.error_code, 0);
    let l = c.send(4, &ListGroupsRequest::default()).await;
    let mut names: Vec<(String, String)> = l
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("g1".into(), "Stable".into()),
            ("simple".into(), "Empty".into())
        ]
    );

    // Non-empty group cannot be deleted; after leaving it can.
    let del = c
        .send(
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g1"))]),
        )
        .await;
    assert_eq!(del.results[0].error_code, 68, "NON_EMPTY_GROUP");
    let lv = c
        .send(
            4,
            &LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g1")))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(member.clone())
                ]),
        )
        .await;
    assert_eq!((lv.error_code, lv.members[0].error_code), (0, 0));
    let del = c
        .send(
            2,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(s("g1")), GroupId(s("nope"))]),
        )
        .await;
    assert_eq!(del.results[0].error_code, 0);
    assert_eq!(del.results[1].error_code, 69, "GROUP_ID_NOT_FOUND");
    drop(c);
    b.stop().await;

    // The deletion was persisted too.
    let b = start(dir.path().to_path_buf(), &addr).await;
    let mut c = Conn::open(&addr).await;
    let f = fetch(&mut c, &["g1", "simple"]).await;
    assert_eq!(fetched(&f, 0).0, -1);
    assert_eq!(fetched(&f, 1).0, 7);
    let d = c
        .send(
            6,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g1"))]),
        )
        .await;
    assert_eq!(d.groups[0].error_code, 69);
    drop(c);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_member_triggers_rebalance_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let b = start(dir.path().to_path_buf(), &addr).await;
    let mut a = Conn::open(&addr).await;
    let ja = join(&mut a, "g").await;
    let ma = ja.member_id.clone();
    let sync = |m: &StrBytes, generation: i32, assign: bool| {
        let mut r = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(m.clone());
        if assign {
            r.assignments = vec![sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(m.clone())
                .with_assignment(assignment("t", &[0]))];
        }
        r
    };
    assert_eq!(a.send(3, &sync(&ma, 1, true)).await.error_code, 0);

    // B's join parks until A rejoins; run it on its own connection.
    let addr2 = addr.clone();
    let bjoin = tokio::spawn(async move {
        let mut c = Conn::open(&addr2).await;
        let j = join(&mut c, "g").await;
        (c, j)
    });
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(1)
        .with_member_id(ma.clone());
    let mut saw_rebalance = false;
    for _ in 0..100 {
        if a.send(3, &hb).await.error_code == 27 {
            saw_rebalance = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_rebalance, "A is told to rejoin");
    let ja = a.send(7, &join_req("g", &ma)).await;
    let (mut cb, jb) = bjoin.await.unwrap();
    assert_eq!((ja.error_code, jb.error_code), (0, 0));
    assert_eq!((ja.generation_id, jb.generation_id), (2, 2));
    assert_eq!(ja.leader, ma);
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty());
    // B's SyncGroup waits for the leader's.
    let mb = jb.member_id.clone();
    let bsync = tokio::spawn(async move {
        let r = cb
            .send(
                3,
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_generation_id(2)
                    .with_member_id(mb),
            )
            .await;
        r
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut leader_sync = sync(&ma, 2, true);
    leader_sync.assignments.push(
        sync_group_request::SyncGroupRequestAssignment::default()
            .with_member_id(jb.member_id.clone())
            .with_assignment(assignment("t", &[1])),
    );
    assert_eq!(
        a.send(3, &leader_sync).await.assignment,
        assignment("t", &[0])
    );
    let rb = bsync.await.unwrap();
    assert_eq!(
        (rb.error_code, rb.assignment.clone()),
        (0, assignment("t", &[1]))
    );
    b.stop().await;
}
