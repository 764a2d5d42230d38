//! The active controller's duties on a voter node: broker registration and heartbeats
//! (fencing brokers whose session expires), producer id blocks, DescribeQuorum, client
//! admin requests forwarded by other brokers, and the automatic preferred-leader rebalance
//! (`auto.leader.rebalance.enable`). The decisions are the pure
//! `sluice_controller::BrokerHeartbeats` and `plan_leader_rebalance`; this file only moves
//! messages and commits commands.
//! Everything here runs only while this node leads the quorum: requests reach it through
//! `Quorum::call_leader`, and the session timer acts only on the leader.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sluice_controller::{
    plan_leader_rebalance, BrokerHeartbeats, BrokerSettings, ControllerError, MetadataCommand,
    Quorum,
};
use tokio::sync::Mutex;

use super::rpc::{decode, encode, ControllerRequest, ControllerResponse, Envelope};

/// Runs a forwarded client request on this (leader) node and returns its encoded response.
pub type ForwardHandler = Arc<
    dyn Fn(Envelope) -> sluice_controller::quorum::BoxFuture<Result<Vec<u8>, ControllerError>>
        + Send
        + Sync,
>;

struct State {
    heartbeats: BrokerHeartbeats,
    /// The term in which `heartbeats` was last reset (None: never active).
    term: Option<u64>,
    /// When the next leader-imbalance check is due (ms on `origin`'s clock); set one
    /// interval ahead whenever this node becomes the active controller.
    next_rebalance_ms: u64,
}

/// `auto.leader.rebalance.enable`, `leader.imbalance.check.interval.seconds` and
/// `leader.imbalance.per.broker.percentage`, read once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebalanceSettings {
    /// Whether the active controller rebalances leaders.
    pub enabled: bool,
    /// Time between checks.
    pub interval_ms: u64,
    /// A broker is rebalanced when more than this percentage of the partitions it is the
    /// preferred replica of are led by others.
    pub percentage: i32,
}

impl RebalanceSettings {
    /// From the broker settings (Kafka's names and defaults: true, 300 s, 10 %).
    pub fn from_settings(s: &BrokerSettings) -> RebalanceSettings {
        let secs = u64::try_from(s.leader_imbalance_check_interval_seconds()).unwrap_or(1);
        RebalanceSettings {
            enabled: s.auto_leader_rebalance_enable(),
            interval_ms: secs.max(1).saturating_mul(1000),
            percentage: s.leader_imbalance_per_broker_percentage(),
        }
    }
}

/// Whether the leader-imbalance check is due at `now_ms`; if so, the time of the next one.
fn rebalance_due(r: &RebalanceSettings, now_ms: u64, next_ms: u64) -> Option<u64> {
    (r.enabled && now_ms >= next_ms).then(|| now_ms.saturating_add(r.interval_ms))
}

/// The controller service of one voter node.
pub struct ControllerService {
    quorum: Quorum,
    state: Mutex<State>,
    origin: Instant,
    forward: std::sync::RwLock<Option<ForwardHandler>>,
    rebalance: RebalanceSettings,
}

