//! The follower's fetchers: one task per source broker (a partition leader), carrying every
//! partition this broker follows from it in one Fetch request (v15+, with `ReplicaState`:
//! our node id and broker epoch, KIP-903; `LastFetchedEpoch` per partition, KIP-320).
//!
//! Each round: collect the partitions that follow that leader (from the partition table, so
//! a role change takes effect at the next round), send one Fetch, then on a blocking thread
//! apply each partition's answer: append the batches byte for byte, take the leader's high
//! watermark and log start, or, on a diverging epoch, truncate to the end of the common epoch
//! (KIP-101/279) and fetch again from there. A fetcher with no partitions left ends; one is
//! started for every new source when metadata is applied ([`sync`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use sluice_client::Connection;
use uuid::Uuid;

use crate::codes;
use crate::partition::{mono_ms, Partition, Role};
use crate::replica::throttle::Throttle;

/// How soon a fetcher whose every partition is held back by the throttle looks again.
const THROTTLE_RECHECK: Duration = Duration::from_millis(100);
use crate::state::Broker;

/// Starts a fetcher for every leader this broker follows a partition from and has none yet.
/// Called after each metadata change is applied.
pub fn sync(broker: &Arc<Broker>) {
    if broker.replication.is_stopping() {
        return;
    }
    let mut leaders: Vec<i32> = broker
        .all_partitions()
        .iter()
        .filter_map(|p| match p.role() {
            Role::Follower { leader } => Some(leader),
            _ => None,
        })
        .collect();
    leaders.sort_unstable();
    leaders.dedup();
    let mut running = broker.replication.lock_running();
    for leader in leaders {
        if running.insert(leader) {
            let b = broker.clone();
            tokio::spawn(async move { run(b, leader).await });
        }
    }
}

/// A partition in one fetch round: the leader epoch it follows at and the offset fetched.
type Entry = (Arc<Partition>, i32, i64);

/// Partitions whose last answer was an error, left out of the fetch until the instant given
/// (Kafka's `delayPartitions` by `replica.fetch.backoff.ms`), keyed by topic id, index and
/// the leader epoch followed, so a new epoch is fetched at once.
type Delayed = HashMap<(Uuid, i32, i32), Instant>;

/// The partitions this broker follows from `leader`, with the leader epoch each follows at
/// and its log end (the offset to fetch from).
fn following(broker: &Broker, leader: i32) -> Vec<Entry> {
    broker
        .all_partitions()
        .into_iter()
        .filter(|p| p.role() == Role::Follower { leader })
        .map(|p| {
            let e = p.leader_epoch();
            let end = p.log.log_end_offset();
            (p, e, end)
        })
        .collect()
}

/// The address followers fetch from: the leader's inter-broker endpoint as registered.
fn leader_addr(broker: &Broker, leader: i32) -> Option<String> {
    let md = broker.metadata();
    Some(md.brokers.get(&leader)?.replication_addr())
}

