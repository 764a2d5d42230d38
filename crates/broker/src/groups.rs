//! Runtime glue around the group coordinator state machine (`sluice-group`).
//!
//! The [`Coordinator`] lives behind a short-held mutex (never across I/O). Its actions are
//! executed here: `Persist` records go, in order, to one writer task that appends them as v2
//! batches to the `__consumer_offsets` partition; replies to parked JoinGroup/SyncGroup
//! requests travel through tokio oneshot channels, and a reply that follows a persist waits
//! for that persist. A timer task calls `tick` at the coordinator's next deadline.
//!
//! Startup is lazy: the first group request (FindCoordinator included) creates
//! `__consumer_offsets` if needed, spawns the tasks and replays every partition into the
//! coordinator; until a partition is replayed its groups answer COORDINATOR_LOAD_IN_PROGRESS.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_controller::{plan_create_topic, BrokerSettings, Metadata, MetadataCommand};
use sluice_group::codec::OffsetsRecord;
use sluice_group::{
    Action, CommitRequest, Config, Coordinator, DescribedGroup, FetchedOffset, GroupOverview,
    JoinRequest, JoinResponse, LeavingMember, ListedGroup, Millis, Reply, ReplyId, SyncRequest,
    SyncResponse,
};
use tokio::sync::{mpsc, oneshot, Notify, OnceCell};

use crate::codes::COORDINATOR_NOT_AVAILABLE;
use crate::partition::TopicRef;
use crate::state::Broker;

/// Name of the offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long the first request waits for the initial replay before answering
/// COORDINATOR_LOAD_IN_PROGRESS.
const LOAD_WAIT: Duration = Duration::from_secs(2);
/// The timer never sleeps longer than this (deadlines are re-read after each wake).
const MAX_SLEEP_MS: i64 = 1000;

struct PersistJob {
    partition: i32,
    records: Vec<OffsetsRecord>,
    done: oneshot::Sender<Result<(), String>>,
}

enum Step {
    Ack(oneshot::Receiver<Result<(), String>>),
    Deliver(oneshot::Sender<Reply>, Reply),
}

struct Inner {
    coord: Coordinator,
    waiters: HashMap<ReplyId, oneshot::Sender<Reply>>,
    writer: Option<mpsc::UnboundedSender<PersistJob>>,
    /// Set when the coordinator started (the tasks run); leadership hooks load partitions
    /// through it.
    broker: Option<Weak<Broker>>,
}

/// The broker's group coordinator: state machine + timers + persistence.
pub struct Groups {
    inner: Mutex<Inner>,
    next_reply: AtomicU64,
    wake: Arc<Notify>,
    started: OnceCell<()>,
    loaded: tokio::sync::watch::Sender<bool>,
}

pub(crate) fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn coordinator_config(settings: &BrokerSettings, partitions: i32) -> Config {
    let d = Config::default();
    let get = |name: &str, fallback: i64| -> i64 {
        settings
            .get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(fallback)
    };
    Config {
        initial_rebalance_delay_ms: i64::from(settings.group_initial_rebalance_delay_ms().max(0)),
        min_session_timeout_ms: get("group.min.session.timeout.ms", 6000) as i32,
        max_session_timeout_ms: get("group.max.session.timeout.ms", 1_800_000) as i32,
        offsets_retention_ms: get("offsets.retention.minutes", 10080).saturating_mul(60_000),
        offsets_retention_check_interval_ms: get(
            "offsets.retention.check.interval.ms",
            d.offsets_retention_check_interval_ms,
        ),
        offset_metadata_max_bytes: get("offset.metadata.max.bytes", 4096).max(0) as usize,
        num_partitions: partitions.max(1),
        seed: now_ms() as u64 ^ u64::from(std::process::id()).rotate_left(32),
    }
}

