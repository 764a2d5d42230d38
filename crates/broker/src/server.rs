//! Listener, per-connection loop and graceful shutdown.
//!
//! Each connection is served by one task that reads a frame, handles it, and hands the encoded
//! response to a writer task. Requests of one connection are handled strictly in order (Kafka's
//! ordering guarantee for a producer with several in-flight requests depends on it); the writer
//! overlaps socket writes with handling the next request.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use sluice_protocol::frame::{read_frame_body, read_frame_len, FrameError};
use sluice_protocol::{decode_request, encode_response, ProtocolError};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::dirs::{lock_data_dir, read_meta, write_meta};
use crate::handlers;
use crate::memory::{self, Lease};
use crate::state::Broker;
use crate::{BrokerConfig, BrokerError};

/// Responses queued per connection before the handler waits for the writer.
const WRITE_QUEUE: usize = 64;
/// How long shutdown waits for connections to finish in-flight work.
const DRAIN: Duration = Duration::from_secs(4);

fn split_host_port(addr: &str) -> Result<(String, i32), BrokerError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| BrokerError::BadAddress(addr.to_string()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| BrokerError::BadAddress(addr.to_string()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(BrokerError::BadAddress(addr.to_string()));
    }
    Ok((host.to_string(), i32::from(port)))
}

