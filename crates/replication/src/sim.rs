//! Seeded deterministic simulation of one partition replicated over 3–5 brokers.
//!
//! The controller is the real [`sluice_controller::Metadata`] state machine (broker
//! registration, unfencing, fencing with leader election, AlterPartition). Every broker has
//! an in-memory [`Log`] with an epoch cache, its own possibly stale copy of the metadata,
//! and — while it believes it leads — a [`LeaderState`]. A seeded scheduler picks events:
//! client appends (acks=all) at whoever believes it leads, follower fetches, delivery of
//! in-flight messages (fetch requests and responses, AlterPartition requests and answers)
//! in any order or not at all, time passing with the leaders' periodic poll, metadata
//! reaching a broker, crashes (the log survives, everything else is lost), session expiry
//! (FenceBroker), restarts (a new incarnation registers again), unfencing and pauses.
//!
//! Invariants checked after every step (each failure names the seed):
//!
//! * an acknowledged write is in the log of the controller's current leader, at its offset
//!   with its epoch and value (and in the log of every broker when it becomes leader);
//! * committed entries (below the hw any leader published) never change: every hw a leader
//!   publishes agrees with what earlier leaders published;
//! * every replica in the controller's ISR holds exactly the committed entries below its
//!   log end, and never loses committed entries it held (no truncation below them);
//! * ISR members agree with the current leader below the leader's hw;
//! * a leader's hw never passes its log end and never goes backwards within its epoch (a
//!   new leader may start below the previous leader's hw — Kafka allows that — but never
//!   with a log missing an acknowledged write);
//! * at most one broker ever leads a given leader epoch.
//!
//! `SIM_SEED=n` runs one seed; `SIM_SEEDS=n` runs seeds `0..n` (default [`DEFAULT_SEEDS`]).

mod check;
mod log;

use std::collections::BTreeMap;

use sluice_controller::{
    BrokerRegistration, ControllerError, Metadata, MetadataCommand, PartitionInfo, TopicRef,
    NO_LEADER,
};
use uuid::Uuid;

use crate::leader::Bug;
use crate::{truncation_offset, Completion, IsrChange, LeaderState, ReplicationConfig};
use log::{Entry, Log};

const TOPIC: &str = "t";
/// Seeds run by default.
const DEFAULT_SEEDS: u64 = 2000;
/// Steps per seed.
const STEPS: usize = 400;
/// `replica.lag.time.max.ms` in the simulation.
const LAG_MS: u64 = 1000;
/// A leader resends an unanswered AlterPartition after this long.
const ALTER_RETRY_MS: u64 = 700;
/// The controller's address in messages.
const CONTROLLER: i32 = -1;

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len() as u64) as usize).copied()
        }
    }
}

/// A broker's copy of the metadata.
#[derive(Debug, Clone)]
struct View {
    part: PartitionInfo,
}

/// One broker.
struct Node {
    id: i32,
    up: bool,
    paused_until: u64,
    incarnation: u128,
    broker_epoch: i64,
    log: Log,
    /// The hw as leader or as follower.
    hw: i64,
    view: Option<View>,
    leader: Option<LeaderState>,
    alter_sent_ms: u64,
}

/// What a message carries.
#[derive(Debug, Clone)]
enum Body {
    Fetch {
        leader_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        broker_epoch: i64,
    },
    Records {
        leader_epoch: i32,
        fetch_offset: i64,
        entries: Vec<Entry>,
        hw: i64,
    },
    Diverging {
        leader_epoch: i32,
        fetch_offset: i64,
        epoch: i32,
        end_offset: i64,
    },
    Alter {
        change: IsrChange,
        broker_epoch: i64,
    },
    AlterOk {
        leader_epoch: i32,
        part: PartitionInfo,
    },
    /// An explicit "not applied" answer (INELIGIBLE_REPLICA).
    AlterRefused { change: IsrChange },
}

#[derive(Debug, Clone)]
struct Msg {
    from: i32,
    to: i32,
    /// Responses go to the incarnation that asked; `None` = any.
    to_incarnation: Option<u128>,
    body: Body,
}

/// An acks=all produce waiting for its completion.
struct PendingAck {
    node: i32,
    epoch: i32,
    required: i64,
    offset: i64,
    entry: Entry,
}

/// What a run did, to show the simulation is not vacuous.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    acked: usize,
    leaders: usize,
    truncations: usize,
    isr_changes: usize,
    committed: usize,
}

