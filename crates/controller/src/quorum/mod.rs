//! The Raft metadata quorum: [`MetadataCommand`]s replicated with openraft.
//!
//! * `types`: openraft type config, [`QuorumConfig`], [`Committed`], [`QuorumStatus`].
//! * `log_store`: the raft log and vote on disk (checksummed records, fsync before ack).
//! * `state_machine`: [`Metadata`] as openraft's state machine, and snapshots.
//! * `network`: the versioned TCP RPC between nodes (raft RPCs + application calls).
//! * this file: [`Quorum`], the public handle; no openraft type appears in its API.
//!
//! # Formation
//!
//! No format step: every voter whose log is empty calls openraft `initialize` with the full
//! voter set (a second initialize is refused with `NotAllowed`, which is ignored). A broker-only
//! node (`voter: false`) asks the leader over the RPC to add it as a learner and then follows.
//! With a single voter the node is a quorum of one and leads at once.
//!
//! # Migration
//!
//! If [`QuorumConfig::initial`] is set and the raft log is empty, the node proposes (through the
//! leader) a `Seed` entry carrying that state. The state machine takes a seed only while it has
//! applied no metadata command or seed yet, so every node decides the same way.

mod log_store;
mod network;
mod state_machine;
mod types;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use network::{BoxFuture, LeaderHandler, PROTOCOL_MAJOR, PROTOCOL_MINOR};
pub use types::{Committed, QuorumConfig, QuorumStatus, ReplicaStatus};

use log_store::LogStore;
use network::{NetworkFactory, RpcRequest, RpcResponse, Shared};
use state_machine::StateMachine;
use types::{now_ms, to_kafka_id, to_raft_id, NodeId, Raft, RaftCommand};

use crate::{ControllerError, Metadata, MetadataCommand};

/// Directory of the quorum's files under the data dir.
pub fn quorum_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("__cluster_metadata").join("raft")
}

/// A random cluster id formatted as Kafka formats them: a UUID in URL-safe base64 without
/// padding (22 characters).
pub fn random_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let v = u128::from_be_bytes(*uuid::Uuid::new_v4().as_bytes());
    // 128 bits = 21 full 6-bit digits + 2 bits, read from the top as base64 does.
    (0..22)
        .map(|i| {
            let shift = 128i32 - 6 * (i + 1);
            let digit = if shift >= 0 {
                (v >> shift) & 63
            } else {
                (v << (-shift)) & 63
            };
            ALPHABET[digit as usize] as char
        })
        .collect()
}

/// The command the first leader proposes to record the cluster id.
fn init_cluster_command(cluster_id: &str) -> Option<MetadataCommand> {
    Some(MetadataCommand::InitCluster {
        cluster_id: cluster_id.to_string(),
    })
}

struct Inner {
    shared: Arc<Shared>,
    raft: Raft,
    sm: StateMachine,
    committed: watch::Receiver<Committed>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    voter: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        // openraft's core holds no strong reference to us; stop it if a runtime is around.
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            h.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

/// A running quorum member. Cheap to clone.
#[derive(Clone)]
pub struct Quorum {
    inner: Arc<Inner>,
}

impl Quorum {
    /// Opens the quorum files in `<data_dir>/__cluster_metadata/raft/`, binds the RPC port,
    /// starts openraft and (when the log is empty) forms or joins the cluster.
    pub async fn start(cfg: QuorumConfig) -> Result<Quorum, ControllerError> {
        let node_id = to_raft_id(cfg.node_id)?;
        let mut voters = BTreeMap::new();
        for (id, addr) in &cfg.voters {
            voters.insert(to_raft_id(*id)?, addr.clone());
        }
        if cfg.voter != voters.contains_key(&node_id) {
            return Err(ControllerError::InvalidConfig(format!(
                "node {} is {} but the voter list is {:?}",
                cfg.node_id,
                if cfg.voter { "a voter" } else { "not a voter" },
                cfg.voters
            )));
        }
        if voters.is_empty() {
            return Err(ControllerError::InvalidConfig(
                "the metadata quorum has no voters".into(),
            ));
        }
        let dir = quorum_dir(&cfg.data_dir);
        let log = LogStore::open(&dir)?;
        let sm = StateMachine::open(&dir)?;
        let log_was_empty = log.is_empty();
        let committed = sm.subscribe();

        let (emin, emax) = cfg.election_timeout_ms;
        let config = openraft::Config {
            cluster_name: "sluice-metadata".into(),
            election_timeout_min: emin,
            election_timeout_max: emax.max(emin + 1),
            heartbeat_interval: cfg.heartbeat_ms,
            install_snapshot_timeout: 5000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: cfg.snapshot_every / 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::InvalidConfig(format!("metadata quorum: {e}")))?;

        let listener = TcpListener::bind(cfg.listen).await?;
        let shared = Arc::new(Shared {
            node_id,
            raft: OnceLock::new(),
            handler: RwLock::new(None),
            peers: Mutex::new(BTreeMap::new()),
            voters: voters.clone(),
            request_timeout: Duration::from_millis(cfg.request_timeout_ms.max(1)),
        });
        let network = NetworkFactory {
            shared: Arc::downgrade(&shared),
        };
        let raft = Raft::new(node_id, Arc::new(config), network, log, sm.clone())
            .await
            .map_err(|e| ControllerError::Storage(format!("starting the metadata quorum: {e}")))?;
        let _ = shared.raft.set(raft.clone());

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(network::serve(
            listener,
            shared.clone(),
            shutdown_rx,
        ))];