impl ControllerService {
    /// Installs the service as the quorum's leader handler and starts the session timer
    /// (which also runs the leader-imbalance check).
    pub fn start(
        quorum: Quorum,
        session_timeout_ms: u64,
        rebalance: RebalanceSettings,
    ) -> Arc<ControllerService> {
        let svc = Arc::new(ControllerService {
            quorum: quorum.clone(),
            state: Mutex::new(State {
                heartbeats: BrokerHeartbeats::new(session_timeout_ms),
                term: None,
                next_rebalance_ms: 0,
            }),
            origin: Instant::now(),
            forward: std::sync::RwLock::new(None),
            rebalance,
        });
        let weak: Weak<ControllerService> = Arc::downgrade(&svc);
        quorum.set_leader_handler(Arc::new(move |bytes: Vec<u8>| {
            let weak = weak.clone();
            Box::pin(async move {
                let Some(svc) = weak.upgrade() else {
                    return encode(&ControllerResponse::Error {
                        code: crate::codes::NOT_CONTROLLER,
                        message: "controller is shutting down".into(),
                    });
                };
                let resp = match decode::<ControllerRequest>(&bytes) {
                    Ok(req) => svc.handle(req).await,
                    Err(e) => ControllerResponse::error(&e),
                };
                encode(&resp)
            })
        }));
        let weak = Arc::downgrade(&svc);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(svc) = weak.upgrade() else { return };
                svc.tick().await;
            }
        });
        svc
    }

    /// Sets the function that runs forwarded client requests (the broker's handlers).
    pub fn set_forward_handler(&self, h: ForwardHandler) {
        *self.forward.write().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Locks the state, resetting broker sessions when this node has newly become leader.
    async fn active_state(&self) -> Result<tokio::sync::MutexGuard<'_, State>, ControllerError> {
        if !self.quorum.is_leader() {
            return Err(ControllerError::NotController(
                "this node is not the active controller".into(),
            ));
        }
        let mut st = self.state.lock().await;
        let term = self.quorum.term();
        if st.term != Some(term) {
            let committed = self.quorum.committed().borrow().offset;
            st.heartbeats.reset(self.now_ms(), committed as i64);
            st.term = Some(term);
            st.next_rebalance_ms = self.now_ms().saturating_add(self.rebalance.interval_ms);
            tracing::info!(
                term,
                "became the active controller; broker sessions restarted"
            );
        }
        Ok(st)
    }

    async fn commit_all(&self, cmds: Vec<MetadataCommand>) -> Result<u64, ControllerError> {
        let mut last = self.quorum.committed().borrow().offset;
        for cmd in cmds {
            tracing::info!(command = ?short(&cmd), "controller commits");
            last = self.quorum.propose(cmd).await?;
        }
        Ok(last)
    }

    async fn tick(&self) {
        if !self.quorum.is_leader() {
            return;
        }
        let Ok(mut st) = self.active_state().await else {
            return;
        };
        let md = self.quorum.committed().borrow().metadata.clone();
        let cmds = st.heartbeats.tick(self.now_ms(), &md);
        if !cmds.is_empty() {
            if let Err(e) = self.commit_all(cmds).await {
                tracing::warn!("fencing expired brokers failed: {e}");
            }
        }
        if let Some(next) = rebalance_due(&self.rebalance, self.now_ms(), st.next_rebalance_ms) {
            st.next_rebalance_ms = next;
            let md = self.quorum.committed().borrow().metadata.clone();
            if let Some(cmd) = plan_leader_rebalance(&md, self.rebalance.percentage) {
                tracing::info!(command = ?short(&cmd), "leader imbalance: electing preferred leaders");
                // Refused when the state moved since planning; the next check plans again.
                if let Err(e) = self.commit_all(vec![cmd]).await {
                    tracing::warn!("automatic preferred leader election failed: {e}");
                }
            }
        }
    }

    async fn handle(&self, req: ControllerRequest) -> ControllerResponse {
        match self.handle_inner(req).await {
            Ok(r) => r,
            Err(e) => ControllerResponse::error(&e),
        }
    }

    async fn handle_inner(
        &self,
        req: ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        match req {
            ControllerRequest::DescribeQuorum => {
                Ok(ControllerResponse::Quorum(self.quorum.status()))
            }
            ControllerRequest::Forward(env) => {
                let h = self
                    .forward
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .ok_or_else(|| {
                        ControllerError::NotController(
                            "this controller does not serve client requests".into(),
                        )
                    })?;
                let body = h(env).await?;
                let metadata_offset = self.quorum.committed().borrow().offset;
                Ok(ControllerResponse::Forwarded {
                    body,
                    metadata_offset,
                })
            }
            ControllerRequest::Register {
                registration: reg,
                replaces,
            } => {
                let mut st = self.active_state().await?;
                let md = self.quorum.committed().borrow().metadata.clone();
                let now = self.now_ms();
                let replaced = md
                    .brokers
                    .get(&reg.node_id)
                    .is_some_and(|b| Some(b.incarnation_id) == replaces);
                let cmd = if replaced {
                    MetadataCommand::RegisterBroker(reg.clone())
                } else {
                    st.heartbeats.plan_register(now, &reg, &md)?
                };
                let offset = self.quorum.propose(cmd).await?;
                let md = self.quorum.committed().borrow().metadata.clone();
                let epoch = md
                    .brokers
                    .get(&reg.node_id)
                    .map(|b| b.broker_epoch)
                    .ok_or_else(|| {
                        ControllerError::BrokerIdNotRegistered(format!("{}", reg.node_id))
                    })?;
                st.heartbeats
                    .on_registered(now, reg.node_id, epoch, offset as i64);
                tracing::info!(node = reg.node_id, broker_epoch = epoch, host = %reg.host, port = reg.port, "broker registered");
                Ok(ControllerResponse::Registered {
                    broker_epoch: epoch,
                })
            }
            ControllerRequest::Heartbeat {
                node_id,
                broker_epoch,
                metadata_offset,
                want_fence,
                want_shutdown,
            } => {
                let mut st = self.active_state().await?;
                let md = self.quorum.committed().borrow().metadata.clone();
                let (reply, cmds) = st.heartbeats.on_heartbeat(
                    self.now_ms(),
                    node_id,
                    broker_epoch,
                    metadata_offset,
                    want_fence,
                    want_shutdown,
                    &md,
                )?;
                self.commit_all(cmds).await?;
                Ok(ControllerResponse::Heartbeat {
                    is_caught_up: reply.is_caught_up,
                    is_fenced: reply.is_fenced,
                    should_shut_down: reply.should_shut_down,
                })
            }
            ControllerRequest::AllocateProducerIds {
                node_id,
                broker_epoch,
            } => {
                // Under the state lock, so no other allocation lands between ours and the read.
                let _st = self.active_state().await?;
                self.quorum
                    .propose(MetadataCommand::AllocateProducerIds {
                        broker_id: node_id,
                        broker_epoch,
                    })
                    .await?;
                let md = self.quorum.committed().borrow().metadata.clone();
                let block = md
                    .last_producer_id_block()
                    .filter(|b| b.assigned_broker_id == node_id)
                    .ok_or_else(|| {
                        ControllerError::UnknownServer("producer id block not recorded".into())
                    })?;
                Ok(ControllerResponse::ProducerIds {
                    first: block.first_producer_id,
                    size: block.size,
                })
            }
        }
    }
}

/// A short description of a command for logs (no config maps or partition lists).
fn short(cmd: &MetadataCommand) -> String {
    let s = format!("{cmd:?}");
    s.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> RebalanceSettings {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (s, _) = BrokerSettings::from_map(&map).expect("valid settings");
        RebalanceSettings::from_settings(&s)
    }

    #[test]
    fn rebalance_settings_and_schedule() {
        let d = settings(&[]);
        assert_eq!(
            d,
            RebalanceSettings {
                enabled: true,
                interval_ms: 300_000,
                percentage: 10
            }
        );
        assert_eq!(rebalance_due(&d, 299_999, 300_000), None);
        assert_eq!(rebalance_due(&d, 300_000, 300_000), Some(600_000));
        let off = settings(&[
            ("auto.leader.rebalance.enable", "false"),
            ("leader.imbalance.check.interval.seconds", "1"),
        ]);
        assert_eq!(off.interval_ms, 1000);
        assert_eq!(rebalance_due(&off, 10_000, 0), None);
    }
}