type Check = Result<(), String>;

struct Sim {
    rng: Rng,
    md: Metadata,
    now: u64,
    nodes: Vec<Node>,
    config: ReplicationConfig,
    msgs: Vec<Msg>,
    next_value: u64,
    next_incarnation: u128,
    pending_acks: Vec<PendingAck>,
    acked: Vec<(i64, Entry)>,
    /// Entries below some published hw, by offset.
    committed: Vec<Entry>,
    /// Highest hw seen per (node, leader epoch).
    hw_seen: BTreeMap<(i32, i32), i64>,
    /// Who led each leader epoch.
    leader_of_epoch: BTreeMap<i32, i32>,
    /// Per node: how many committed entries it held at the last check.
    held: BTreeMap<i32, i64>,
    /// Test knob handed to every `LeaderState`.
    bug: Bug,
    stats: Stats,
}

impl Sim {
    fn new(seed: u64, bug: Bug) -> Result<Sim, String> {
        let mut rng = Rng::new(seed);
        let n = 3 + rng.below(3) as i32;
        let min_isr = 1 + rng.below(2) as usize;
        let mut sim = Sim {
            rng,
            md: Metadata::new("sim", 0),
            now: 0,
            nodes: Vec::new(),
            config: ReplicationConfig {
                min_insync_replicas: min_isr,
                replica_lag_time_max_ms: LAG_MS,
            },
            msgs: Vec::new(),
            next_value: 1,
            next_incarnation: 1,
            pending_acks: Vec::new(),
            acked: Vec::new(),
            committed: Vec::new(),
            hw_seen: BTreeMap::new(),
            leader_of_epoch: BTreeMap::new(),
            held: BTreeMap::new(),
            bug,
            stats: Stats::default(),
        };
        for id in 0..n {
            sim.nodes.push(Node {
                id,
                up: true,
                paused_until: 0,
                incarnation: 0,
                broker_epoch: -1,
                log: Log::default(),
                hw: 0,
                view: None,
                leader: None,
                alter_sent_ms: 0,
            });
            sim.register(id)?;
            let epoch = sim.nodes[id as usize].broker_epoch;
            sim.apply(MetadataCommand::UnfenceBroker {
                node_id: id,
                broker_epoch: epoch,
            })
            .map_err(|e| format!("unfence {id}: {e}"))?;
        }
        let replicas: Vec<i32> = (0..n).collect();
        sim.apply(MetadataCommand::CreateTopic {
            name: TOPIC.into(),
            id: Uuid::from_u128(7),
            partitions: vec![PartitionInfo {
                index: 0,
                leader: 0,
                leader_epoch: 0,
                replicas: replicas.clone(),
                isr: replicas,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            }],
            configs: BTreeMap::new(),
            internal: false,
        })
        .map_err(|e| format!("create topic: {e}"))?;
        for id in 0..n {
            sim.sync(id)?;
        }
        Ok(sim)
    }

    fn apply(&mut self, cmd: MetadataCommand) -> Result<(), ControllerError> {
        self.md.apply(&cmd)
    }