pub async fn run(
    config: BrokerConfig,
    backend: Option<Arc<dyn sluice_storage::Backend>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BrokerError> {
    let started = Instant::now();
    let (listen_host, listen_port) = split_host_port(&config.listen)?;
    let advertised = config
        .advertised
        .clone()
        .unwrap_or_else(|| config.listen.clone());
    let (mut adv_host, adv_port) = split_host_port(&advertised)?;
    if adv_host == "0.0.0.0" || adv_host == "::" {
        adv_host = "127.0.0.1".to_string();
    }
    let lock = lock_data_dir(&config.data_dir)?;
    let meta = read_meta(&config.data_dir, config.node_id)?;
    let data_dir = config.data_dir.clone();
    let quorum = start_quorum(&config, &adv_host, meta.as_ref()).await?;
    let controller = config.cluster.role.is_controller().then(|| {
        let session = config
            .settings
            .get_i64("broker.session.timeout.ms")
            .unwrap_or(9000)
            .max(1) as u64;
        let rebalance =
            crate::cluster::controller::RebalanceSettings::from_settings(&config.settings);
        crate::cluster::controller::ControllerService::start(quorum.clone(), session, rebalance)
    });
    let cluster_id = wait_for_cluster_id(&quorum).await;
    match &meta {
        Some(m) if m.cluster_id != cluster_id => {
            return Err(BrokerError::MetaProperties(format!(
                "data directory {} belongs to cluster {} but the metadata quorum is cluster {cluster_id}; \
                 start this node with an empty --data-dir to join this cluster, or point \
                 --controller-quorum at its own cluster",
                data_dir.display(),
                m.cluster_id
            )));
        }
        Some(_) => {}
        None => write_meta(&data_dir, config.node_id, &cluster_id)?,
    }
    if !config.cluster.role.is_broker() {
        // A controller-only node: it votes and runs the controller, never serves clients.
        tracing::info!(
            cluster_id = %cluster_id,
            node_id = config.node_id,
            startup_ms = started.elapsed().as_millis() as u64,
            "controller ready"
        );
        shutdown.await;
        drop(controller);
        quorum.shutdown().await;
        drop(lock);
        tracing::info!("stopped cleanly");
        return Ok(());
    }
    // Recovery runs before the listener binds.
    let broker = tokio::task::block_in_place(|| {
        Broker::open(
            config,
            cluster_id,
            lock,
            adv_host,
            adv_port,
            backend,
            quorum.clone(),
        )
    })?;
    let broker = Arc::new(broker);
    broker.spawn_metadata_follower();
    if let Some(c) = &controller {
        c.set_forward_handler(crate::handlers::forward::handler(&broker));
    }
    crate::cluster::register_and_unfence(&broker).await;

    let listen_addr = format!("{listen_host}:{listen_port}");
    let listener = TcpListener::bind((listen_host.as_str(), listen_port as u16))
        .await
        .map_err(|source| BrokerError::Bind {
            addr: listen_addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| BrokerError::Bind {
        addr: listen_addr.clone(),
        source,
    })?;

    // The inter-broker listener (replica fetches), when configured apart from the client one.
    let inter_listener = match &broker.config.cluster.inter_broker_listen {
        None => None,
        Some(addr) => {
            let (h, p) = split_host_port(addr)?;
            let l = TcpListener::bind((h.as_str(), p as u16))
                .await
                .map_err(|source| BrokerError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            tracing::info!("inter-broker listener on {addr}");
            Some(l)
        }
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    crate::cluster::spawn_heartbeats(broker.clone(), stop_rx.clone());

    let mut http_task = None;
    if let Some(http) = broker.config.http.clone() {
        let l = tokio::net::TcpListener::bind(&http)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: http.clone(),
                source,
            })?;
        let app = crate::http::router(broker.clone());
        let mut rx = stop_rx.clone();
        tracing::info!(
            "http (health, metrics) on {}",
            l.local_addr().map(|a| a.to_string()).unwrap_or(http)
        );
        http_task = Some(tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        }));
    }

    tracing::info!(
        cluster_id = %broker.cluster_id,
        node_id = broker.config.node_id,
        data_dir = %data_dir.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "listening on {local}"
    );

    let limits = Arc::new(ConnLimits::new(&broker));
    let mut maintenance = crate::lifecycle::spawn(broker.clone(), stop_rx.clone());
    maintenance.push(crate::replica::isr::spawn(broker.clone(), stop_rx.clone()));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept_either(&listener, inter_listener.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    let Some(permit) = limits.admit(peer.ip()) else {
                        tracing::info!(peer = %peer, "connection refused: max.connections or max.connections.per.ip reached");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let b = broker.clone();
                    let rx = stop_rx.clone();
                    conns.spawn(async move {
                        b.metrics.connections.fetch_add(1, Ordering::Relaxed);
                        b.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
                        serve_connection(b.clone(), stream, peer, rx).await;
                        b.metrics.connections.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    tracing::info!("shutting down: no longer accepting connections");
    drop(listener);
    drop(inter_listener);
    if !broker.config.cluster.is_single() {
        crate::cluster::controlled_shutdown(&broker, Duration::from_secs(5)).await;
    }
    let _ = stop_tx.send(true);
    broker.replication.stop();
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("some connections did not finish within {DRAIN:?}; closing them");
        conns.abort_all();
    }
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(Duration::from_millis(500), t).await;
    }
    for t in maintenance {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tokio::task::block_in_place(|| broker.close_all());
    drop(controller);
    broker.quorum.clone().shutdown().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The next connection on the client listener or, when there is one, the inter-broker one.
async fn accept_either(
    client: &TcpListener,
    inter: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match inter {
        None => client.accept().await,
        Some(i) => tokio::select! {
            a = client.accept() => a,
            b = i.accept() => b,
        },
    }
}

/// Starts this node's member of the metadata quorum. An old single-node data dir (a
/// `__cluster_metadata/metadata.log` and no quorum files yet) seeds it with its metadata.
async fn start_quorum(
    config: &BrokerConfig,
    adv_host: &str,
    meta: Option<&crate::dirs::MetaProperties>,
) -> Result<sluice_controller::Quorum, BrokerError> {
    let mut listen = config
        .cluster
        .quorum_listen(config.node_id, adv_host)
        .map_err(BrokerError::MetaProperties)?;
    if listen.port() == 0 && !config.cluster.is_single() {
        // A broker-only node without --controller-listen: the quorum leader must be able to
        // reach it (it tells the leader this address when it joins as an observer), so pick a
        // concrete free port on the advertised host now.
        let probe = std::net::TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            addr: listen.to_string(),
            source,
        })?;
        listen = probe.local_addr().map_err(|source| BrokerError::Bind {
            addr: listen.to_string(),
            source,
        })?;
    }
    let voters = if config.cluster.is_single() {
        std::collections::BTreeMap::from([(config.node_id, listen.to_string())])
    } else {
        config.cluster.voters.clone()
    };
    let initial = match meta {
        Some(m) => {
            crate::dirs::migrate_single_node_store(&config.data_dir, &m.cluster_id, config.node_id)?
        }
        None => None,
    };
    let cfg = sluice_controller::QuorumConfig {
        node_id: config.node_id,
        listen,
        voters,
        voter: config.cluster.role.is_controller(),
        data_dir: config.data_dir.clone(),
        cluster_id: config
            .cluster
            .cluster_id
            .clone()
            .or_else(|| meta.map(|m| m.cluster_id.clone()))
            .or_else(|| config.cluster.is_single().then(crate::dirs::new_cluster_id)),
        initial,
        // A quorum of one has nobody to wait for: elect itself quickly after a restart.
        election_timeout_ms: if config.cluster.is_single() {
            (150, 300)
        } else {
            (1000, 2000)
        },
        heartbeat_ms: if config.cluster.is_single() { 50 } else { 250 },
        request_timeout_ms: 5000,
        snapshot_every: 1000,
    };
    let quorum = sluice_controller::Quorum::start(cfg)
        .await
        .map_err(BrokerError::Controller)?;
    tracing::info!(%listen, "metadata quorum member started");
    Ok(quorum)
}

/// Waits until the quorum has recorded its cluster id (the first leader chooses it).
async fn wait_for_cluster_id(quorum: &sluice_controller::Quorum) -> String {
    let mut rx = quorum.committed();
    let started = Instant::now();
    let mut next_log = Duration::from_secs(5);
    loop {
        let id = rx.borrow_and_update().metadata.cluster_id.clone();
        if !id.is_empty() {
            return id;
        }
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await {
            std::future::pending::<()>().await;
        }
        if started.elapsed() > next_log {
            tracing::warn!(
                leader = ?quorum.leader_id(),
                "waiting for the metadata quorum (a majority of --controller-quorum must be up)"
            );
            next_log += Duration::from_secs(5);
        }
    }
}

/// Bytes a client may pipeline behind a waiting request that are read ahead (to see whether
/// it closed the connection) before the watch gives up until the request ends.
const READ_AHEAD_MAX: usize = 1024 * 1024;

/// The connection's read half with the bytes read ahead while a request waited: frame reads
/// take those first.
struct ConnReader {
    rd: tokio::net::tcp::OwnedReadHalf,
    ahead: bytes::BytesMut,
}

impl tokio::io::AsyncRead for ConnReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.ahead.is_empty() {
            let n = self.ahead.len().min(buf.remaining());
            let chunk = self.ahead.split_to(n);
            buf.put_slice(&chunk);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.rd).poll_read(cx, buf)
    }
}

