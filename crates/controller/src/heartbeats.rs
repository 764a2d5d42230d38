//! The active controller's soft state about broker liveness (Kafka's
//! `BrokerHeartbeatManager`), as a pure component: time is a parameter, and the outcome of
//! a heartbeat or a tick is a list of [`MetadataCommand`]s for the caller to commit.
//!
//! * A registered broker starts fenced. It is unfenced on a heartbeat once it has caught up
//!   with the metadata log: its reported metadata offset is at least the offset of its
//!   registration (given to [`BrokerHeartbeats::on_registered`]) or, for a broker registered
//!   under an earlier controller, the committed offset when this controller took over
//!   ([`BrokerHeartbeats::reset`]).
//! * An unfenced broker whose last heartbeat is older than `broker.session.timeout.ms` is
//!   fenced by [`BrokerHeartbeats::tick`].
//! * A broker asking to shut down gets `BeginControlledShutdown` (its leaderships move
//!   away); once it leads nothing it is fenced and told `should_shut_down`.
//!
//! None of this is replicated: after a change of quorum leader the new controller calls
//! `reset`, which grants every broker a fresh session.

use std::collections::BTreeMap;

use crate::error::ControllerError;
use crate::metadata::{BrokerRegistration, Metadata, MetadataCommand};

/// Kafka's default `broker.session.timeout.ms`.
pub const DEFAULT_BROKER_SESSION_TIMEOUT_MS: u64 = 9000;

/// What the controller answers a BrokerHeartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartbeatReply {
    /// The broker has caught up with the metadata log.
    pub is_caught_up: bool,
    /// The broker is fenced (once the returned commands are committed).
    pub is_fenced: bool,
    /// The broker may finish shutting down.
    pub should_shut_down: bool,
}

#[derive(Debug, Clone)]
struct Session {
    broker_epoch: i64,
    last_contact_ms: u64,
    /// The metadata offset the broker must reach to count as caught up.
    catch_up_offset: i64,
}

/// Broker sessions as seen by the active controller.
#[derive(Debug, Clone)]
pub struct BrokerHeartbeats {
    session_timeout_ms: u64,
    sessions: BTreeMap<i32, Session>,
    /// When this controller granted sessions to all brokers (`None` until the first call).
    granted_at_ms: Option<u64>,
    /// Catch-up target for brokers registered before this controller took over.
    floor_offset: i64,
}

impl BrokerHeartbeats {
    /// A new component with `broker.session.timeout.ms`.
    pub fn new(session_timeout_ms: u64) -> BrokerHeartbeats {
        BrokerHeartbeats {
            session_timeout_ms,
            sessions: BTreeMap::new(),
            granted_at_ms: None,
            floor_offset: 0,
        }
    }

