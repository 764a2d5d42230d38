use super::*;
use crate::codec::{encode_consumer_assignment, encode_consumer_subscription};

const T0: Millis = 1_000_000;

fn cfg(delay: i64) -> Config {
    Config {
        initial_rebalance_delay_ms: delay,
        num_partitions: 50,
        ..Config::default()
    }
}

struct H {
    c: Coordinator,
    next: u64,
    replies: HashMap<ReplyId, Reply>,
    persisted: Vec<(i32, OffsetsRecord)>,
}

impl H {
    fn new(delay: i64) -> H {
        H {
            c: Coordinator::new(cfg(delay)),
            next: 0,
            replies: HashMap::new(),
            persisted: Vec::new(),
        }
    }

    fn absorb(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Persist { partition, records } => {
                    for r in records {
                        self.persisted.push((partition, r));
                    }
                }
                Action::Reply(id, r) => {
                    assert!(
                        self.replies.insert(id, r).is_none(),
                        "two replies for {id:?}"
                    );
                }
            }
        }
    }

    fn join_req(
        &mut self,
        member: &str,
        instance: Option<&str>,
        protocols: &[(&str, &[u8])],
    ) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member.into(),
            group_instance_id: instance.map(String::from),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 60_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|(n, m)| (n.to_string(), Bytes::copy_from_slice(m)))
                .collect(),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            require_known_member_id: true,
        }
    }

    fn join(&mut self, now: Millis, req: JoinRequest) -> ReplyId {
        self.next += 1;
        let id = ReplyId(self.next);
        let a = self.c.join(now, req, id);
        self.absorb(a);
        id
    }

    fn sync(
        &mut self,
        now: Millis,
        member: &str,
        generation: i32,
        assignments: &[(&str, &[u8])],
    ) -> ReplyId {
        self.next += 1;
        let id = ReplyId(self.next);
        let req = SyncRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a)))
                .collect(),
            ..SyncRequest::default()
        };
        let a = self.c.sync(now, req, id);
        self.absorb(a);
        id
    }

    fn tick(&mut self, now: Millis) {
        let a = self.c.tick(now);
        self.absorb(a);
    }

    fn join_reply(&mut self, id: ReplyId) -> Option<JoinResponse> {
        match self.replies.remove(&id)? {
            Reply::Join(j) => Some(j),
            other => panic!("expected a join reply, got {other:?}"),
        }
    }

    fn sync_reply(&mut self, id: ReplyId) -> Option<SyncResponse> {
        match self.replies.remove(&id)? {
            Reply::Sync(s) => Some(s),
            other => panic!("expected a sync reply, got {other:?}"),
        }
    }

    /// First join (MEMBER_ID_REQUIRED) then the real join; returns the member id and the
    /// reply id of the second join.
    fn join_new(&mut self, now: Millis) -> (String, ReplyId) {
        let req = self.join_req("", None, &[("range", b"r")]);
        let r = self.join(now, req);
        let resp = self.join_reply(r).expect("immediate reply");
        assert_eq!(resp.error, MEMBER_ID_REQUIRED);
        assert!(resp.member_id.starts_with("client-"));
        let req = self.join_req(&resp.member_id, None, &[("range", b"r")]);
        let r2 = self.join(now, req);
        (resp.member_id, r2)
    }

    fn state(&self) -> GroupState {
        self.c.describe_group("g").state
    }
}