        if cfg.voter {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| ControllerError::Storage(format!("metadata quorum: {e}")))?;
            if !initialized {
                let members: BTreeMap<NodeId, BasicNode> = voters
                    .iter()
                    .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                    .collect();
                match raft.initialize(members).await {
                    Ok(()) => {}
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => {
                        let _ = raft.shutdown().await;
                        return Err(ControllerError::Storage(format!(
                            "initializing the metadata quorum: {e}"
                        )));
                    }
                }
            }
        } else {
            tasks.push(tokio::spawn(join_as_learner(
                shared.clone(),
                cfg.listen.to_string(),
            )));
        }

        let seed = if log_was_empty {
            cfg.initial.clone()
        } else {
            None
        };
        let cluster_id = cfg.cluster_id.clone();
        tasks.push(tokio::spawn(leadership_duties(
            shared.clone(),
            sm.clone(),
            committed.clone(),
            seed,
            cluster_id,
        )));

        Ok(Quorum {
            inner: Arc::new(Inner {
                shared,
                raft,
                sm,
                committed,
                shutdown_tx,
                tasks: Mutex::new(tasks),
                voter: cfg.voter,
            }),
        })
    }

    /// Appends `cmd` if this node is the leader and waits until it is committed and applied
    /// here. Returns its log index. Not the leader: [`ControllerError::NotController`]; no
    /// commit within the request timeout: [`ControllerError::RequestTimedOut`]; a command the
    /// state machine refused: that error (the entry stays in the log as a no-op).
    pub async fn propose(&self, cmd: MetadataCommand) -> Result<u64, ControllerError> {
        self.inner
            .shared
            .propose_local(RaftCommand::Metadata(cmd))
            .await
    }

    /// Like [`Quorum::propose`], but forwards to the leader over the RPC when this node is
    /// not the leader (following redirects; bounded by the request timeout).
    pub async fn propose_via_leader(&self, cmd: MetadataCommand) -> Result<u64, ControllerError> {
        propose_via_leader(&self.inner.shared, RaftCommand::Metadata(cmd)).await
    }

    /// The applied state, updated after each apply.
    pub fn committed(&self) -> watch::Receiver<Committed> {
        self.inner.committed.clone()
    }

    /// Whether this node is the leader (active controller).
    pub fn is_leader(&self) -> bool {
        self.inner.shared.is_leader()
    }

    /// The current leader, if known.
    pub fn leader_id(&self) -> Option<i32> {
        self.inner.shared.leader().0.map(to_kafka_id)
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
    }

    /// Whether this node votes.
    pub fn is_voter(&self) -> bool {
        self.inner.voter
    }

    /// Leader, term, high watermark and the replicas (matched offsets and timestamps are
    /// known on the leader only).
    pub fn status(&self) -> QuorumStatus {
        let shared = &self.inner.shared;
        let m = self.inner.raft.metrics().borrow().clone();
        let peers = shared
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let membership = m.membership_config.membership();
        let is_leader = m.current_leader == Some(shared.node_id);
        let now = now_ms();
        let mut replicas = Vec::new();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        for (ids, voter) in [(voters, true), (learners, false)] {
            for id in ids {
                let endpoint = membership
                    .get_node(&id)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default();
                let (leo, fetch, caught) = if id == shared.node_id {
                    (m.last_log_index.map(|i| i + 1), Some(now), Some(now))
                } else if is_leader {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned())
                        .flatten()
                        .map(|l| l.index + 1);
                    let t = peers.get(&id).copied().unwrap_or_default();
                    (matched, t.last_fetch_ms, t.last_caught_up_ms)
                } else {
                    (None, None, None)
                };
                replicas.push(ReplicaStatus {
                    node_id: to_kafka_id(id),
                    endpoint,
                    log_end_offset: leo,
                    last_fetch_ms: fetch,
                    last_caught_up_ms: caught,
                    voter,
                });
            }
        }
        QuorumStatus {
            node_id: to_kafka_id(shared.node_id),
            leader_id: m.current_leader.map(to_kafka_id),
            term: m.current_term,
            high_watermark: m.last_applied.map(|l| l.index + 1).unwrap_or(0),
            replicas,
        }
    }

    /// Registers the handler that answers [`Quorum::call_leader`] while this node leads.
    pub fn set_leader_handler(&self, h: LeaderHandler) {
        *self
            .inner
            .shared
            .handler
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    /// Delivers `req` to the current leader's handler (this node's own, if it leads) and
    /// returns its answer; follows leader changes; [`ControllerError::RequestTimedOut`] after
    /// `timeout`.
    pub async fn call_leader(
        &self,
        req: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ControllerError> {
        match self
            .inner
            .shared
            .to_leader(RpcRequest::CallLeader(req), timeout)
            .await?
        {
            RpcResponse::CallLeader(bytes) => Ok(bytes),
            RpcResponse::Error(w) => Err(w.into()),
            other => Err(ControllerError::InvalidRequest(format!(
                "unexpected answer from the controller: {other:?}"
            ))),
        }
    }

    /// Stops openraft and the RPC server (in-flight RPCs are cut).
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown_tx.send(true);
        for t in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        let _ = self.inner.raft.shutdown().await;
    }

    /// Whether the state machine has taken a seed or applied a metadata command.
    pub fn has_state(&self) -> bool {
        self.inner.sm.seeded()
    }
}