impl Groups {
    /// A coordinator with no groups; tasks start on first use ([`Groups::ready`]).
    pub fn new(settings: &BrokerSettings) -> Groups {
        let (loaded, _) = tokio::sync::watch::channel(false);
        Groups {
            inner: Mutex::new(Inner {
                coord: Coordinator::new(coordinator_config(
                    settings,
                    settings.offsets_topic_num_partitions(),
                )),
                waiters: HashMap::new(),
                writer: None,
                broker: None,
            }),
            next_reply: AtomicU64::new(1),
            wake: Arc::new(Notify::new()),
            started: OnceCell::new(),
            loaded,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ensures `__consumer_offsets` exists, the tasks run and the initial replay had its
    /// chance to finish. Err is a Kafka error code for the caller to return.
    pub async fn ready(&self, broker: &Arc<Broker>) -> Result<(), i16> {
        self.started.get_or_try_init(|| self.start(broker)).await?;
        let mut rx = self.loaded.subscribe();
        if !*rx.borrow() {
            let _ = tokio::time::timeout(LOAD_WAIT, rx.wait_for(|l| *l)).await;
        }
        Ok(())
    }

    async fn start(&self, broker: &Arc<Broker>) -> Result<(), i16> {
        let md = ensure_offsets_topic(broker).await?;
        let Some(topic) = md.topics.get(OFFSETS_TOPIC) else {
            return Err(COORDINATOR_NOT_AVAILABLE);
        };
        let n = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let me = broker.config.node_id;
        let mine: Vec<i32> = topic
            .partitions
            .iter()
            .filter(|p| p.leader == me)
            .map(|p| p.index)
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut inner = self.lock();
            if inner.coord.config().num_partitions != n {
                inner.coord = Coordinator::new(coordinator_config(&broker.config.settings, n));
            }
            for p in &mine {
                inner.coord.begin_load(*p);
            }
            inner.writer = Some(tx);
            inner.broker = Some(Arc::downgrade(broker));
        }
        tokio::spawn(writer_task(Arc::downgrade(broker), rx));
        tokio::spawn(timer_task(Arc::downgrade(broker), self.wake.clone()));
        tokio::spawn(load_partitions(Arc::downgrade(broker), mine, true));
        Ok(())
    }

    /// Reconciler hook: `__consumer_offsets` partition `partition` is now led here. Once the
    /// coordinator runs, the partition is loaded (its groups answer
    /// COORDINATOR_LOAD_IN_PROGRESS until replayed); before that, `start` loads every led
    /// partition itself, so nothing is done (on one node this hook fires only at creation,
    /// which `start` itself triggers).
    pub fn on_become_leader(&self, partition: i32, leader_epoch: i32) {
        let weak = {
            let mut inner = self.lock();
            let Some(weak) = inner.broker.clone() else {
                return;
            };
            inner.coord.begin_load(partition);
            weak
        };
        tracing::info!(
            partition,
            leader_epoch,
            "became leader of {OFFSETS_TOPIC} partition; loading its groups"
        );
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(load_partitions(weak, vec![partition], false));
            }
            Err(_) => tracing::error!(partition, "no runtime to load the partition on"),
        }
    }

    /// Reconciler hook: these topics were deleted (or recreated under a new id). Every group's
    /// offsets for them are dropped and tombstoned, as Kafka's coordinator does on
    /// `onPartitionsDeleted`, so a topic created again under the name starts without them.
    pub fn on_topics_deleted(&self, topics: &BTreeSet<String>) {
        if topics.is_empty() {
            return;
        }
        let ((), steps) = self.apply(None, |c, _| ((), c.on_topics_deleted(topics)));
        if steps.is_empty() {
            return;
        }
        tracing::info!(?topics, "dropped committed offsets of deleted topics");
        // The tombstones are already queued to the writer; this only reports failures.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(Self::execute(steps));
        }
    }

    /// Reconciler hook: `__consumer_offsets` partition `partition` is no longer led here:
    /// its groups are unloaded and their parked JoinGroup/SyncGroup requests answered
    /// NOT_COORDINATOR (the new leader replays the partition and takes over).
    pub fn on_resign(&self, partition: i32) {
        tracing::info!(
            partition,
            "no longer leader of {OFFSETS_TOPIC} partition; unloading its groups"
        );
        let ((), steps) = self.apply(None, |c, _| ((), c.unload(partition)));
        if steps.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(Self::execute(steps));
        }
    }
}