    /// The session timeout.
    pub fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms
    }

    /// This node became the active controller at `now_ms` with `committed_offset` as the
    /// last committed metadata offset: every broker gets a fresh session, and brokers
    /// registered earlier must reach `committed_offset` to be unfenced.
    pub fn reset(&mut self, now_ms: u64, committed_offset: i64) {
        self.sessions.clear();
        self.granted_at_ms = Some(now_ms);
        self.floor_offset = committed_offset;
    }

    fn granted_at(&mut self, now_ms: u64) -> u64 {
        *self.granted_at_ms.get_or_insert(now_ms)
    }

    fn session_alive(&self, node_id: i32, now_ms: u64) -> bool {
        let last = self
            .sessions
            .get(&node_id)
            .map(|s| s.last_contact_ms)
            .or(self.granted_at_ms)
            .unwrap_or(now_ms);
        now_ms.saturating_sub(last) <= self.session_timeout_ms
    }

    /// Plans a BrokerRegistration: DUPLICATE_BROKER_REGISTRATION while another incarnation of
    /// the broker still has a live session, else the `RegisterBroker` command to commit.
    /// After committing it call [`BrokerHeartbeats::on_registered`].
    pub fn plan_register(
        &self,
        now_ms: u64,
        reg: &BrokerRegistration,
        md: &Metadata,
    ) -> Result<MetadataCommand, ControllerError> {
        if let Some(b) = md.brokers.get(&reg.node_id) {
            if b.incarnation_id != reg.incarnation_id
                && !b.fenced
                && self.session_alive(reg.node_id, now_ms)
            {
                return Err(ControllerError::DuplicateBrokerRegistration(format!(
                    "Another broker is registered with that broker id {} (incarnation {}).",
                    reg.node_id, b.incarnation_id
                )));
            }
        }
        Ok(MetadataCommand::RegisterBroker(reg.clone()))
    }

    /// The registration of `node_id` with `broker_epoch` was committed at
    /// `registration_offset`: the broker's session starts now.
    pub fn on_registered(
        &mut self,
        now_ms: u64,
        node_id: i32,
        broker_epoch: i64,
        registration_offset: i64,
    ) {
        self.granted_at(now_ms);
        self.sessions.insert(
            node_id,
            Session {
                broker_epoch,
                last_contact_ms: now_ms,
                catch_up_offset: registration_offset,
            },
        );
    }

    /// Handles a BrokerHeartbeat. Refused with BROKER_ID_NOT_REGISTERED / STALE_BROKER_EPOCH.
    /// The reply describes the state once the returned commands are committed.
    #[allow(clippy::too_many_arguments)]
    pub fn on_heartbeat(
        &mut self,
        now_ms: u64,
        node_id: i32,
        broker_epoch: i64,
        current_metadata_offset: i64,
        want_fence: bool,
        want_shutdown: bool,
        md: &Metadata,
    ) -> Result<(HeartbeatReply, Vec<MetadataCommand>), ControllerError> {
        let b = md.check_broker_epoch(node_id, broker_epoch)?;
        self.granted_at(now_ms);
        let floor = self.floor_offset;
        let session = self
            .sessions
            .entry(node_id)
            .and_modify(|s| {
                if s.broker_epoch != broker_epoch {
                    *s = Session {
                        broker_epoch,
                        last_contact_ms: now_ms,
                        catch_up_offset: floor,
                    };
                }
            })
            .or_insert(Session {
                broker_epoch,
                last_contact_ms: now_ms,
                catch_up_offset: floor,
            });
        session.last_contact_ms = session.last_contact_ms.max(now_ms);
        let caught_up = current_metadata_offset >= session.catch_up_offset;
        let mut reply = HeartbeatReply {
            is_caught_up: caught_up,
            is_fenced: b.fenced,
            should_shut_down: false,
        };
        let mut cmds = Vec::new();
        if b.fenced {
            if want_shutdown {
                // A fenced broker leads nothing: it may go at once.
                reply.should_shut_down = true;
            } else if !want_fence && caught_up && !b.in_controlled_shutdown {
                cmds.push(MetadataCommand::UnfenceBroker {
                    node_id,
                    broker_epoch,
                });
                reply.is_fenced = false;
            }
        } else if b.in_controlled_shutdown || want_shutdown {
            if !b.in_controlled_shutdown {
                cmds.push(MetadataCommand::BeginControlledShutdown {
                    node_id,
                    broker_epoch,
                });
            }
            if !md.leads_any(node_id) {
                cmds.push(MetadataCommand::FenceBroker { node_id });
                reply.is_fenced = true;
                reply.should_shut_down = true;
            }
        } else if want_fence {
            cmds.push(MetadataCommand::FenceBroker { node_id });
            reply.is_fenced = true;
        }
        Ok((reply, cmds))
    }

    /// Fences the unfenced brokers whose session expired at `now_ms`.
    pub fn tick(&mut self, now_ms: u64, md: &Metadata) -> Vec<MetadataCommand> {
        let granted = self.granted_at(now_ms);
        md.brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let last = self
                    .sessions
                    .get(&b.node_id)
                    .filter(|s| s.broker_epoch == b.broker_epoch)
                    .map_or(granted, |s| s.last_contact_ms);
                now_ms.saturating_sub(last) > self.session_timeout_ms
            })
            .map(|b| MetadataCommand::FenceBroker { node_id: b.node_id })
            .collect()
    }

    /// When the next session may expire (for the caller's timer), if any broker is unfenced.
    pub fn next_deadline(&self, md: &Metadata) -> Option<u64> {
        let granted = self.granted_at_ms?;
        md.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| {
                let last = self
                    .sessions
                    .get(&b.node_id)
                    .filter(|s| s.broker_epoch == b.broker_epoch)
                    .map_or(granted, |s| s.last_contact_ms);
                last.saturating_add(self.session_timeout_ms)
                    .saturating_add(1)
            })
            .min()
    }
}

impl Default for BrokerHeartbeats {
    fn default() -> Self {
        BrokerHeartbeats::new(DEFAULT_BROKER_SESSION_TIMEOUT_MS)
    }
}
