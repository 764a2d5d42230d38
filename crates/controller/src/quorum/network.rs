//! The quorum's TCP RPC: openraft's AppendEntries/Vote/InstallSnapshot plus the application
//! calls (forward to the leader's handler, propose via the leader, join as a learner).
//!
//! # Wire format
//!
//! Every message, request or response, is one frame:
//! `[len: u32 BE][major: u16 BE][minor: u16 BE][JSON body]`, `len` counting everything after
//! itself. The version lets nodes be rolled one at a time: a peer accepts any minor version of
//! its own major (minor additions must be backward compatible: new optional fields, new request
//! kinds answered with an error by old nodes) and answers a frame of an unknown major version
//! with an [`RpcResponse::Error`] naming both versions, then closes the connection. A
//! connection carries one request at a time; the client keeps it open for the next one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, ServerState};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::types::{now_ms, NodeId, Raft, RaftCommand, TypeConfig, WireError};
use crate::ControllerError;

/// Major version of the quorum RPC protocol. A frame of another major is refused.
pub const PROTOCOL_MAJOR: u16 = 1;
/// Minor version of the quorum RPC protocol (backward-compatible additions).
pub const PROTOCOL_MINOR: u16 = 0;
/// Largest frame accepted (checked before allocating).
const MAX_FRAME: usize = 128 << 20;

/// A boxed future, as returned by a leader handler.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// The application handler run on the leader for [`super::Quorum::call_leader`].
pub type LeaderHandler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<Vec<u8>> + Send + Sync>;

/// A request on the quorum port.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    /// openraft AppendEntries.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// openraft RequestVote.
    Vote(VoteRequest<NodeId>),
    /// openraft InstallSnapshot (one chunk).
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Application bytes for the leader's handler.
    CallLeader(Vec<u8>),
    /// Append a command through the leader.
    Propose(RaftCommand),
    /// Add the sender as a learner (a broker-only node joining).
    AddLearner {
        /// Node id.
        node_id: NodeId,
        /// Its quorum RPC address.
        addr: String,
    },
}

/// A response on the quorum port.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    /// To [`RpcRequest::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To [`RpcRequest::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To [`RpcRequest::InstallSnapshot`].
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The leader handler's answer.
    CallLeader(Vec<u8>),
    /// The proposal committed at `index`; `error` if the state machine refused it.
    Proposed {
        /// Log index.
        index: u64,
        /// Refusal.
        error: Option<WireError>,
    },
    /// The learner was added.
    LearnerAdded,
    /// This node is not the leader; the leader it knows of, if any.
    NotLeader {
        /// Leader id.
        leader: Option<NodeId>,
        /// Leader address.
        addr: Option<String>,
    },
    /// The request failed.
    Error(WireError),
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(s: &mut TcpStream, msg: &T) -> std::io::Result<()> {
    let json = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(json.len() + 8);
    buf.extend_from_slice(&((json.len() + 4) as u32).to_be_bytes());
    buf.extend_from_slice(&PROTOCOL_MAJOR.to_be_bytes());
    buf.extend_from_slice(&PROTOCOL_MINOR.to_be_bytes());
    buf.extend_from_slice(&json);
    s.write_all(&buf).await
}

/// What reading a frame gave.
pub enum Frame<T> {
    /// A message of our major version.
    Msg(T),
    /// A frame of another major version.
    BadVersion(u16, u16),
}

/// Reads one frame (`Ok(None)` on a clean EOF before the frame).
pub async fn read_frame<T: for<'de> Deserialize<'de>>(
    s: &mut TcpStream,
) -> std::io::Result<Option<Frame<T>>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if !(4..=MAX_FRAME).contains(&len) {
        return Err(std::io::Error::other(format!(
            "bad quorum RPC frame length {len}"
        )));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    let major = u16::from_be_bytes([buf[0], buf[1]]);
    let minor = u16::from_be_bytes([buf[2], buf[3]]);
    if major != PROTOCOL_MAJOR {
        return Ok(Some(Frame::BadVersion(major, minor)));
    }
    let msg = serde_json::from_slice(&buf[4..]).map_err(std::io::Error::other)?;
    Ok(Some(Frame::Msg(msg)))
}