/// Replays `partitions` of `__consumer_offsets` into the coordinator, one after the other;
/// with `initial`, signals the first load as finished afterwards.
async fn load_partitions(weak: Weak<Broker>, partitions: Vec<i32>, initial: bool) {
    for p in partitions {
        let Some(b) = weak.upgrade() else { return };
        let b2 = b.clone();
        let records = tokio::task::spawn_blocking(move || read_partition(&b2, p))
            .await
            .unwrap_or_default();
        let count = records.len();
        {
            let mut inner = b.groups.lock();
            for r in records {
                inner.coord.replay(p, r);
            }
            inner.coord.finish_load(p, now_ms());
        }
        if count > 0 {
            tracing::info!(
                partition = p,
                records = count,
                "loaded group coordinator partition"
            );
        }
    }
    if let Some(b) = weak.upgrade() {
        if initial {
            let _ = b.groups.loaded.send(true);
        }
        b.groups.wake.notify_one();
    }
}

impl Groups {
    /// The `__consumer_offsets` partition that holds `group_id`.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        self.lock().coord.partition_of(group_id)
    }

    /// Runs `f` on the coordinator under the lock and turns its actions into steps; persists
    /// are queued to the writer before the lock is released, so the log keeps their order.
    fn apply<T>(
        &self,
        register: Option<(ReplyId, oneshot::Sender<Reply>)>,
        f: impl FnOnce(&mut Coordinator, Millis) -> (T, Vec<Action>),
    ) -> (T, Vec<Step>) {
        let mut inner = self.lock();
        if let Some((id, tx)) = register {
            inner.waiters.insert(id, tx);
        }
        let (value, actions) = f(&mut inner.coord, now_ms());
        let mut steps = Vec::with_capacity(actions.len());
        for a in actions {
            match a {
                Action::Persist { partition, records } => {
                    let (done, rx) = oneshot::channel();
                    let job = PersistJob {
                        partition,
                        records,
                        done,
                    };
                    match &inner.writer {
                        Some(w) => {
                            if w.send(job).is_err() {
                                let (tx, rx) = oneshot::channel();
                                let _ = tx.send(Err("offsets writer stopped".into()));
                                steps.push(Step::Ack(rx));
                                continue;
                            }
                        }
                        None => {
                            let _ = job.done.send(Err("offsets writer not started".into()));
                        }
                    }
                    steps.push(Step::Ack(rx));
                }
                Action::Reply(id, reply) => {
                    if let Some(tx) = inner.waiters.remove(&id) {
                        steps.push(Step::Deliver(tx, reply));
                    }
                }
            }
        }
        drop(inner);
        (value, steps)
    }

    /// [`Groups::apply`], then wakes the timer (deadlines may have moved).
    fn apply_and_wake<T>(
        &self,
        register: Option<(ReplyId, oneshot::Sender<Reply>)>,
        f: impl FnOnce(&mut Coordinator, Millis) -> (T, Vec<Action>),
    ) -> (T, Vec<Step>) {
        let r = self.apply(register, f);
        self.wake.notify_one();
        r
    }

    /// Executes steps in order; returns false if a persist failed (later replies then carry
    /// COORDINATOR_NOT_AVAILABLE).
    async fn execute(steps: Vec<Step>) -> bool {
        let mut ok = true;
        for s in steps {
            match s {
                Step::Ack(rx) => match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!("writing to {OFFSETS_TOPIC} failed: {e}");
                        ok = false;
                    }
                    Err(_) => ok = false,
                },
                Step::Deliver(tx, reply) => {
                    let reply = if ok {
                        reply
                    } else {
                        reply.into_error(COORDINATOR_NOT_AVAILABLE)
                    };
                    let _ = tx.send(reply);
                }
            }
        }
        ok
    }

    fn reply_id(&self) -> ReplyId {
        ReplyId(self.next_reply.fetch_add(1, Ordering::Relaxed))
    }

    /// JoinGroup: waits until the rebalance completes (or the request fails).
    pub async fn join(&self, req: JoinRequest) -> JoinResponse {
        let member_id = req.member_id.clone();
        let id = self.reply_id();
        let (tx, rx) = oneshot::channel();
        let ((), steps) = self.apply_and_wake(Some((id, tx)), |c, now| ((), c.join(now, req, id)));
        Self::execute(steps).await;
        match rx.await {
            Ok(Reply::Join(j)) => j,
            _ => join_error(COORDINATOR_NOT_AVAILABLE, &member_id),
        }
    }

    /// SyncGroup: waits for the leader's assignment.
    pub async fn sync(&self, req: SyncRequest) -> SyncResponse {
        let id = self.reply_id();
        let (tx, rx) = oneshot::channel();
        let ((), steps) = self.apply_and_wake(Some((id, tx)), |c, now| ((), c.sync(now, req, id)));
        Self::execute(steps).await;
        match rx.await {
            Ok(Reply::Sync(s)) => s,
            _ => SyncResponse {
                error: COORDINATOR_NOT_AVAILABLE,
                protocol_type: None,
                protocol_name: None,
                assignment: Bytes::new(),
            },
        }
    }

    /// Heartbeat: its error code.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        self.lock()
            .coord
            .heartbeat(now_ms(), group_id, generation_id, member_id, instance_id)
    }

    /// LeaveGroup: top-level error and per-member errors.
    pub async fn leave(&self, group_id: &str, members: &[LeavingMember]) -> (i16, Vec<i16>) {
        let ((top, errs), steps) = self.apply_and_wake(None, |c, now| {
            let (t, e, a) = c.leave(now, group_id, members);
            ((t, e), a)
        });
        tokio::spawn(Self::execute(steps));
        (top, errs)
    }

    /// OffsetCommit: one error per offset, after the commit is in the log and replicated.
    /// The offsets become visible to OffsetFetch only then (Kafka's pending commits).
    pub async fn commit(&self, req: CommitRequest) -> Vec<i16> {
        let group = req.group_id.clone();
        let ((errors, id), steps) = self.apply_and_wake(None, |c, now| {
            let (e, id, a) = c.stage_commit(now, req);
            ((e, id), a)
        });
        let ok = Self::execute(steps).await;
        if let Some(id) = id {
            self.lock().coord.complete_commit(&group, id, ok);
        }
        if ok {
            errors
        } else {
            errors
                .into_iter()
                .map(|e| {
                    if e == crate::codes::NONE {
                        COORDINATOR_NOT_AVAILABLE
                    } else {
                        e
                    }
                })
                .collect()
        }
    }

    /// OffsetFetch for one group.
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<(String, Vec<FetchedOffset>)>, i16> {
        self.lock().coord.fetch_offsets(group_id, topics)
    }

    /// OffsetDelete.
    #[allow(clippy::type_complexity)]
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<(String, Vec<(i32, i16)>)>, i16> {
        let (res, steps) = self.apply(None, |c, _| c.delete_offsets(group_id, topics));
        if Self::execute(steps).await {
            res
        } else {
            Err(COORDINATOR_NOT_AVAILABLE)
        }
    }

    /// DeleteGroups: one error per group.
    pub async fn delete_groups(&self, ids: &[String]) -> Vec<i16> {
        let (errors, steps) = self.apply(None, |c, _| c.delete_groups(ids));
        if Self::execute(steps).await {
            errors
        } else {
            errors
                .into_iter()
                .map(|e| {
                    if e == crate::codes::NONE {
                        COORDINATOR_NOT_AVAILABLE
                    } else {
                        e
                    }
                })
                .collect()
        }
    }

    /// ListGroups.
    pub fn list(&self, states: &[String], types: &[String]) -> Result<Vec<ListedGroup>, i16> {
        self.lock().coord.list_groups(states, types)
    }

    /// DescribeGroups for one group.
    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        self.lock().coord.describe_group(group_id)
    }

    /// Every group (or one) with its state, protocol, members (with assignments decoded as
    /// topic-partitions for the consumer protocol) and committed offsets — for lag tools.
    /// Empty while the coordinator has not started (no group request since startup); call
    /// [`Groups::ready`] first to load persisted groups.
    #[allow(dead_code)] // API for the lag tools (CLI/HTTP); not called by handlers.
    pub fn overview(&self, group_id: Option<&str>) -> Vec<GroupOverview> {
        self.lock().coord.overview(group_id)
    }
}

