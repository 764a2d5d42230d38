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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionInfo, NO_LEADER};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn reg(id: i32, inc: u128) -> BrokerRegistration {
        BrokerRegistration {
            node_id: id,
            incarnation_id: Uuid::from_u128(inc),
            host: "h".into(),
            port: 1,
            rack: None,
            inter_broker: None,
        }
    }

    fn commit(md: &mut Metadata, cmds: &[MetadataCommand]) {
        for c in cmds {
            md.apply(c).unwrap();
        }
    }

    /// Registers `id` at offset `off` and returns its epoch.
    fn register(hb: &mut BrokerHeartbeats, md: &mut Metadata, now: u64, id: i32, off: i64) -> i64 {
        let cmd = hb.plan_register(now, &reg(id, id as u128), md).unwrap();
        md.apply(&cmd).unwrap();
        let e = md.brokers[&id].broker_epoch;
        hb.on_registered(now, id, e, off);
        e
    }

    #[test]
    fn unfenced_once_caught_up_then_expires() {
        let mut md = Metadata::new("c", 1);
        let mut hb = BrokerHeartbeats::default();
        hb.reset(0, 0);
        let e = register(&mut hb, &mut md, 0, 1, 10);
        // Behind the registration offset: stays fenced.
        let (r, cmds) = hb.on_heartbeat(100, 1, e, 5, false, false, &md).unwrap();
        assert!(cmds.is_empty());
        assert_eq!(
            (r.is_caught_up, r.is_fenced, r.should_shut_down),
            (false, true, false)
        );
        // Caught up but asking to stay fenced.
        let (r, cmds) = hb.on_heartbeat(200, 1, e, 10, true, false, &md).unwrap();
        assert!(cmds.is_empty() && r.is_fenced && r.is_caught_up);
        let (r, cmds) = hb.on_heartbeat(300, 1, e, 10, false, false, &md).unwrap();
        assert_eq!(
            cmds,
            vec![MetadataCommand::UnfenceBroker {
                node_id: 1,
                broker_epoch: e
            }]
        );
        assert!(!r.is_fenced);
        commit(&mut md, &cmds);
        // Errors.
        let err = hb.on_heartbeat(300, 1, e + 1, 10, false, false, &md);
        assert_eq!(err.unwrap_err().error_code(), 77);
        let err = hb.on_heartbeat(300, 9, 1, 10, false, false, &md);
        assert_eq!(err.unwrap_err().error_code(), 102);
        // The session lasts broker.session.timeout.ms after the last heartbeat.
        assert!(hb.tick(300 + 9000, &md).is_empty());
        assert_eq!(hb.next_deadline(&md), Some(9301));
        assert_eq!(
            hb.tick(9301, &md),
            vec![MetadataCommand::FenceBroker { node_id: 1 }]
        );
        // A broker asking to be fenced is.
        let mut hb2 = hb.clone();
        let (r, cmds) = hb2.on_heartbeat(400, 1, e, 10, true, false, &md).unwrap();
        assert!(r.is_fenced);
        assert_eq!(cmds, vec![MetadataCommand::FenceBroker { node_id: 1 }]);
    }

    #[test]
    fn reset_grants_fresh_sessions_and_uses_committed_offset() {
        let mut md = Metadata::new("c", 1);
        let mut hb = BrokerHeartbeats::new(1000);
        hb.reset(0, 0);
        let e = register(&mut hb, &mut md, 0, 1, 1);
        let (_, cmds) = hb.on_heartbeat(10, 1, e, 1, false, false, &md).unwrap();
        commit(&mut md, &cmds);
        assert!(!md.brokers[&1].fenced);
        let e2 = register(&mut hb, &mut md, 0, 2, 2);
        // New controller at t=5000 with committed offset 50.
        let mut hb = BrokerHeartbeats::new(1000);
        hb.reset(5000, 50);
        assert!(hb.tick(6000, &md).is_empty());
        assert_eq!(
            hb.tick(6001, &md),
            vec![MetadataCommand::FenceBroker { node_id: 1 }]
        );
        // Broker 2 must now reach offset 50.
        let (r, cmds) = hb.on_heartbeat(5100, 2, e2, 49, false, false, &md).unwrap();
        assert!(!r.is_caught_up && cmds.is_empty());
        let (r, cmds) = hb.on_heartbeat(5200, 2, e2, 50, false, false, &md).unwrap();
        assert!(r.is_caught_up && !r.is_fenced && cmds.len() == 1);
    }

    #[test]
    fn duplicate_registration_while_session_alive() {
        let mut md = Metadata::new("c", 1);
        let mut hb = BrokerHeartbeats::new(1000);
        hb.reset(0, 0);
        let e = register(&mut hb, &mut md, 0, 1, 0);
        let (_, cmds) = hb.on_heartbeat(10, 1, e, 0, false, false, &md).unwrap();
        commit(&mut md, &cmds);
        let err = hb.plan_register(500, &reg(1, 99), &md).unwrap_err();
        assert_eq!(err.error_code(), 101);
        // The same incarnation (a retry) is fine, and so is a new one once expired.
        assert!(hb.plan_register(500, &reg(1, 1), &md).is_ok());
        assert!(hb.plan_register(1011, &reg(1, 99), &md).is_ok());
    }

    #[test]
    fn controlled_shutdown() {
        let mut md = Metadata::new("c", 1);
        let mut hb = BrokerHeartbeats::default();
        hb.reset(0, 0);
        let mut epochs = BTreeMap::new();
        for id in 1..=2 {
            let e = register(&mut hb, &mut md, 0, id, 0);
            let (_, cmds) = hb.on_heartbeat(1, id, e, 0, false, false, &md).unwrap();
            commit(&mut md, &cmds);
            epochs.insert(id, e);
        }
        md.apply(&MetadataCommand::CreateTopic {
            name: "t".into(),
            id: Uuid::from_u128(5),
            partitions: vec![PartitionInfo {
                index: 0,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            }],
            configs: BTreeMap::new(),
            internal: false,
        })
        .unwrap();
        // Broker 1 leads: first the shutdown begins, its leadership moves...
        let (r, cmds) = hb
            .on_heartbeat(2, 1, epochs[&1], 0, false, true, &md)
            .unwrap();
        assert!(!r.should_shut_down && !r.is_fenced);
        assert_eq!(
            cmds,
            vec![MetadataCommand::BeginControlledShutdown {
                node_id: 1,
                broker_epoch: epochs[&1]
            }]
        );
        commit(&mut md, &cmds);
        assert_eq!(md.topics["t"].partitions[0].leader, 2);
        // ...then, leading nothing, it is fenced and may go.
        let (r, cmds) = hb
            .on_heartbeat(3, 1, epochs[&1], 0, false, true, &md)
            .unwrap();
        assert!(r.should_shut_down && r.is_fenced);
        assert_eq!(cmds, vec![MetadataCommand::FenceBroker { node_id: 1 }]);
        commit(&mut md, &cmds);
        // A fenced broker may shut down at once; broker 2 was the last ISR member.
        let (r, cmds) = hb
            .on_heartbeat(4, 1, epochs[&1], 0, false, true, &md)
            .unwrap();
        assert!(r.should_shut_down && cmds.is_empty());
        let (_, cmds) = hb
            .on_heartbeat(5, 2, epochs[&2], 0, false, true, &md)
            .unwrap();
        commit(&mut md, &cmds);
        assert_eq!(md.topics["t"].partitions[0].leader, NO_LEADER);
        assert_eq!(md.topics["t"].partitions[0].isr, vec![2]);
    }
}