fn version_error(major: u16, minor: u16) -> WireError {
    WireError::from(&ControllerError::InvalidRequest(format!(
        "unsupported quorum RPC protocol version {major}.{minor}; this node speaks \
         {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"
    )))
}

/// One request/response exchange on a (cached) connection, with a deadline.
pub async fn exchange(
    conn: &mut Option<TcpStream>,
    addr: &str,
    req: &RpcRequest,
    timeout: Duration,
) -> std::io::Result<RpcResponse> {
    let fut = async {
        if conn.is_none() {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            *conn = Some(s);
        }
        let s = conn
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))?;
        write_frame(s, req).await?;
        match read_frame::<RpcResponse>(s).await? {
            Some(Frame::Msg(r)) => Ok(r),
            Some(Frame::BadVersion(ma, mi)) => {
                Err(std::io::Error::other(version_error(ma, mi).message))
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "quorum peer closed the connection",
            )),
        }
    };
    let res = match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "quorum RPC timed out",
        )),
    };
    if res.is_err() {
        *conn = None;
    }
    res
}

/// Per-peer timestamps the leader records in its network layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerTimes {
    /// Last successful AppendEntries, ms since epoch.
    pub last_fetch_ms: Option<u64>,
    /// Last time the peer had the leader's whole log, ms since epoch.
    pub last_caught_up_ms: Option<u64>,
}

/// State shared by the RPC server, the openraft network and the public handle.
pub struct Shared {
    /// This node.
    pub node_id: NodeId,
    /// The openraft handle, set once it is built.
    pub raft: OnceLock<Raft>,
    /// The application handler for `call_leader`.
    pub handler: RwLock<Option<LeaderHandler>>,
    /// Timestamps per follower (filled on the leader).
    pub peers: Mutex<BTreeMap<NodeId, PeerTimes>>,
    /// Configured voters (used to find a leader before membership is known).
    pub voters: BTreeMap<NodeId, String>,
    /// How long a proposal may wait for its commit.
    pub request_timeout: Duration,
}

impl Shared {
    fn raft(&self) -> Option<&Raft> {
        self.raft.get()
    }

    /// Whether this node is the leader now.
    pub fn is_leader(&self) -> bool {
        self.raft().is_some_and(|r| {
            let m = r.metrics();
            let m = m.borrow();
            m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
        })
    }