#[test]
fn single_member_happy_path() {
    let mut h = H::new(0);
    let (m, r) = h.join_new(T0);
    let j = h
        .join_reply(r)
        .expect("join completes at once with no initial delay");
    assert_eq!(j.error, NONE);
    assert_eq!(j.generation_id, 1);
    assert_eq!(j.leader, m);
    assert_eq!(j.protocol_name.as_deref(), Some("range"));
    assert_eq!(j.members.len(), 1);
    assert_eq!(&j.members[0].metadata[..], b"r");
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    let s = h.sync(T0, &m, 1, &[(&m, b"A")]);
    let s = h.sync_reply(s).unwrap();
    assert_eq!((s.error, &s.assignment[..]), (NONE, &b"A"[..]));
    assert_eq!(h.state(), GroupState::Stable);
    // The group was persisted with the assignment.
    let (_, rec) = h.persisted.last().unwrap();
    match rec {
        OffsetsRecord::Group { value: Some(v), .. } => {
            assert_eq!(v.generation, 1);
            assert_eq!(&v.members[0].assignment[..], b"A");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(h.c.heartbeat(T0 + 1, "g", 1, &m, None), NONE);
}

#[test]
fn three_members_wait_for_each_other_and_get_their_assignments() {
    let mut h = H::new(0);
    let (a, ra) = h.join_new(T0);
    let ja = h.join_reply(ra).unwrap();
    assert_eq!(ja.generation_id, 1);
    let sa = h.sync(T0, &a, 1, &[(&a, b"a1")]);
    assert_eq!(h.sync_reply(sa).unwrap().error, NONE);

    // B joins: rebalance starts; A is told by heartbeat and rejoins.
    let (b, rb) = h.join_new(T0 + 10);
    assert!(h.join_reply(rb).is_none(), "B waits for A to rejoin");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.c.heartbeat(T0 + 11, "g", 1, &a, None),
        REBALANCE_IN_PROGRESS
    );
    let (c, rc) = h.join_new(T0 + 12);
    assert!(h.join_reply(rc).is_none());
    let req = h.join_req(&a, None, &[("range", b"r")]);
    let ra2 = h.join(T0 + 13, req);
    let ja = h.join_reply(ra2).unwrap();
    let jb = h.join_reply(rb).unwrap();
    let jc = h.join_reply(rc).unwrap();
    for j in [&ja, &jb, &jc] {
        assert_eq!(
            (j.error, j.generation_id, j.leader.as_str()),
            (NONE, 2, a.as_str())
        );
    }
    assert_eq!(ja.members.len(), 3, "leader gets every member");
    assert!(jb.members.is_empty() && jc.members.is_empty());

    // Followers sync first and wait for the leader.
    let sb = h.sync(T0 + 14, &b, 2, &[]);
    let sc = h.sync(T0 + 14, &c, 2, &[]);
    assert!(h.sync_reply(sb).is_none());
    let sa = h.sync(T0 + 15, &a, 2, &[(&a, b"pa"), (&b, b"pb"), (&c, b"pc")]);
    assert_eq!(&h.sync_reply(sa).unwrap().assignment[..], b"pa");
    assert_eq!(&h.sync_reply(sb).unwrap().assignment[..], b"pb");
    assert_eq!(&h.sync_reply(sc).unwrap().assignment[..], b"pc");
    assert_eq!(h.state(), GroupState::Stable);
    let d = h.c.describe_group("g");
    assert_eq!(d.members.len(), 3);
    assert_eq!(d.protocol, "range");
}

#[test]
fn member_id_required_only_from_v4_and_pending_members_expire() {
    let mut h = H::new(0);
    let mut req = h.join_req("", None, &[("range", b"r")]);
    req.require_known_member_id = false;
    let r = h.join(T0, req);
    let j = h.join_reply(r).unwrap();
    assert_eq!(j.error, NONE, "v0-3 clients join in one round");
    assert!(!j.member_id.is_empty());

    let mut h = H::new(0);
    let req = h.join_req("", None, &[("range", b"r")]);
    let r = h.join(T0, req);
    let pending = h.join_reply(r).unwrap().member_id;
    // The pending member expires after its session timeout; a late rejoin is unknown.
    h.tick(T0 + 10_001);
    let req = h.join_req(&pending, None, &[("range", b"r")]);
    let r = h.join(T0 + 10_002, req);
    assert_eq!(h.join_reply(r).unwrap().error, UNKNOWN_MEMBER_ID);
}

#[test]
fn fencing_errors() {
    let mut h = H::new(0);
    let (m, r) = h.join_new(T0);
    h.join_reply(r).unwrap();
    // CompletingRebalance: wrong generation / unknown member.
    let s = h.sync(T0, &m, 7, &[]);
    assert_eq!(h.sync_reply(s).unwrap().error, ILLEGAL_GENERATION);
    let s = h.sync(T0, "nobody", 1, &[]);
    assert_eq!(h.sync_reply(s).unwrap().error, UNKNOWN_MEMBER_ID);
    assert_eq!(h.c.heartbeat(T0, "g", 0, &m, None), ILLEGAL_GENERATION);
    assert_eq!(h.c.heartbeat(T0, "g", 1, "nobody", None), UNKNOWN_MEMBER_ID);
    assert_eq!(h.c.heartbeat(T0, "other", 1, &m, None), UNKNOWN_MEMBER_ID);
    // Offset commit while completing the rebalance.
    let (e, _) = h.c.commit_offsets(T0, commit(&m, 1, "t", 0, 5));
    assert_eq!(e, vec![REBALANCE_IN_PROGRESS]);
    let s = h.sync(T0, &m, 1, &[(&m, b"x")]);
    h.sync_reply(s).unwrap();
    let (e, _) = h.c.commit_offsets(T0, commit(&m, 0, "t", 0, 5));
    assert_eq!(e, vec![ILLEGAL_GENERATION]);
    let (e, _) = h.c.commit_offsets(T0, commit("x", 1, "t", 0, 5));
    assert_eq!(e, vec![UNKNOWN_MEMBER_ID]);
    let (e, _) = h.c.commit_offsets(T0, commit("", -1, "t", 0, 5));
    assert_eq!(
        e,
        vec![UNKNOWN_MEMBER_ID],
        "simple commit into an active group"
    );
    let (e, acts) = h.c.commit_offsets(T0, commit(&m, 1, "t", 0, 5));
    assert_eq!(e, vec![NONE]);
    assert_eq!(acts.len(), 1);
    // Join with a known member id into an unknown group.
    let mut req = h.join_req("ghost", None, &[("range", b"r")]);
    req.group_id = "nope".into();
    let r = h.join(T0, req);
    assert_eq!(h.join_reply(r).unwrap().error, UNKNOWN_MEMBER_ID);
    // Inconsistent protocol.
    let req = h.join_req("", None, &[("roundrobin", b"r")]);
    let r = h.join(T0, req);
    assert_eq!(h.join_reply(r).unwrap().error, INCONSISTENT_GROUP_PROTOCOL);
    let mut req = h.join_req("", None, &[("range", b"r")]);
    req.protocol_type = "connect".into();
    let r = h.join(T0, req);
    assert_eq!(h.join_reply(r).unwrap().error, INCONSISTENT_GROUP_PROTOCOL);
    // Session timeout bounds.
    let mut req = h.join_req("", None, &[("range", b"r")]);
    req.session_timeout_ms = 10;
    let r = h.join(T0, req);
    assert_eq!(h.join_reply(r).unwrap().error, INVALID_SESSION_TIMEOUT);
    // Sync in PreparingRebalance.
    let (_, _r2) = h.join_new(T0 + 5);
    let s = h.sync(T0 + 5, &m, 1, &[]);
    assert_eq!(h.sync_reply(s).unwrap().error, REBALANCE_IN_PROGRESS);
    let (e, _) = h.c.commit_offsets(T0 + 5, commit(&m, 1, "t", 0, 6));
    assert_eq!(
        e,
        vec![NONE],
        "commits from the current generation are allowed while preparing"
    );
}

fn commit(
    member: &str,
    generation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> CommitRequest {
    CommitRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        offsets: vec![CommitOffset {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: 3,
            metadata: Some("m".into()),
        }],
    }
}

#[test]
fn session_expiry_removes_member_and_rebalances() {
    let mut h = H::new(0);
    let (a, ra) = h.join_new(T0);
    h.join_reply(ra).unwrap();
    let s = h.sync(T0, &a, 1, &[(&a, b"x")]);
    h.sync_reply(s).unwrap();
    let (b, rb) = h.join_new(T0 + 1);
    let req = h.join_req(&a, None, &[("range", b"r")]);
    let ra = h.join(T0 + 2, req);
    h.join_reply(ra).unwrap();
    h.join_reply(rb).unwrap();
    let sa = h.sync(T0 + 3, &a, 2, &[(&a, b"x"), (&b, b"y")]);
    let sb = h.sync(T0 + 3, &b, 2, &[]);
    h.sync_reply(sa).unwrap();
    h.sync_reply(sb).unwrap();
    // B keeps heartbeating, A goes silent.
    assert_eq!(h.c.heartbeat(T0 + 9_000, "g", 2, &b, None), NONE);
    assert!(h.c.next_deadline().unwrap() <= T0 + 3 + 10_000);
    h.tick(T0 + 10_003);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.c.heartbeat(T0 + 10_004, "g", 2, &a, None),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        h.c.heartbeat(T0 + 10_004, "g", 2, &b, None),
        REBALANCE_IN_PROGRESS
    );
    let req = h.join_req(&b, None, &[("range", b"r")]);
    let rb = h.join(T0 + 10_005, req);
    let jb = h.join_reply(rb).unwrap();
    assert_eq!(
        (jb.generation_id, jb.leader.as_str()),
        (3, b.as_str()),
        "B is the new leader"
    );
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut h = H::new(0);
    let (a, ra) = h.join_new(T0);
    h.join_reply(ra).unwrap();
    let s = h.sync(T0, &a, 1, &[]);
    h.sync_reply(s).unwrap();
    let (b, rb) = h.join_new(T0 + 1);
    // A heartbeats (so its session stays alive) but never rejoins.
    for k in 1..12 {
        assert_eq!(
            h.c.heartbeat(T0 + k * 5_000, "g", 1, &a, None),
            REBALANCE_IN_PROGRESS
        );
        h.tick(T0 + k * 5_000);
    }
    h.tick(T0 + 59_000);
    assert!(h.join_reply(rb).is_none());
    assert_eq!(
        h.c.heartbeat(T0 + 59_500, "g", 1, &a, None),
        REBALANCE_IN_PROGRESS
    );
    h.tick(T0 + 60_001);
    let jb = h
        .join_reply(rb)
        .expect("completed by the rebalance timeout");
    assert_eq!(
        (jb.generation_id, jb.leader.as_str(), jb.members.len()),
        (2, b.as_str(), 1)
    );
    assert_eq!(
        h.c.heartbeat(T0 + 60_002, "g", 2, &a, None),
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn leave_triggers_rebalance_and_last_leave_empties_group() {
    let mut h = H::new(0);
    let (a, ra) = h.join_new(T0);
    h.join_reply(ra).unwrap();
    let (b, rb) = h.join_new(T0);
    let req = h.join_req(&a, None, &[("range", b"r")]);
    let ra = h.join(T0, req);
    h.join_reply(ra).unwrap();
    h.join_reply(rb).unwrap();
    let sa = h.sync(T0, &a, 2, &[]);
    let sb = h.sync(T0, &b, 2, &[]);
    h.sync_reply(sa).unwrap();
    h.sync_reply(sb).unwrap();
    let (top, errs, acts) = h.c.leave(
        T0 + 1,
        "g",
        &[LeavingMember {
            member_id: a.clone(),
            group_instance_id: None,
        }],
    );
    h.absorb(acts);
    assert_eq!((top, errs), (NONE, vec![NONE]));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let req = h.join_req(&b, None, &[("range", b"r")]);
    let rb = h.join(T0 + 2, req);
    let jb = h.join_reply(rb).unwrap();
    assert_eq!((jb.generation_id, jb.leader.as_str()), (3, b.as_str()));
    let (_, errs, _) = h.c.leave(
        T0 + 3,
        "g",
        &[LeavingMember {
            member_id: "zzz".into(),
            group_instance_id: None,
        }],
    );
    assert_eq!(errs, vec![UNKNOWN_MEMBER_ID]);
    let (_, errs, acts) = h.c.leave(
        T0 + 3,
        "g",
        &[LeavingMember {
            member_id: b.clone(),
            group_instance_id: None,
        }],
    );
    h.absorb(acts);
    assert_eq!(errs, vec![NONE]);
    assert_eq!(h.state(), GroupState::Empty);
    let (_, errs, _) = h.c.leave(T0 + 3, "nogroup", &[LeavingMember::default()]);
    assert_eq!(errs, vec![UNKNOWN_MEMBER_ID]);
}

#[test]
fn static_member_rejoins_without_rebalance_and_old_id_is_fenced() {
    let mut h = H::new(0);
    let req = h.join_req("", Some("inst-1"), &[("range", b"r")]);
    let r = h.join(T0, req);
    let j = h
        .join_reply(r)
        .expect("static members skip MEMBER_ID_REQUIRED");
    assert_eq!(j.error, NONE);
    let old = j.member_id.clone();
    assert!(old.starts_with("inst-1-"));
    let s = h.sync(T0, &old, 1, &[(&old, b"asg")]);
    h.sync_reply(s).unwrap();

    // Restart of the static member: new join with an empty member id.
    let req = h.join_req("", Some("inst-1"), &[("range", b"r")]);
    let r = h.join(T0 + 100, req);
    let j = h.join_reply(r).unwrap();
    assert_eq!(j.error, NONE);
    assert_ne!(j.member_id, old);
    assert_eq!(j.generation_id, 1, "no rebalance");
    assert!(j.skip_assignment, "the leader keeps the current assignment");
    assert_eq!(h.state(), GroupState::Stable);
    let new = j.member_id.clone();
    let s = h.sync(T0 + 101, &new, 1, &[]);
    assert_eq!(&h.sync_reply(s).unwrap().assignment[..], b"asg");
    assert_eq!(
        h.c.heartbeat(T0 + 102, "g", 1, &old, Some("inst-1")),
        FENCED_INSTANCE_ID
    );
    let mut c = commit(&old, 1, "t", 0, 1);
    c.group_instance_id = Some("inst-1".into());
    assert_eq!(h.c.commit_offsets(T0, c).0, vec![FENCED_INSTANCE_ID]);
    let (_, errs, _) = h.c.leave(
        T0 + 103,
        "g",
        &[LeavingMember {
            member_id: old,
            group_instance_id: Some("inst-1".into()),
        }],
    );
    assert_eq!(errs, vec![FENCED_INSTANCE_ID]);
    // Changed metadata: rebalance.
    let req = h.join_req("", Some("inst-1"), &[("range", b"changed")]);
    let r = h.join(T0 + 200, req);
    let j = h.join_reply(r).unwrap();
    assert_eq!(j.generation_id, 2);
    // Leaving by instance id only.
    let (_, errs, acts) = h.c.leave(
        T0 + 300,
        "g",
        &[LeavingMember {
            member_id: String::new(),
            group_instance_id: Some("inst-1".into()),
        }],
    );
    h.absorb(acts);
    assert_eq!(errs, vec![NONE]);
    assert_eq!(h.state(), GroupState::Empty);
}

#[test]
fn initial_delay_waits_and_extends_for_new_joiners_but_not_past_rebalance_timeout() {
    let mut h = H::new(3000);
    let (_a, ra) = h.join_new(T0);
    assert!(h.join_reply(ra).is_none());
    assert_eq!(h.c.next_deadline(), Some(T0 + 3000));
    let (_b, rb) = h.join_new(T0 + 1000);
    h.tick(T0 + 2999);
    assert!(h.join_reply(ra).is_none());
    // B joined during the delay: extended by another delay.
    h.tick(T0 + 3000);
    assert!(h.join_reply(ra).is_none());
    h.tick(T0 + 6000);
    let ja = h.join_reply(ra).expect("completes after the extension");
    let jb = h.join_reply(rb).unwrap();
    assert_eq!((ja.generation_id, jb.generation_id), (1, 1));

    // Never past the rebalance timeout: rebalance timeout 4000 → at most 3000 + 1000.
    let mut h = H::new(3000);
    let mut req = h.join_req("", None, &[("range", b"r")]);
    req.rebalance_timeout_ms = 4000;
    let r = h.join(T0, req.clone());
    let id = h.join_reply(r).unwrap().member_id;
    req.member_id = id;
    let r = h.join(T0, req.clone());
    let mut done_at = None;
    for k in 1..60 {
        let now = T0 + k * 100;
        if done_at.is_none() {
            // A new member keeps joining every 100 ms.
            req.member_id = String::new();
            let x = h.join(now, req.clone());
            let mid = h.join_reply(x).unwrap().member_id;
            let mut r2 = req.clone();
            r2.member_id = mid;
            h.join(now, r2);
        }
        h.tick(now);
        if done_at.is_none() && h.join_reply(r).is_some() {
            done_at = Some(now);
        }
    }
    assert_eq!(
        done_at,
        Some(T0 + 4000),
        "delay + the rest of the rebalance timeout, no more"
    );
}

#[test]
fn simple_consumer_commits_and_fetches_without_joining() {
    let mut h = H::new(0);
    let (e, acts) = h.c.commit_offsets(T0, commit("", -1, "t", 2, 42));
    assert_eq!(e, vec![NONE]);
    h.absorb(acts);
    assert_eq!(h.persisted.len(), 1);
    let got =
        h.c.fetch_offsets("g", Some(&[("t".to_string(), vec![2, 3])]))
            .unwrap();
    assert_eq!(
        got[0].1[0],
        FetchedOffset {
            partition: 2,
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into()
        }
    );
    assert_eq!(got[0].1[1].offset, -1);
    let all = h.c.fetch_offsets("g", None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(h.c.fetch_offsets("unknown", None).unwrap(), vec![]);
    // Unknown group with a generation: refused.
    let mut c = commit("m", 3, "t", 0, 1);
    c.group_id = "other".into();
    assert_eq!(h.c.commit_offsets(T0, c).0, vec![ILLEGAL_GENERATION]);
    // Metadata too large.
    let mut c = commit("", -1, "t", 0, 1);
    c.offsets[0].metadata = Some("x".repeat(5000));
    assert_eq!(h.c.commit_offsets(T0, c).0, vec![OFFSET_METADATA_TOO_LARGE]);
    let l = h.c.list_groups(&[], &[]).unwrap();
    assert_eq!(
        l,
        vec![ListedGroup {
            group_id: "g".into(),
            protocol_type: String::new(),
            state: GroupState::Empty
        }]
    );
}

#[test]
fn delete_groups_refuses_non_empty_and_writes_tombstones() {
    let mut h = H::new(0);
    let (m, r) = h.join_new(T0);
    h.join_reply(r).unwrap();
    let (e, _) = h.c.delete_groups(&["g".into(), "missing".into()]);
    assert_eq!(e, vec![NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND]);
    let s = h.sync(T0, &m, 1, &[]);
    h.sync_reply(s).unwrap();
    let (_, a) = h.c.commit_offsets(T0, commit(&m, 1, "t", 0, 9));
    h.absorb(a);
    let (_, _, a) = h.c.leave(
        T0,
        "g",
        &[LeavingMember {
            member_id: m,
            group_instance_id: None,
        }],
    );
    h.absorb(a);
    h.persisted.clear();
    let (e, a) = h.c.delete_groups(&["g".into()]);
    h.absorb(a);
    assert_eq!(e, vec![NONE]);
    assert_eq!(h.persisted.len(), 2);
    assert!(matches!(
        &h.persisted[0].1,
        OffsetsRecord::Offset { value: None, .. }
    ));
    assert!(matches!(
        &h.persisted[1].1,
        OffsetsRecord::Group { value: None, .. }
    ));
    assert!(!h.c.describe_group("g").found);
}

#[test]
fn offset_delete_respects_subscriptions() {
    let mut h = H::new(0);
    let sub = encode_consumer_subscription(&["t"]);
    let req = h.join_req("", None, &[("range", &sub)]);
    let r = h.join(T0, req);
    let id = h.join_reply(r).unwrap().member_id;
    let req = h.join_req(&id, None, &[("range", &sub)]);
    let r = h.join(T0, req);
    h.join_reply(r).unwrap();
    let asg = encode_consumer_assignment(&[("t", &[0, 1])]);
    let s = h.sync(T0, &id, 1, &[(&id, &asg)]);
    h.sync_reply(s).unwrap();
    let mut c = commit(&id, 1, "t", 0, 1);
    c.offsets.push(CommitOffset {
        topic: "u".into(),
        partition: 0,
        offset: 2,
        leader_epoch: -1,
        metadata: None,
    });
    h.c.commit_offsets(T0, c);
    let (res, acts) =
        h.c.delete_offsets("g", &[("t".into(), vec![0]), ("u".into(), vec![0])]);
    let res = res.unwrap();
    assert_eq!(res[0].1, vec![(0, GROUP_SUBSCRIBED_TO_TOPIC)]);
    assert_eq!(res[1].1, vec![(0, NONE)]);
    assert_eq!(acts.len(), 1);
    assert_eq!(h.c.fetch_offsets("g", None).unwrap().len(), 1);
    assert_eq!(h.c.delete_offsets("zz", &[]).0, Err(GROUP_ID_NOT_FOUND));
    // The overview decodes the assignment.
    let o = h.c.overview(Some("g"));
    assert_eq!(
        o[0].members[0].assignment,
        vec![("t".to_string(), vec![0, 1])]
    );
    assert_eq!(o[0].offsets.len(), 1);
    assert_eq!(o[0].state, GroupState::Stable);
}

#[test]
fn replay_restores_offsets_and_group() {
    let mut h = H::new(0);
    let (m, r) = h.join_new(T0);
    h.join_reply(r).unwrap();
    let s = h.sync(T0, &m, 1, &[(&m, b"asg")]);
    h.sync_reply(s).unwrap();
    let (_, a) = h.c.commit_offsets(T0, commit(&m, 1, "t", 0, 77));
    h.absorb(a);
    let (_, a) =
        h.c.commit_offsets(T0, commit("", -1, "t", 0, 5).with_group("simple"));
    h.absorb(a);
    let (_, a) =
        h.c.commit_offsets(T0, commit("", -1, "t", 0, 5).with_group("gone"));
    h.absorb(a);
    let (_, a) = h.c.delete_groups(&["gone".into()]);
    h.absorb(a);

    let mut c2 = Coordinator::new(cfg(0));
    let p = c2.partition_of("g");
    c2.begin_load(p);
    assert_eq!(
        c2.heartbeat(T0, "g", 1, &m, None),
        COORDINATOR_LOAD_IN_PROGRESS
    );
    for (part, rec) in &h.persisted {
        // Round trip through the codec, as replay from the log does.
        let back = OffsetsRecord::decode(&rec.encode_key(), rec.encode_value().as_deref())
            .unwrap()
            .unwrap();
        c2.replay(*part, back);
    }
    for part in 0..50 {
        c2.finish_load(part, T0 + 5);
    }
    assert_eq!(c2.heartbeat(T0 + 6, "g", 1, &m, None), NONE);
    let got = c2.fetch_offsets("g", None).unwrap();
    assert_eq!(got[0].1[0].offset, 77);
    let d = c2.describe_group("g");
    assert_eq!(
        (d.state, d.members.len(), &d.members[0].assignment[..]),
        (GroupState::Stable, 1, &b"asg"[..])
    );
    assert_eq!(c2.fetch_offsets("simple", None).unwrap()[0].1[0].offset, 5);
    assert!(!c2.describe_group("gone").found);
    // The restored member expires if it never comes back.
    let a = c2.tick(T0 + 6 + 10_000);
    assert!(a.iter().any(|x| matches!(x, Action::Persist { .. })));
    assert_eq!(c2.describe_group("g").state, GroupState::Empty);
}

#[test]
fn offsets_of_empty_groups_expire() {
    let mut h = H::new(0);
    h.c = Coordinator::new(Config {
        offsets_retention_ms: 1000,
        offsets_retention_check_interval_ms: 100,
        ..cfg(0)
    });
    let (_, a) = h.c.commit_offsets(T0, commit("", -1, "t", 0, 5));
    h.absorb(a);
    h.tick(T0 + 500);
    assert_eq!(h.c.fetch_offsets("g", None).unwrap().len(), 1);
    h.persisted.clear();
    h.tick(T0 + 1001);
    assert!(h.c.fetch_offsets("g", None).unwrap().is_empty());
    assert!(h
        .persisted
        .iter()
        .any(|(_, r)| matches!(r, OffsetsRecord::Offset { value: None, .. })));
    assert!(h
        .persisted
        .iter()
        .any(|(_, r)| matches!(r, OffsetsRecord::Group { value: None, .. })));
    assert!(h.c.list_groups(&[], &[]).unwrap().is_empty());
}

#[test]
fn list_groups_filters() {
    let mut h = H::new(0);
    let (_, r) = h.join_new(T0);
    h.join_reply(r).unwrap();
    h.c.commit_offsets(T0, commit("", -1, "t", 0, 5).with_group("simple"));
    let all = h.c.list_groups(&[], &[]).unwrap();
    assert_eq!(all.len(), 2);
    let s =
        h.c.list_groups(&["completingrebalance".into()], &[])
            .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].protocol_type, "consumer");
    assert!(h
        .c
        .list_groups(&[], &["consumer".into()])
        .unwrap()
        .is_empty());
    assert_eq!(h.c.list_groups(&[], &["Classic".into()]).unwrap().len(), 2);
}

#[test]
fn sync_timeout_removes_members_that_never_sync() {
    let mut h = H::new(0);
    let (a, ra) = h.join_new(T0);
    h.join_reply(ra).unwrap();
    let (b, rb) = h.join_new(T0);
    let req = h.join_req(&a, None, &[("range", b"r")]);
    let ra = h.join(T0, req);
    h.join_reply(ra).unwrap();
    h.join_reply(rb).unwrap();
    // B syncs and waits for the leader, who never sends SyncGroup (but heartbeats).
    let sb = h.sync(T0 + 1, &b, 2, &[]);
    assert_eq!(h.c.heartbeat(T0 + 5000, "g", 2, &a, None), NONE);
    h.tick(T0 + 60_001);
    assert_eq!(h.sync_reply(sb).unwrap().error, REBALANCE_IN_PROGRESS);
    assert_eq!(
        h.c.heartbeat(T0 + 60_002, "g", 2, &a, None),
        UNKNOWN_MEMBER_ID
    );
}

impl CommitRequest {
    fn with_group(mut self, g: &str) -> Self {
        self.group_id = g.into();
        self
    }
}

#[test]
fn deleted_topics_lose_their_offsets_and_empty_groups_go() {
    let mut h = H::new(0);
    let (_, a) = h.c.commit_offsets(T0, commit("", -1, "gone", 0, 5));
    h.absorb(a);
    let (_, a) = h.c.commit_offsets(T0, commit("", -1, "gone", 1, 6));
    h.absorb(a);
    let (_, a) = h.c.commit_offsets(T0, commit("", -1, "kept", 0, 7));
    h.absorb(a);
    h.persisted.clear();
    // Another topic's deletion changes nothing.
    assert!(h
        .c
        .on_topics_deleted(&BTreeSet::from(["other".to_string()]))
        .is_empty());
    let a = h.c.on_topics_deleted(&BTreeSet::from(["gone".to_string()]));
    h.absorb(a);
    let left = h.c.fetch_offsets("g", None).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, "kept");
    let tombstones: Vec<(String, i32)> = h
        .persisted
        .iter()
        .filter_map(|(_, r)| match r {
            OffsetsRecord::Offset {
                topic,
                partition,
                value: None,
                ..
            } => Some((topic.clone(), *partition)),
            _ => None,
        })
        .collect();
    assert_eq!(
        tombstones,
        vec![("gone".to_string(), 0), ("gone".to_string(), 1)]
    );
    assert!(!h.c.list_groups(&[], &[]).unwrap().is_empty());
    // The last topic goes: the Empty group has no offsets left and is removed.
    h.persisted.clear();
    let a = h.c.on_topics_deleted(&BTreeSet::from(["kept".to_string()]));
    h.absorb(a);
    assert!(h
        .persisted
        .iter()
        .any(|(_, r)| matches!(r, OffsetsRecord::Group { value: None, .. })));
    assert!(h.c.list_groups(&[], &[]).unwrap().is_empty());
}