/// Completes when the client closes its side of the connection (EOF or an error). Bytes it
/// sends meanwhile (pipelined requests) are kept in `ahead` for the frame reader, up to
/// [`READ_AHEAD_MAX`]; past that the watch waits for the request to end.
async fn peer_closed(conn: &mut ConnReader) {
    use tokio::io::AsyncReadExt;
    loop {
        if conn.ahead.len() >= READ_AHEAD_MAX {
            return std::future::pending().await;
        }
        let room = READ_AHEAD_MAX - conn.ahead.len();
        conn.ahead.reserve(room.min(64 * 1024));
        match (&mut conn.rd)
            .take(room as u64)
            .read_buf(&mut conn.ahead)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Connection admission: `max.connections` overall and `max.connections.per.ip`.
struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    state: std::sync::Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Releases a connection's slot when dropped.
struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    fn new(broker: &Broker) -> ConnLimits {
        let get = |k: &str| {
            broker
                .config
                .settings
                .get_i64(k)
                .filter(|v| *v >= 0)
                .map(|v| v as usize)
                .unwrap_or(usize::MAX)
        };
        ConnLimits {
            max_total: get("max.connections"),
            max_per_ip: get("max.connections.per.ip"),
            state: std::sync::Mutex::new((0, HashMap::new())),
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let per_ip = g.1.get(&ip).copied().unwrap_or(0);
        if g.0 >= self.max_total || per_ip >= self.max_per_ip {
            return None;
        }
        g.0 += 1;
        g.1.insert(ip, per_ip + 1);
        Some(ConnPermit {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut g = self.limits.state.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer_addr: std::net::SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let peer = peer_addr.to_string();
    let client_host = format!("/{}", peer_addr.ip());
    let (rd, wr) = stream.into_split();
    let mut rd = ConnReader {
        rd,
        ahead: bytes::BytesMut::new(),
    };
    // A response travels with the memory leases of its bytes; they are given back once it
    // has been handed to the socket.
    // A response is one or more chunks written back to back (a Fetch response's records are
    // chunks of their own, written from the bytes read from the log, uncopied).
    let (tx, mut rx) = mpsc::channel::<(Vec<Bytes>, Vec<Lease>)>(WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        let mut wr = BufWriter::with_capacity(64 * 1024, wr);
        while let Some((chunks, leases)) = rx.recv().await {
            for bytes in &chunks {
                if wr.write_all(bytes).await.is_err() {
                    return;
                }
            }
            if rx.is_empty() && wr.flush().await.is_err() {
                return;
            }
            drop(leases);
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });
    let max = broker.config.settings.socket_request_max_bytes().max(1) as usize;
    let idle_ms = broker
        .config
        .settings
        .get_i64("connections.max.idle.ms")
        .unwrap_or(600_000);
    let idle = if idle_ms > 0 {
        Duration::from_millis(idle_ms as u64)
    } else {
        Duration::from_secs(365 * 24 * 3600)
    };
    let pool = broker.memory.clone();
    loop {
        // The body is read only once the pool has room for it: a connection declaring a
        // large frame waits (unread) instead of making the broker allocate; one that makes no
        // progress for connections.max.idle.ms is closed.
        let read = async {
            let len = read_frame_len(&mut rd, max).await?;
            let lease = if len > memory::SMALL_FRAME {
                Some(pool.acquire(len).await)
            } else {
                None
            };
            let body = read_frame_body(&mut rd, len).await?;
            Ok::<_, FrameError>((body, lease))
        };
        let frame = tokio::select! {
            f = tokio::time::timeout(idle, read) => match f {
                Ok(f) => f,
                Err(_) => {
                    tracing::debug!(peer = %peer, "closing idle connection (connections.max.idle.ms)");
                    break;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let (frame, _request_lease) = match frame {
            Ok(f) => f,
            Err(FrameError::Closed) => break,
            Err(e) => {
                tracing::info!(peer = %peer, "closing connection: {e}");
                break;
            }
        };
        let request = match decode_request(frame) {
            Ok(r) => r,
            Err(ProtocolError::UnsupportedApiVersions {
                correlation_id,
                version,
            }) => {
                tracing::debug!(peer = %peer, version, "ApiVersions version unsupported; answering per KIP-511");
                let resp = sluice_protocol::unsupported_api_versions_response(correlation_id);
                if tx.send((vec![resp], Vec::new())).await.is_err() {
                    break;
                }
                continue;
            }
            Err(e) => {
                tracing::info!(peer = %peer, "closing connection: {e}");
                break;
            }
        };
        let api = request.api_key;
        let version = request.header.request_api_version;
        let correlation_id = request.header.correlation_id;
        let client_id = request
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let t0 = Instant::now();
        // Requests that can park for a long time (long-poll fetches, joins and syncs waiting
        // for a rebalance) are abandoned when the client goes away, so a dead connection does
        // not keep its task and buffers until the wait ends.
        let parks = matches!(api, ApiKey::Fetch | ApiKey::JoinGroup | ApiKey::SyncGroup);
        let handled = memory::collect_leases(handlers::handle(&broker, request, &client_host));
        let outcome = if parks {
            tokio::select! {
                r = handled => Some(r),
                _ = peer_closed(&mut rd) => None,
            }
        } else {
            Some(handled.await)
        };
        let Some(outcome) = outcome else {
            tracing::debug!(peer = %peer, api = ?api, "client closed the connection during a waiting request");
            break;
        };
        let (outcome, leases) = outcome;
        let response = match outcome {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(peer = %peer, client_id = %client_id, api = ?api, version, "closing connection: {e}");
                break;
            }
        };
        broker
            .metrics
            .observe_request(handlers::api_name(api), t0.elapsed().as_secs_f64());
        let Some(body) = response else { continue };
        let encoded = match &body {
            ResponseKind::Fetch(fetch) => {
                sluice_protocol::chunked::encode_fetch_response(version, correlation_id, fetch)
            }
            _ => encode_response(api, version, correlation_id, &body).map(|b| vec![b]),
        };
        match encoded {
            Ok(chunks) => {
                if tx.send((chunks, leases)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(peer = %peer, client_id = %client_id, "closing connection: {e}");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("127.0.0.1:9092").unwrap(),
            ("127.0.0.1".into(), 9092)
        );
        assert_eq!(split_host_port("[::1]:9092").unwrap(), ("::1".into(), 9092));
        assert!(split_host_port("nope").is_err());
        assert!(split_host_port(":9092").is_err());
        assert!(split_host_port("h:99999").is_err());
    }
}