    /// The leader and its address as known here.
    pub fn leader(&self) -> (Option<NodeId>, Option<String>) {
        let Some(r) = self.raft() else {
            return (None, None);
        };
        let m = r.metrics();
        let m = m.borrow();
        let leader = m.current_leader;
        let addr = leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.addr.clone())
                .or_else(|| self.voters.get(&l).cloned())
        });
        (leader, addr)
    }

    fn not_leader(&self) -> RpcResponse {
        let (leader, addr) = self.leader();
        RpcResponse::NotLeader {
            leader: leader.filter(|l| *l != self.node_id),
            addr,
        }
    }

    /// Appends a command on this node, which must be the leader; waits for its commit.
    pub async fn propose_local(&self, cmd: RaftCommand) -> Result<u64, ControllerError> {
        let raft = self.raft().ok_or_else(|| {
            ControllerError::NotController("the metadata quorum is starting".into())
        })?;
        if !self.is_leader() {
            return Err(self.not_controller());
        }
        match tokio::time::timeout(self.request_timeout, raft.client_write(cmd)).await {
            Err(_) => Err(ControllerError::RequestTimedOut(format!(
                "the metadata quorum did not commit within {:?}",
                self.request_timeout
            ))),
            Ok(Ok(resp)) => match resp.data.error {
                None => Ok(resp.log_id.index),
                Some(w) => Err(w.into()),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(self.not_controller())
            }
            Ok(Err(e)) => Err(ControllerError::NotController(format!(
                "metadata quorum: {e}"
            ))),
        }
    }

    fn not_controller(&self) -> ControllerError {
        match self.leader().0 {
            Some(l) => ControllerError::NotController(format!(
                "node {} is not the active controller; node {l} is",
                self.node_id
            )),
            None => ControllerError::NotController(format!(
                "node {} is not the active controller; no leader is known",
                self.node_id
            )),
        }
    }

    /// Handles a request on this node.
    pub async fn dispatch(&self, req: RpcRequest) -> RpcResponse {
        let Some(raft) = self.raft() else {
            return RpcResponse::Error(WireError::from(&ControllerError::NotController(
                "the metadata quorum is starting".into(),
            )));
        };
        match req {
            RpcRequest::AppendEntries(r) => {
                RpcResponse::AppendEntries(raft.append_entries(r).await)
            }
            RpcRequest::Vote(r) => RpcResponse::Vote(raft.vote(r).await),
            RpcRequest::InstallSnapshot(r) => {
                RpcResponse::InstallSnapshot(raft.install_snapshot(r).await)
            }
            RpcRequest::CallLeader(bytes) => {
                if !self.is_leader() {
                    return self.not_leader();
                }
                let h = self
                    .handler
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                match h {
                    Some(h) => RpcResponse::CallLeader(h(bytes).await),
                    None => RpcResponse::Error(WireError::from(&ControllerError::NotController(
                        "the active controller has no handler registered yet".into(),
                    ))),
                }
            }
            RpcRequest::Propose(cmd) => {
                if !self.is_leader() {
                    return self.not_leader();
                }
                match self.propose_local(cmd).await {
                    Ok(index) => RpcResponse::Proposed { index, error: None },
                    Err(ControllerError::NotController(_)) => self.not_leader(),
                    Err(e) => RpcResponse::Error(WireError::from(&e)),
                }
            }
            RpcRequest::AddLearner { node_id, addr } => {
                if !self.is_leader() {
                    return self.not_leader();
                }
                let already = {
                    let m = raft.metrics();
                    let m = m.borrow();
                    m.membership_config
                        .membership()
                        .get_node(&node_id)
                        .is_some()
                };
                if already {
                    return RpcResponse::LearnerAdded;
                }
                let fut = raft.add_learner(node_id, BasicNode { addr }, false);
                match tokio::time::timeout(self.request_timeout, fut).await {
                    Ok(Ok(_)) => RpcResponse::LearnerAdded,
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                        self.not_leader()
                    }
                    Ok(Err(e)) => RpcResponse::Error(WireError::from(
                        &ControllerError::InvalidRequest(format!("add learner: {e}")),
                    )),
                    Err(_) => RpcResponse::Error(WireError::from(
                        &ControllerError::RequestTimedOut("add learner timed out".into()),
                    )),
                }
            }
        }
    }

    /// Sends `req` to the leader (this node included), following redirects until it is
    /// answered by the leader or `timeout` passes.
    pub async fn to_leader(
        &self,
        req: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, ControllerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || {
            ControllerError::RequestTimedOut(format!(
                "no answer from the active controller within {timeout:?}"
            ))
        };
        let voters: Vec<(NodeId, String)> =
            self.voters.iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut rr = 0usize;
        let mut hint: Option<(NodeId, String)> = None;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(timed_out());
            }
            let target = match hint.take() {
                Some(t) => Some(t),
                None => match self.leader() {
                    (Some(l), Some(a)) => Some((l, a)),
                    _ if voters.is_empty() => None,
                    _ => {
                        rr += 1;
                        Some(voters[rr % voters.len()].clone())
                    }
                },
            };
            let resp = match target {
                None => None,
                Some((id, _)) if id == self.node_id => {
                    if self.is_leader() {
                        Some(self.dispatch(req_clone(&req)?).await)
                    } else {
                        None
                    }
                }
                Some((_, addr)) => {
                    let mut conn = None;
                    exchange(&mut conn, &addr, &req, deadline - now).await.ok()
                }
            };
            match resp {
                Some(RpcResponse::NotLeader {
                    leader: Some(l),
                    addr: Some(a),
                }) => {
                    hint = Some((l, a));
                    // Avoid spinning if two nodes briefly point at each other.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Some(RpcResponse::NotLeader { .. }) | None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(RpcResponse::Error(w))
                    if w.code == 41 && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(other) => return Ok(other),
            }
        }
    }
}