fn join_error(code: i16, member_id: &str) -> JoinResponse {
    JoinResponse {
        error: code,
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: member_id.to_string(),
        members: Vec::new(),
        skip_assignment: false,
    }
}

/// Creates `__consumer_offsets` if it does not exist (compacted, internal,
/// `offsets.topic.num.partitions` partitions) and opens its logs.
async fn ensure_offsets_topic(broker: &Arc<Broker>) -> Result<Arc<Metadata>, i16> {
    let md = broker.metadata();
    if md.topics.contains_key(OFFSETS_TOPIC) {
        return Ok(md);
    }
    let _g = broker.admin_lock.lock().await;
    let md = broker.metadata();
    if md.topics.contains_key(OFFSETS_TOPIC) {
        return Ok(md);
    }
    let settings = &broker.config.settings;
    // `offsets.topic.replication.factor` (default 3), as Kafka enforces it: until that many
    // brokers are registered the topic is not created and FindCoordinator answers
    // COORDINATOR_NOT_AVAILABLE. Only a node running alone caps it to 1, so the one-command
    // broker works.
    let rf = if broker.config.cluster.is_single() {
        1
    } else {
        settings.offsets_topic_replication_factor().max(1)
    };
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), "104857600".to_string());
    let cmd = plan_create_topic(
        &md,
        OFFSETS_TOPIC,
        settings.offsets_topic_num_partitions().max(1),
        rf,
        &configs,
        settings,
    )
    .map_err(|e| {
        tracing::error!("cannot plan {OFFSETS_TOPIC}: {e}");
        COORDINATOR_NOT_AVAILABLE
    })?;
    let cmd = match cmd {
        MetadataCommand::CreateTopic {
            name,
            id,
            partitions,
            configs,
            ..
        } => MetadataCommand::CreateTopic {
            name,
            id,
            partitions,
            configs,
            internal: true,
        },
        other => other,
    };
    // Committing reconciles: the partitions assigned here are open when this returns.
    let md = broker.commit(cmd).await.map_err(|e| {
        tracing::error!("cannot create {OFFSETS_TOPIC}: {e}");
        COORDINATOR_NOT_AVAILABLE
    })?;
    if let Some(t) = md.topics.get(OFFSETS_TOPIC) {
        tracing::info!(partitions = t.partitions.len(), "created {OFFSETS_TOPIC}");
    }
    Ok(md)
}