async fn propose_via_leader(shared: &Shared, cmd: RaftCommand) -> Result<u64, ControllerError> {
    if shared.is_leader() {
        return shared.propose_local(cmd).await;
    }
    match shared
        .to_leader(RpcRequest::Propose(cmd), shared.request_timeout)
        .await?
    {
        RpcResponse::Proposed { index, error: None } => Ok(index),
        RpcResponse::Proposed { error: Some(w), .. } | RpcResponse::Error(w) => Err(w.into()),
        other => Err(ControllerError::InvalidRequest(format!(
            "unexpected answer from the controller: {other:?}"
        ))),
    }
}

/// A broker-only node asks the leader to add it as a learner, retrying until it is a member.
async fn join_as_learner(shared: Arc<Shared>, addr: String) {
    loop {
        let member = shared.raft.get().is_some_and(|r| {
            r.metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&shared.node_id)
                .is_some()
        });
        if member {
            return;
        }
        let req = RpcRequest::AddLearner {
            node_id: shared.node_id,
            addr: addr.clone(),
        };
        match shared.to_leader(req, Duration::from_secs(5)).await {
            Ok(RpcResponse::LearnerAdded) => return,
            Ok(other) => tracing::debug!(?other, "joining the metadata quorum as a learner"),
            Err(e) => tracing::debug!(error = %e, "joining the metadata quorum as a learner"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Hands a migrated state to the quorum (any node) and, on the leader, records the cluster id.
async fn leadership_duties(
    shared: Arc<Shared>,
    sm: StateMachine,
    mut committed: watch::Receiver<Committed>,
    mut seed: Option<Metadata>,
    cluster_id: Option<String>,
) {
    let Some(raft) = shared.raft.get().cloned() else {
        return;
    };
    let mut metrics = raft.metrics();
    let mut cluster_done = false;
    // A leader with no cluster id of its own (a node started on an empty data dir without
    // --cluster-id) waits a little before choosing a random one, so that a node upgrading an
    // old single-node data dir can seed the quorum (with its cluster id) first.
    const RANDOM_ID_GRACE: Duration = Duration::from_secs(3);
    let mut leader_since: Option<std::time::Instant> = None;
    loop {
        if shared.is_leader() {
            leader_since.get_or_insert_with(std::time::Instant::now);
        } else {
            leader_since = None;
        }
        if let Some(md) = seed.take() {
            if sm.seeded() {
                tracing::info!("metadata quorum already holds state; not seeding it");
            } else {
                match propose_via_leader(&shared, RaftCommand::Seed(Box::new(md.clone()))).await {
                    Ok(index) => tracing::info!(index, "seeded the metadata quorum"),
                    Err(ControllerError::InvalidRequest(m)) => tracing::info!(%m, "seed refused"),
                    Err(e) => {
                        tracing::debug!(error = %e, "seeding the metadata quorum; retrying");
                        seed = Some(md);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
        }
        let mut grace_left = None;
        if cluster_id.is_none() {
            if let Some(t) = leader_since {
                grace_left = RANDOM_ID_GRACE.checked_sub(t.elapsed());
            }
        }
        if !cluster_done
            && shared.is_leader()
            && grace_left.is_none()
            && committed.borrow().metadata.cluster_id.is_empty()
        {
            let id = cluster_id.clone().unwrap_or_else(random_cluster_id);
            match init_cluster_command(&id) {
                None => cluster_done = true,
                Some(cmd) => {
                    if shared
                        .propose_local(RaftCommand::Metadata(cmd))
                        .await
                        .is_ok()
                    {
                        cluster_done = true;
                    }
                }
            }
        }
        let wait = if cluster_done || !committed.borrow().metadata.cluster_id.is_empty() {
            Duration::from_secs(3600)
        } else {
            grace_left.unwrap_or(Duration::from_millis(500))
        };
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return },
            r = committed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests;