/// Requests that can be sent to the local node are re-encoded (cheap: application requests
/// only).
fn req_clone(req: &RpcRequest) -> Result<RpcRequest, ControllerError> {
    let json =
        serde_json::to_vec(req).map_err(|e| ControllerError::InvalidRequest(e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| ControllerError::InvalidRequest(e.to_string()))
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "quorum RPC accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = serve_conn(stream, shared) => {}
                _ = sd.changed() => {}
            }
        });
    }
}

async fn serve_conn(mut s: TcpStream, shared: Arc<Shared>) {
    let _ = s.set_nodelay(true);
    loop {
        let req = match read_frame::<RpcRequest>(&mut s).await {
            Ok(Some(Frame::Msg(r))) => r,
            Ok(Some(Frame::BadVersion(ma, mi))) => {
                let w = version_error(ma, mi);
                tracing::warn!(error = %w.message, "refusing a quorum RPC peer");
                let _ = write_frame(&mut s, &RpcResponse::Error(w)).await;
                return;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "quorum RPC connection ended");
                return;
            }
        };
        let resp = shared.dispatch(req).await;
        if write_frame(&mut s, &resp).await.is_err() {
            return;
        }
    }
}

/// openraft's network factory: one [`PeerClient`] per target.
pub struct NetworkFactory {
    /// Weak, so openraft's core (which owns the factory) does not keep `Shared` alive.
    pub shared: Weak<Shared>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            conn: None,
            shared: self.shared.clone(),
        }
    }
}

/// openraft's client to one peer, keeping its connection open between calls.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    conn: Option<TcpStream>,
    shared: Weak<Shared>,
}

type RpcErr<E> = RPCError<NodeId, BasicNode, E>;

impl PeerClient {
    async fn call<E: std::error::Error>(
        &mut self,
        req: RpcRequest,
        option: &RPCOption,
    ) -> Result<RpcResponse, RpcErr<E>> {
        let connecting = self.conn.is_none();
        match exchange(&mut self.conn, &self.addr, &req, option.hard_ttl()).await {
            Ok(RpcResponse::Error(w)) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(w.message),
            ))),
            Ok(r) => Ok(r),
            Err(e) if connecting => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn unexpected<E: std::error::Error>(&self, r: RpcResponse) -> RpcErr<E> {
        RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
            "unexpected quorum RPC response from node {}: {r:?}",
            self.target
        ))))
    }

    fn record_success(&self, matched: Option<u64>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let leader_last = shared
            .raft()
            .and_then(|r| r.metrics().borrow().last_log_index);
        let now = now_ms();
        let mut peers = shared.peers.lock().unwrap_or_else(|p| p.into_inner());
        let p = peers.entry(self.target).or_default();
        p.last_fetch_ms = Some(now);
        if matched >= leader_last {
            p.last_caught_up_ms = Some(now);
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        let matched = rpc
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(rpc.prev_log_id.map(|l| l.index));
        match self.call(RpcRequest::AppendEntries(rpc), &option).await? {
            RpcResponse::AppendEntries(Ok(r)) => {
                if matches!(r, AppendEntriesResponse::Success) {
                    self.record_success(matched);
                }
                Ok(r)
            }
            RpcResponse::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.call(RpcRequest::InstallSnapshot(rpc), &option).await? {
            RpcResponse::InstallSnapshot(Ok(r)) => Ok(r),
            RpcResponse::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        match self.call(RpcRequest::Vote(rpc), &option).await? {
            RpcResponse::Vote(Ok(r)) => Ok(r),
            RpcResponse::Vote(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }
}