#[test]
fn unload_drops_the_partitions_groups_and_answers_parked_joins_not_coordinator() {
    // A delayed first rebalance keeps the join parked.
    let mut h = H::new(3_000);
    let req = h.join_req("", None, &[("range", b"m")]);
    let mut req = req;
    req.require_known_member_id = false;
    let parked = h.join(0, req);
    assert!(
        h.join_reply(parked).is_none(),
        "the join waits for the initial delay"
    );
    let p = h.c.partition_of("g");
    // Unloading another partition changes nothing.
    let other = h.c.unload(p + 1);
    assert!(other.is_empty());
    assert_eq!(h.c.overview(Some("g")).len(), 1);
    let actions = h.c.unload(p);
    h.absorb(actions);
    let r = h.join_reply(parked).expect("the parked join is answered");
    assert_eq!(r.error, crate::errors::NOT_COORDINATOR);
    assert!(
        h.c.overview(Some("g")).is_empty(),
        "the group is gone from memory"
    );
}

/// The offset OffsetFetch shows for `g` / `t`-0, if any.
fn visible(h: &H) -> Option<i64> {
    h.c.fetch_offsets("g", Some(&[("t".to_string(), vec![0])]))
        .unwrap()
        .first()
        .and_then(|(_, ps)| ps.first())
        .map(|p| p.offset)
        .filter(|o| *o >= 0)
}