/// Reads a whole `__consumer_offsets` partition and decodes its records, skipping (with a
/// warning) what cannot be decoded.
fn read_partition(broker: &Broker, partition: i32) -> Vec<OffsetsRecord> {
    let Ok(h) = broker.local_partition(TopicRef::Name(OFFSETS_TOPIC), partition) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // Committed records only (on one node the leader's high watermark is its log end).
    let end = h.high_watermark();
    let mut offset = h.log.log_start_offset();
    // Bounded: every round advances past at least one batch.
    while offset < end {
        let data = match h.log.read(offset, 1 << 20, end) {
            Ok(r) => r.data,
            Err(e) => {
                tracing::error!(partition, offset, "reading {OFFSETS_TOPIC} failed: {e}");
                break;
            }
        };
        let batches = match sluice_storage::batch::split(&data) {
            Ok(b) if !b.is_empty() => b,
            _ => break,
        };
        let mut next = offset;
        for (hdr, range) in batches {
            next = next.max(hdr.next_offset());
            let Some(raw) = data.get(range) else { continue };
            if hdr.is_control() {
                continue;
            }
            let mut buf = Bytes::copy_from_slice(raw);
            let set = match RecordBatchDecoder::decode(&mut buf) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(partition, "skipping undecodable batch: {e}");
                    continue;
                }
            };
            for r in set.records {
                if r.offset < offset {
                    continue;
                }
                let Some(key) = r.key.as_deref() else {
                    continue;
                };
                match OffsetsRecord::decode(key, r.value.as_deref()) {
                    Ok(Some(rec)) => out.push(rec),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(partition, offset = r.offset, "skipping record: {e}"),
                }
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    out
}

fn encode_batch(records: &[OffsetsRecord]) -> Result<BytesMut, String> {
    let now = now_ms();
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: now,
            key: Some(r.encode_key()),
            value: r.encode_value(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf)
}

async fn writer_task(broker: Weak<Broker>, mut rx: mpsc::UnboundedReceiver<PersistJob>) {
    while let Some(job) = rx.recv().await {
        let Some(b) = broker.upgrade() else {
            let _ = job.done.send(Err("broker stopped".into()));
            continue;
        };
        let timeout = Duration::from_millis(
            u64::try_from(b.config.settings.offsets_commit_timeout_ms().max(1)).unwrap_or(5000),
        );
        let result = match b.leader_partition(TopicRef::Name(OFFSETS_TOPIC), job.partition) {
            Ok(h) => match encode_batch(&job.records) {
                Ok(buf) => {
                    let epoch = h.leader_epoch();
                    let h2 = h.clone();
                    let append = move || {
                        let checked =
                            sluice_storage::batch::Checked::new(buf.freeze()).map_err(|e| {
                                crate::partition::PartitionError::from(
                                    sluice_storage::StorageError::from(e),
                                )
                            })?;
                        h2.append_as_leader(&checked)
                    };
                    match tokio::task::spawn_blocking(append).await {
                        Ok(Ok(info)) => {
                            // Like acks=all: the write counts once the ISR has it. Waited
                            // for off the writer, so later writes keep flowing.
                            let done = job.done;
                            tokio::spawn(async move {
                                let deadline = tokio::time::Instant::now() + timeout;
                                let code = h
                                    .wait_replicated(info.last_offset + 1, epoch, deadline)
                                    .await;
                                let r = if code == crate::codes::NONE {
                                    Ok(())
                                } else {
                                    Err(format!(
                                        "{OFFSETS_TOPIC}-{}: {}",
                                        h.index,
                                        crate::codes::name(code)
                                    ))
                                };
                                let _ = done.send(r);
                            });
                            continue;
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e),
            },
            Err(code) => Err(format!(
                "{OFFSETS_TOPIC}-{}: {}",
                job.partition,
                crate::codes::name(code)
            )),
        };
        drop(b);
        let _ = job.done.send(result);
    }
}

async fn timer_task(broker: Weak<Broker>, wake: Arc<Notify>) {
    loop {
        let wait_ms = {
            let Some(b) = broker.upgrade() else { return };
            let next = b.groups.lock().coord.next_deadline();
            let now = now_ms();
            next.map_or(MAX_SLEEP_MS, |d| (d - now).clamp(0, MAX_SLEEP_MS))
        };
        if wait_ms > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                _ = wake.notified() => {}
            }
        }
        let Some(b) = broker.upgrade() else { return };
        let ((), steps) = b.groups.apply(None, |c, now| ((), c.tick(now)));
        drop(b);
        if !steps.is_empty() {
            tokio::spawn(Groups::execute(steps));
        }
    }
}