    fn part(&self) -> Result<&PartitionInfo, String> {
        self.md
            .topics
            .get(TOPIC)
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| "the topic is gone".to_string())
    }

    fn node(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    fn active(&self, id: i32) -> bool {
        let n = &self.nodes[id as usize];
        n.up && n.paused_until <= self.now
    }

    fn active_ids(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|n| self.active(n.id))
            .map(|n| n.id)
            .collect()
    }

    fn send(&mut self, from: i32, to: i32, to_incarnation: Option<u128>, body: Body) {
        self.msgs.push(Msg {
            from,
            to,
            to_incarnation,
            body,
        });
    }

    /// Registers a new incarnation of `id` (it starts fenced).
    fn register(&mut self, id: i32) -> Check {
        let inc = self.next_incarnation;
        self.next_incarnation += 1;
        self.apply(MetadataCommand::RegisterBroker(BrokerRegistration {
            node_id: id,
            incarnation_id: Uuid::from_u128(inc),
            host: "h".into(),
            port: 9000 + id,
            rack: None,
            inter_broker: None,
        }))
        .map_err(|e| format!("register {id}: {e}"))?;
        let epoch = self
            .md
            .brokers
            .get(&id)
            .map(|b| b.broker_epoch)
            .ok_or("registered broker missing")?;
        let n = self.node(id);
        n.incarnation = inc;
        n.broker_epoch = epoch;
        Ok(())
    }

    /// The node learns the controller's current metadata and acts on it.
    fn sync(&mut self, id: i32) -> Check {
        let part = self.part()?.clone();
        let eligible: BTreeMap<i32, i64> = self
            .md
            .brokers
            .values()
            .filter(|b| b.is_eligible())
            .map(|b| (b.node_id, b.broker_epoch))
            .collect();
        let now = self.now;
        let config = self.config;
        let bug = self.bug;
        let n = &mut self.nodes[id as usize];
        n.view = Some(View { part: part.clone() });
        let my_epoch = n.leader.as_ref().map(|l| l.leader_epoch());
        if part.leader == id {
            match my_epoch {
                Some(e) if e == part.leader_epoch => {
                    if let Some(ls) = n.leader.as_mut() {
                        ls.on_metadata(part.partition_epoch, &part.replicas, &part.isr, now);
                        ls.set_eligible_brokers(&eligible);
                    }
                }
                Some(e) if e > part.leader_epoch => {
                    return Err(format!("node {id} leads epoch {e} beyond the controller's"))
                }
                _ => {
                    let end = n.log.end();
                    n.log.assign(part.leader_epoch, end);
                    let mut ls = LeaderState::new(
                        id,
                        part.leader_epoch,
                        part.partition_epoch,
                        &part.replicas,
                        &part.isr,
                        end,
                        end,
                        n.hw,
                        config,
                        now,
                    );
                    ls.bug = bug;
                    ls.set_eligible_brokers(&eligible);
                    n.leader = Some(ls);
                    self.stats.leaders += 1;
                    if let Some(other) = self.leader_of_epoch.insert(part.leader_epoch, id) {
                        if other != id {
                            return Err(format!(
                                "two leaders of epoch {}: {other} and {id}",
                                part.leader_epoch
                            ));
                        }
                    }
                    for (o, e) in &self.acked {
                        if self.nodes[id as usize].log.get(*o) != Some(*e) {
                            return Err(format!(
                                "new leader {id} (epoch {}) lacks acknowledged write {e:?} at {o}",
                                part.leader_epoch
                            ));
                        }
                    }
                }
            }
        } else if my_epoch.is_some_and(|e| e < part.leader_epoch) {
            n.leader = None;
        }
        Ok(())
    }

    /// One scheduler step.
    fn step(&mut self) -> Check {
        match self.rng.below(100) {
            0..=19 => self.client_append(),
            20..=44 => self.follower_fetch(),
            45..=74 => self.deliver(),
            75..=82 => self.tick(),
            83..=90 => {
                let ids = self.active_ids();
                match self.rng.pick(&ids) {
                    Some(id) => self.sync(id),
                    None => Ok(()),
                }
            }
            91..=92 => self.crash(),
            93..=94 => self.restart(),
            95..=96 => self.expire(),
            97..=98 => self.unfence(),
            _ => {
                let ids = self.active_ids();
                if let Some(id) = self.rng.pick(&ids) {
                    let until = self.now + 1 + self.rng.below(3 * LAG_MS);
                    self.node(id).paused_until = until;
                }
                Ok(())
            }
        }?;
        self.complete_acks();
        self.check()
    }

    fn client_append(&mut self) -> Check {
        let leaders: Vec<i32> = self
            .active_ids()
            .into_iter()
            .filter(|id| self.nodes[*id as usize].leader.is_some())
            .collect();
        let Some(id) = self.rng.pick(&leaders) else {
            return Ok(());
        };
        let value = self.next_value;
        self.next_value += 1;
        let n = &mut self.nodes[id as usize];
        let Some(ls) = n.leader.as_mut() else {
            return Ok(());
        };
        if ls.check_enough_replicas().is_err() {
            return Ok(());
        }
        let entry = Entry {
            epoch: ls.leader_epoch(),
            value,
        };
        let offset = n.log.end();
        n.log.append(entry);
        ls.on_local_append(n.log.end());
        self.pending_acks.push(PendingAck {
            node: id,
            epoch: entry.epoch,
            required: offset + 1,
            offset,
            entry,
        });
        Ok(())
    }

    fn follower_fetch(&mut self) -> Check {
        let ids = self.active_ids();
        let Some(id) = self.rng.pick(&ids) else {
            return Ok(());
        };
        let n = &self.nodes[id as usize];
        if n.leader.is_some() {
            return Ok(());
        }
        let Some(view) = &n.view else {
            return Ok(());
        };
        if view.part.leader == NO_LEADER || view.part.leader == id {
            return Ok(());
        }
        let body = Body::Fetch {
            leader_epoch: view.part.leader_epoch,
            fetch_offset: n.log.end(),
            last_fetched_epoch: n.log.latest_epoch().unwrap_or(-1),
            broker_epoch: n.broker_epoch,
        };
        let to = view.part.leader;
        self.send(id, to, None, body);
        Ok(())
    }

    /// Delivers (or drops) one in-flight message to an active receiver.
    fn deliver(&mut self) -> Check {
        let ready: Vec<usize> = (0..self.msgs.len())
            .filter(|i| self.msgs[*i].to == CONTROLLER || self.active(self.msgs[*i].to))
            .collect();
        let Some(i) = self.rng.pick(&ready) else {
            return Ok(());
        };
        let msg = self.msgs.swap_remove(i);
        if self.rng.chance(8) {
            return Ok(());
        }
        if msg.to != CONTROLLER {
            let inc = self.nodes[msg.to as usize].incarnation;
            if msg.to_incarnation.is_some_and(|want| want != inc) {
                return Ok(());
            }
        }
        match msg.body {
            Body::Fetch {
                leader_epoch,
                fetch_offset,
                last_fetched_epoch,
                broker_epoch,
            } => self.handle_fetch(
                msg.from,
                msg.to,
                leader_epoch,
                fetch_offset,
                last_fetched_epoch,
                broker_epoch,
            ),
            Body::Records {
                leader_epoch,
                fetch_offset,
                entries,
                hw,
            } => {
                let n = self.node(msg.to);
                if following(n, msg.from, leader_epoch) && n.log.end() == fetch_offset {
                    for e in entries {
                        n.log.append(e);
                    }
                    n.hw = n.hw.max(hw.min(n.log.end()));
                }
                Ok(())
            }
            Body::Diverging {
                leader_epoch,
                fetch_offset,
                epoch,
                end_offset,
            } => {
                let n = self.node(msg.to);
                if following(n, msg.from, leader_epoch) && n.log.end() == fetch_offset {
                    let local = n.log.end_offset_for_epoch(epoch);
                    let to = truncation_offset(epoch, end_offset, local, n.log.end());
                    if to < n.log.end() {
                        n.log.truncate(to);
                        n.hw = n.hw.min(n.log.end());
                        self.stats.truncations += 1;
                    }
                }
                Ok(())
            }
            Body::Alter {
                change,
                broker_epoch,
            } => self.handle_alter(msg.from, change, broker_epoch),
            Body::AlterOk { leader_epoch, part } => {
                let now = self.now;
                if let Some(ls) = self.node(msg.to).leader.as_mut() {
                    if ls.leader_epoch() == leader_epoch {
                        ls.on_metadata(part.partition_epoch, &part.replicas, &part.isr, now);
                    }
                }
                Ok(())
            }
            Body::AlterRefused { change } => {
                if let Some(ls) = self.node(msg.to).leader.as_mut() {
                    if ls.pending() == Some(&change) {
                        ls.on_alter_failed();
                    }
                }
                Ok(())
            }
        }
    }

    fn handle_fetch(
        &mut self,
        from: i32,
        to: i32,
        leader_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        broker_epoch: i64,
    ) -> Check {
        let now = self.now;
        let batch = 1 + self.rng.below(4) as usize;
        let from_inc = self.nodes[from as usize].incarnation;
        let n = &mut self.nodes[to as usize];
        let Some(ls) = n.leader.as_mut() else {
            return Ok(());
        };
        if ls.leader_epoch() != leader_epoch {
            // FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH: the follower waits for metadata.
            return Ok(());
        }
        if last_fetched_epoch >= 0 {
            let (epoch, end_offset) = n
                .log
                .end_offset_for_epoch(last_fetched_epoch)
                .unwrap_or((-1, -1));
            if epoch < last_fetched_epoch || end_offset < fetch_offset {
                let body = Body::Diverging {
                    leader_epoch,
                    fetch_offset,
                    epoch,
                    end_offset,
                };
                self.send(to, from, Some(from_inc), body);
                return Ok(());
            }
        }
        if fetch_offset > n.log.end() {
            return Err(format!(
                "fetch at {fetch_offset} from {from} beyond leader {to}'s end {} passed the epoch check",
                n.log.end()
            ));
        }
        let (_, change) = ls.on_follower_fetch(from, broker_epoch, fetch_offset, n.log.end(), now);
        let hw = ls.high_watermark();
        let start = usize::try_from(fetch_offset).map_err(|e| e.to_string())?;
        let entries: Vec<Entry> = n
            .log
            .entries
            .iter()
            .skip(start)
            .take(batch)
            .copied()
            .collect();
        let my_epoch = n.broker_epoch;
        if let Some(change) = change {
            n.alter_sent_ms = now;
            self.send(
                to,
                CONTROLLER,
                None,
                Body::Alter {
                    change,
                    broker_epoch: my_epoch,
                },
            );
        }
        let body = Body::Records {
            leader_epoch,
            fetch_offset,
            entries,
            hw,
        };
        self.send(to, from, Some(from_inc), body);
        Ok(())
    }

    fn handle_alter(&mut self, from: i32, change: IsrChange, broker_epoch: i64) -> Check {
        let cmd = MetadataCommand::AlterPartition {
            topic: TopicRef::Name(TOPIC.into()),
            partition: 0,
            leader_id: from,
            broker_epoch,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            new_isr: change.new_isr.clone(),
        };
        match self.apply(cmd) {
            Ok(()) => {
                self.stats.isr_changes += 1;
                let part = self.part()?.clone();
                let body = Body::AlterOk {
                    leader_epoch: change.leader_epoch,
                    part,
                };
                self.send(CONTROLLER, from, None, body);
            }
            Err(ControllerError::IneligibleReplica(_)) => {
                self.send(CONTROLLER, from, None, Body::AlterRefused { change });
            }
            // Stale epochs and the rest: the leader keeps its pending change until newer
            // metadata arrives (as Kafka does, since it cannot tell whether an earlier try
            // was applied).
            Err(_) => {}
        }
        Ok(())
    }

    /// Time passes; active leaders poll (and resend an unanswered AlterPartition).
    fn tick(&mut self) -> Check {
        self.now += 1 + self.rng.below(LAG_MS / 2);
        let now = self.now;
        let mut out = Vec::new();
        for id in self.active_ids() {
            let n = &mut self.nodes[id as usize];
            let Some(ls) = n.leader.as_mut() else {
                continue;
            };
            let change = match ls.pending() {
                Some(p) if now.saturating_sub(n.alter_sent_ms) > ALTER_RETRY_MS => Some(p.clone()),
                Some(_) => None,
                None => ls.poll(now),
            };
            if let Some(change) = change {
                n.alter_sent_ms = now;
                out.push((id, change, n.broker_epoch));
            }
        }
        for (id, change, broker_epoch) in out {
            self.send(
                id,
                CONTROLLER,
                None,
                Body::Alter {
                    change,
                    broker_epoch,
                },
            );
        }
        Ok(())
    }

    fn crash(&mut self) -> Check {
        let ids: Vec<i32> = self.nodes.iter().filter(|n| n.up).map(|n| n.id).collect();
        let Some(id) = self.rng.pick(&ids) else {
            return Ok(());
        };
        let n = self.node(id);
        n.up = false;
        n.leader = None;
        n.view = None;
        n.paused_until = 0;
        self.pending_acks.retain(|a| a.node != id);
        if self.rng.chance(50) {
            self.fence(id)?;
        }
        Ok(())
    }

    fn restart(&mut self) -> Check {
        let ids: Vec<i32> = self.nodes.iter().filter(|n| !n.up).map(|n| n.id).collect();
        let Some(id) = self.rng.pick(&ids) else {
            return Ok(());
        };
        self.node(id).up = true;
        self.register(id)
    }

    fn fence(&mut self, id: i32) -> Check {
        self.apply(MetadataCommand::FenceBroker { node_id: id })
            .map_err(|e| format!("fence {id}: {e}"))
    }

    /// Session expiry: a down or paused broker (rarely a live one) is fenced.
    fn expire(&mut self) -> Check {
        let now = self.now;
        let live_chance = self.rng.chance(10);
        let ids: Vec<i32> = self
            .nodes
            .iter()
            .filter(|n| !n.up || n.paused_until > now || live_chance)
            .filter(|n| self.md.brokers.get(&n.id).is_some_and(|b| !b.fenced))
            .map(|n| n.id)
            .collect();
        match self.rng.pick(&ids) {
            Some(id) => self.fence(id),
            None => Ok(()),
        }
    }

    fn unfence(&mut self) -> Check {
        let ids: Vec<i32> = self
            .active_ids()
            .into_iter()
            .filter(|id| self.md.brokers.get(id).is_some_and(|b| b.fenced))
            .collect();
        let Some(id) = self.rng.pick(&ids) else {
            return Ok(());
        };
        let broker_epoch = self.nodes[id as usize].broker_epoch;
        self.apply(MetadataCommand::UnfenceBroker {
            node_id: id,
            broker_epoch,
        })
        .map_err(|e| format!("unfence {id}: {e}"))
    }

    /// Acks=all produces whose completion check says Done are acknowledged.
    fn complete_acks(&mut self) {
        let nodes = &self.nodes;
        let mut done = Vec::new();
        self.pending_acks.retain(|a| {
            let Some(ls) = nodes[a.node as usize].leader.as_ref() else {
                return false;
            };
            if ls.leader_epoch() != a.epoch {
                return false;
            }
            match ls.check_completion(a.required) {
                Completion::Pending => true,
                Completion::Done => {
                    done.push((a.offset, a.entry));
                    false
                }
                Completion::NotEnoughReplicasAfterAppend => false,
            }
        });
        self.stats.acked += done.len();
        self.acked.extend(done);
    }
}