#[test]
fn staged_commits_are_invisible_until_their_write_completes() {
    let mut h = H::new(0);
    let (e, id, acts) = h.c.stage_commit(T0, commit("", -1, "t", 0, 5));
    assert_eq!((e, acts.len()), (vec![NONE], 1));
    let id = id.expect("a staged commit has an id");
    assert_eq!(visible(&h), None, "not visible before its write completes");
    assert_eq!(h.c.pending_commit_count("g"), 1);
    h.c.complete_commit("g", id, true);
    assert_eq!(visible(&h), Some(5));
    assert_eq!(h.c.pending_commit_count("g"), 0);
    // A failed write is dropped; the previous offset stays.
    let (_, id2, _) = h.c.stage_commit(T0, commit("", -1, "t", 0, 9));
    h.c.complete_commit("g", id2.unwrap(), false);
    assert_eq!(visible(&h), Some(5));
    assert_eq!(h.c.pending_commit_count("g"), 0);
    // Refused commits stage nothing.
    let (e, id3, acts) = h.c.stage_commit(T0, commit("x", 1, "t", 0, 7));
    assert_eq!((e, id3, acts.len()), (vec![UNKNOWN_MEMBER_ID], None, 0));
}

#[test]
fn a_later_commit_is_never_overwritten_by_an_earlier_one_completing_late() {
    let mut h = H::new(0);
    // A retry of an old commit queued before a newer one, completing in the other order, and
    // one queued after it: the log order decides, as replay of the log would.
    let (_, old, _) = h.c.stage_commit(T0, commit("", -1, "t", 0, 100));
    let (_, new, _) = h.c.stage_commit(T0, commit("", -1, "t", 0, 200));
    h.c.complete_commit("g", new.unwrap(), true);
    assert_eq!(visible(&h), Some(200));
    h.c.complete_commit("g", old.unwrap(), true);
    assert_eq!(
        visible(&h),
        Some(200),
        "an earlier commit completing late does not win"
    );
    let (_, later, _) = h.c.stage_commit(T0, commit("", -1, "t", 0, 150));
    h.c.complete_commit("g", later.unwrap(), true);
    assert_eq!(
        visible(&h),
        Some(150),
        "a later commit wins, whatever its offset"
    );
    // Unknown ids and groups are ignored.
    h.c.complete_commit("g", 999, true);
    h.c.complete_commit("nope", 1, true);
    assert_eq!(visible(&h), Some(150));
}