async fn run(broker: Arc<Broker>, leader: i32) {
    let settings = &broker.config.settings;
    let backoff = Duration::from_millis(
        u64::try_from(settings.replica_fetch_backoff_ms().max(0)).unwrap_or(1000),
    );
    let wait_ms = settings.replica_fetch_wait_max_ms().max(0);
    let mut conn: Option<Connection> = None;
    let mut delayed: Delayed = HashMap::new();
    tracing::info!(leader, "replica fetcher started");
    loop {
        if broker.replication.is_stopping() {
            break;
        }
        let all = following(&broker, leader);
        if all.is_empty() {
            let mut running = broker.replication.lock_running();
            if following(&broker, leader).is_empty() {
                running.remove(&leader);
                tracing::info!(leader, "replica fetcher stopped: no partition follows it");
                return;
            }
            continue;
        }
        // A partition the leader just refused (not leader yet, unknown topic id while it
        // applies metadata, fenced epoch...) waits out the backoff; without this, one
        // failing partition next to healthy ones was re-fetched in a tight loop (the
        // leader answers errors at once), 100k+ requests a second.
        let now = Instant::now();
        delayed.retain(|_, until| *until > now);
        // Throttled partitions (out of the ISR, listed in the topic's
        // follower.replication.throttled.replicas) sit out while the quota is used up.
        let throttle = Throttle::follower(broker.metadata(), settings, broker.config.node_id);
        let me = broker.config.node_id;
        let is_throttled = |p: &Partition| {
            throttle.applies(&p.topic, p.index) && !p.replica_set().isr.contains(&me)
        };
        let over_quota = throttle.is_active()
            && throttle.exceeded(&broker.replication.follower_quota, mono_ms());
        let mut held_back = false;
        let parts: Vec<Entry> = all
            .into_iter()
            .filter(|(p, e, _)| !delayed.contains_key(&(p.topic_id, p.index, *e)))
            .filter(|(p, _, _)| {
                let hold = over_quota && is_throttled(p);
                held_back |= hold;
                !hold
            })
            .collect();
        if parts.is_empty() {
            let next = if held_back {
                now + THROTTLE_RECHECK
            } else {
                delayed.values().min().copied().unwrap_or(now + backoff)
            };
            tokio::time::sleep_until(next.into()).await;
            continue;
        }
        let throttled: HashSet<(Uuid, i32)> = if throttle.is_active() {
            parts
                .iter()
                .filter(|(p, _, _)| is_throttled(p))
                .map(|(p, _, _)| (p.topic_id, p.index))
                .collect()
        } else {
            HashSet::new()
        };
        if conn.is_none() {
            let Some(addr) = leader_addr(&broker, leader) else {
                tokio::time::sleep(backoff).await;
                continue;
            };
            match Connection::connect(
                &addr,
                &format!("sluice-replica-{}", broker.config.node_id),
                Duration::from_secs(5),
                Duration::from_secs(30),
            )
            .await
            {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(leader, %addr, "replica fetcher cannot connect: {e}");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let version = match c.version_for::<FetchRequest>() {
            Ok(v) if v >= 15 => v,
            other => {
                tracing::warn!(leader, "the leader does not speak Fetch v15+: {other:?}");
                conn = None;
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let req = build_request(&broker, &parts, wait_ms);
        let extra = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(500));
        let resp = match c.send_versioned_with_extra_time(&req, version, extra).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(leader, "replica fetch failed: {e}");
                conn = None;
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if !throttled.is_empty() {
            let bytes: usize = resp
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |pd| (t.topic_id, pd)))
                .filter(|(id, pd)| throttled.contains(&(*id, pd.partition_index)))
                .map(|(_, pd)| pd.records.as_ref().map_or(0, |r| r.len()))
                .sum();
            broker
                .replication
                .follower_quota
                .record(bytes as u64, mono_ms());
        }
        let b = broker.clone();
        let applied = tokio::task::spawn_blocking(move || apply(&b, leader, &parts, resp)).await;
        match applied {
            Ok(Outcome::Progress(failed)) => {
                let until = Instant::now() + backoff;
                for key in failed {
                    delayed.insert(key, until);
                }
            }
            Ok(Outcome::AllFailed) => tokio::time::sleep(backoff).await,
            Err(e) => {
                tracing::error!(leader, "applying a replica fetch failed: {e}");
                tokio::time::sleep(backoff).await;
            }
        }
    }
    broker.replication.lock_running().remove(&leader);
}

fn build_request(broker: &Broker, parts: &[Entry], wait_ms: i32) -> FetchRequest {
    let settings = &broker.config.settings;
    let node = broker.config.node_id;
    let mut by_topic: HashMap<Uuid, FetchTopic> = HashMap::new();
    for (p, epoch, fetch_offset) in parts {
        let t = by_topic.entry(p.topic_id).or_insert_with(|| {
            // Fetch v15+: topics by id only.
            let mut t = FetchTopic::default();
            t.topic_id = p.topic_id;
            t
        });
        let mut fp = FetchPartition::default();
        fp.partition = p.index;
        fp.current_leader_epoch = *epoch;
        fp.fetch_offset = *fetch_offset;
        fp.last_fetched_epoch = p.log.latest_epoch().unwrap_or(-1);
        fp.log_start_offset = p.log.log_start_offset();
        fp.partition_max_bytes = settings.replica_fetch_max_bytes();
        t.partitions.push(fp);
    }
    let mut state = ReplicaState::default();
    state.replica_id = BrokerId(node);
    state.replica_epoch = broker.broker_epoch();
    let mut req = FetchRequest::default();
    req.replica_state = state;
    req.max_wait_ms = wait_ms;
    req.min_bytes = 1;
    req.max_bytes = settings.replica_fetch_response_max_bytes();
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = by_topic.into_values().collect();
    req
}

enum Outcome {
    /// At least one partition answered without an error; those listed failed (topic id,
    /// index, leader epoch followed) and back off.
    Progress(Vec<(Uuid, i32, i32)>),
    /// Every partition failed (not leader, fenced epoch, ...): back off.
    AllFailed,
}

/// Applies one fetch response to the partitions it was for. Blocking (appends, truncation).
fn apply(broker: &Broker, leader: i32, parts: &[Entry], resp: FetchResponse) -> Outcome {
    if resp.error_code != codes::NONE {
        tracing::debug!(leader, code = resp.error_code, "replica fetch refused");
        return Outcome::AllFailed;
    }
    let by_key: HashMap<(Uuid, i32), &Entry> = parts
        .iter()
        .map(|e| ((e.0.topic_id, e.0.index), e))
        .collect();
    let by_name: HashMap<(&str, i32), &Entry> = parts
        .iter()
        .map(|e| ((e.0.topic.as_str(), e.0.index), e))
        .collect();
    let mut progress = false;
    let mut failed = Vec::new();
    for t in resp.responses {
        for pd in t.partitions {
            let found = if t.topic_id.is_nil() {
                by_name.get(&(t.topic.as_str(), pd.partition_index))
            } else {
                by_key.get(&(t.topic_id, pd.partition_index))
            };
            let Some((p, epoch, fetch_offset)) = found else {
                continue;
            };
            // Only an answer to the log as it was when we asked may be applied.
            if !p.follows(leader, *epoch) || p.log.log_end_offset() != *fetch_offset {
                continue;
            }
            match apply_partition(broker, leader, p, *epoch, pd) {
                Ok(()) => progress = true,
                Err(reason) => {
                    failed.push((p.topic_id, p.index, *epoch));
                    tracing::debug!(
                        topic = %p.topic,
                        partition = p.index,
                        leader,
                        "replica fetch: {reason}"
                    )
                }
            }
        }
    }
    if progress {
        Outcome::Progress(failed)
    } else {
        Outcome::AllFailed
    }
}

fn apply_partition(
    _broker: &Broker,
    leader: i32,
    p: &Partition,
    epoch: i32,
    pd: PartitionData,
) -> Result<(), String> {
    match pd.error_code {
        codes::NONE => {}
        codes::OFFSET_OUT_OF_RANGE => {
            let end = p.log.log_end_offset();
            if pd.log_start_offset > end {
                // We fell below the leader's log start: start over there.
                tracing::info!(topic = %p.topic, partition = p.index, from = end,
                    to = pd.log_start_offset, "follower log restarts at the leader's log start");
                p.log
                    .reset_to(pd.log_start_offset)
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            if pd.high_watermark >= 0 && pd.high_watermark < end {
                p.log
                    .truncate_to(pd.high_watermark)
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            return Err("offset out of range".into());
        }
        code => return Err(format!("leader answered {}", codes::name(code))),
    }
    if pd.diverging_epoch.epoch >= 0 {
        let div = &pd.diverging_epoch;
        let local = p
            .log
            .end_offset_for_epoch(div.epoch)
            .map_err(|e| e.to_string())?;
        let end = p.log.log_end_offset();
        let to = sluice_replication::truncation_offset(div.epoch, div.end_offset, local, end);
        tracing::info!(topic = %p.topic, partition = p.index, leader, epoch = div.epoch,
            leader_end = div.end_offset, from = end, to, "log diverged from the leader's; truncating");
        p.truncate_to(to).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let records = pd.records.unwrap_or_default();
    p.append_as_follower(&records, leader, epoch, pd.high_watermark)
        .map_err(|e| e.to_string())?;
    if pd.log_start_offset > p.log.log_start_offset() {
        let upto = pd.log_start_offset.min(p.high_watermark());
        if upto > p.log.log_start_offset() {
            p.log
                .delete_records_before(upto)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