/// Whether `n` follows `leader` at `leader_epoch` (a response for another is stale).
fn following(n: &Node, leader: i32, leader_epoch: i32) -> bool {
    n.leader.is_none()
        && n.view
            .as_ref()
            .is_some_and(|v| v.part.leader == leader && v.part.leader_epoch == leader_epoch)
}

/// Runs one seed; the error names the seed and step.
fn run(seed: u64, bug: Bug) -> Result<Stats, String> {
    let mut sim = Sim::new(seed, bug).map_err(|e| format!("SIM_SEED={seed} setup: {e}"))?;
    for step in 0..STEPS {
        sim.step()
            .map_err(|e| format!("SIM_SEED={seed} step {step}: {e}"))?;
    }
    Ok(sim.stats)
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        let seed = s
            .parse()
            .unwrap_or_else(|_| panic!("SIM_SEED must be a u64, got {s:?}"));
        return vec![seed];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (0..n).collect()
}

#[test]
fn simulation() {
    let seeds = seeds();
    let mut total = Stats::default();
    for seed in &seeds {
        let s = run(*seed, Bug::None).unwrap_or_else(|e| panic!("simulation failed: {e}"));
        total.acked += s.acked;
        total.leaders += s.leaders;
        total.truncations += s.truncations;
        total.isr_changes += s.isr_changes;
        total.committed += s.committed;
    }
    eprintln!("{} seeds: {total:?}", seeds.len());
    if seeds.len() >= 100 {
        // Not vacuous: writes are acknowledged, leaders change, logs truncate.
        assert!(total.acked > seeds.len(), "{total:?}");
        assert!(total.leaders > seeds.len(), "{total:?}");
        assert!(total.truncations > 0, "{total:?}");
        assert!(total.isr_changes > seeds.len() / 2, "{total:?}");
    }
}

#[test]
fn simulation_is_reproducible() {
    let a = run(42, Bug::None).map(|s| format!("{s:?}"));
    let b = run(42, Bug::None).map(|s| format!("{s:?}"));
    assert_eq!(a, b);
}

/// The first failure of seeds `0..limit` with `bug` injected.
fn catch(bug: Bug, limit: u64) -> String {
    let caught = (0..limit).find_map(|seed| run(seed, bug).err());
    let e = caught.unwrap_or_else(|| panic!("{bug:?} was not caught within {limit} seeds"));
    assert!(e.contains("SIM_SEED="), "{e}");
    eprintln!("{bug:?} caught: {e}");
    e
}

#[test]
fn simulation_catches_hw_at_log_end() {
    catch(Bug::HwIsLogEnd, 200);
}

#[test]
fn simulation_catches_hw_over_committed_isr() {
    catch(Bug::HwOverCommittedIsr, 2000);
}

#[test]
fn simulation_catches_expansion_below_epoch_start() {
    catch(Bug::ExpandAtHwOnly, 2000);
}
