//! Seeded deterministic simulation of the controller: random sequences of broker
//! registration, heartbeats, session expiry, fencing, controlled shutdown, AlterPartition,
//! topic creation/deletion, producer id allocation, leader elections (ElectLeaders, preferred
//! and unclean, and the automatic rebalance), partition reassignments (started, changed,
//! cancelled, completed by AlterPartition) and controller failover over 3–5 brokers, with
//! invariants checked after every applied command.
//!
//! Run one seed with `SIM_SEED=<n> cargo test -p sluice-controller sim`.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::config::BrokerSettings;
use crate::heartbeats::BrokerHeartbeats;
use crate::metadata::{
    plan_create_partitions, plan_create_topic, plan_delete_topic, plan_elect_leaders,
    plan_leader_rebalance, plan_reassignments, BrokerRegistration, ElectionType, Metadata,
    MetadataCommand, Reassignment, TopicRef, NO_LEADER,
};

const SEEDS: [u64; 6] = [1, 2, 3, 42, 0x5eed, 0xdead_beef];
const STEPS: usize = 1500;

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
}

struct Sim {
    rng: Rng,
    md: Metadata,
    hb: BrokerHeartbeats,
    now: u64,
    /// Every command offered to `apply`, accepted or not.
    log: Vec<MetadataCommand>,
    committed: i64,
    nodes: i32,
    incarnations: BTreeMap<i32, u128>,
    epochs_seen: BTreeMap<i32, i64>,
    pid_end: i64,
    /// Accepted commands by kind.
    accepted: BTreeMap<String, usize>,
}

type Check = Result<(), String>;

fn check_state(md: &Metadata) -> Check {
    for t in md.topics.values() {
        for p in &t.partitions {
            let tp = format!("{}-{}", t.name, p.index);
            if p.leader != NO_LEADER {
                match md.brokers.get(&p.leader) {
                    None => return Err(format!("{tp} led by unregistered {}", p.leader)),
                    Some(b) if !b.is_eligible() => {
                        return Err(format!("{tp} led by fenced/shutting-down {b:?}"))
                    }
                    _ => {}
                }
                if !p.isr.contains(&p.leader) {
                    return Err(format!("{tp}: leader {} not in ISR {:?}", p.leader, p.isr));
                }
            }
            if p.leader != NO_LEADER && !p.replicas.contains(&p.leader) {
                return Err(format!(
                    "{tp}: leader {} not a replica {:?}",
                    p.leader, p.replicas
                ));
            }
            let replicas: BTreeSet<i32> = p.replicas.iter().copied().collect();
            let adding: BTreeSet<i32> = p.adding_replicas.iter().copied().collect();
            let removing: BTreeSet<i32> = p.removing_replicas.iter().copied().collect();
            if replicas.len() != p.replicas.len()
                || !adding.is_subset(&replicas)
                || !removing.is_subset(&replicas)
                || !adding.is_disjoint(&removing)
                || removing.len() >= replicas.len()
            {
                return Err(format!("{tp}: bad reassignment state {p:?}"));
            }
            let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
            if p.isr.is_empty()
                || isr.len() != p.isr.len()
                || !p.isr.iter().all(|r| p.replicas.contains(r))
            {
                return Err(format!("{tp}: bad ISR {:?} of {:?}", p.isr, p.replicas));
            }
        }
    }
    Ok(())
}

/// `unclean`: the command was an UNCLEAN election, which may pick a leader outside the ISR
/// whatever the topic's `unclean.leader.election.enable`.
fn check_transition(prev: &Metadata, cur: &Metadata, unclean: bool) -> Check {
    for t in cur.topics.values() {
        let Some(pt) = prev.topics.get(&t.name).filter(|pt| pt.id == t.id) else {
            continue;
        };
        for (p, q) in pt.partitions.iter().zip(&t.partitions) {
            let tp = format!("{}-{}", t.name, p.index);
            if q.leader_epoch < p.leader_epoch || q.partition_epoch < p.partition_epoch {
                return Err(format!("{tp}: epochs went back: {p:?} -> {q:?}"));
            }
            if q.leader != p.leader && q.leader_epoch <= p.leader_epoch {
                return Err(format!("{tp}: leader changed without epoch bump"));
            }
            if (q.leader != p.leader || q.isr != p.isr || q.replicas != p.replicas)
                && q.partition_epoch <= p.partition_epoch
            {
                return Err(format!("{tp}: change without partition epoch bump"));
            }
            // A reassignment ends complete (every replica of the final set in the ISR) or
            // cancelled (the original replicas back).
            if p.is_reassigning() && !q.is_reassigning() {
                let original: Vec<i32> = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !p.adding_replicas.contains(r))
                    .collect();
                let completed = q.replicas.iter().all(|r| q.isr.contains(r));
                let same_set = q.replicas.len() == original.len()
                    && original.iter().all(|r| q.replicas.contains(r));
                if !completed && !same_set {
                    return Err(format!("{tp}: reassignment {p:?} ended as {q:?}"));
                }
            }
            // (A reassignment completed by AlterPartition elects from the ISR it sets.)
            let reassigned_into_isr = p.is_reassigning() && q.isr.contains(&q.leader);
            if q.leader != p.leader
                && q.leader != NO_LEADER
                && !p.isr.contains(&q.leader)
                && !reassigned_into_isr
                && !t.unclean_leader_election()
                && !unclean
            {
                return Err(format!(
                    "{tp}: leader {} elected outside ISR {:?}",
                    q.leader, p.isr
                ));
            }
        }
    }
    for (id, b) in &cur.brokers {
        if let Some(pb) = prev.brokers.get(id) {
            if b.broker_epoch < pb.broker_epoch
                || (b.incarnation_id != pb.incarnation_id && b.broker_epoch <= pb.broker_epoch)
            {
                return Err(format!("broker {id}: epoch {pb:?} -> {b:?}"));
            }
        }
    }
    Ok(())
}

/// An accepted election changed the leader of exactly the named partitions, to the preferred
/// replica (or, for a leaderless partition, an ISR member) or, for UNCLEAN, to a live replica
/// of a partition that had no leader; nothing else changed.
fn check_election(
    prev: &Metadata,
    cur: &Metadata,
    kind: ElectionType,
    named: &[(String, i32)],
) -> Check {
    if prev.brokers != cur.brokers {
        return Err("an election changed brokers".into());
    }
    for t in cur.topics.values() {
        let Some(pt) = prev.topics.get(&t.name) else {
            return Err(format!("an election created {}", t.name));
        };
        for (p, q) in pt.partitions.iter().zip(&t.partitions) {
            let tp = format!("{}-{}", t.name, p.index);
            if !named.contains(&(t.name.clone(), p.index)) {
                if p != q {
                    return Err(format!("{tp} changed but was not named"));
                }
                continue;
            }
            if q.leader == p.leader || q.leader == NO_LEADER {
                return Err(format!(
                    "{tp}: named but leader {} -> {}",
                    p.leader, q.leader
                ));
            }
            match kind {
                ElectionType::Preferred => {
                    let preferred = p.replicas.first().copied();
                    if Some(q.leader) != preferred
                        && !(p.leader == NO_LEADER && p.isr.contains(&q.leader))
                    {
                        return Err(format!("{tp}: preferred election chose {}", q.leader));
                    }
                    if q.isr != p.isr {
                        return Err(format!("{tp}: preferred election changed the ISR"));
                    }
                }
                ElectionType::Unclean => {
                    if p.leader != NO_LEADER || !p.replicas.contains(&q.leader) {
                        return Err(format!("{tp}: unclean election of {p:?} -> {q:?}"));
                    }
                }
            }
        }
    }
    Ok(())
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let nodes = 3 + rng.below(3) as i32;
        let mut hb = BrokerHeartbeats::default();
        hb.reset(0, 0);
        Sim {
            rng,
            md: Metadata::new("sim", 1),
            hb,
            now: 0,
            log: Vec::new(),
            committed: 0,
            nodes,
            incarnations: BTreeMap::new(),
            epochs_seen: BTreeMap::new(),
            pid_end: 0,
            accepted: BTreeMap::new(),
        }
    }

    fn apply(&mut self, cmd: MetadataCommand) -> Result<bool, String> {
        let prev = self.md.clone();
        let r = self.md.apply(&cmd);
        self.log.push(cmd.clone());
        if r.is_err() {
            if self.md != prev {
                return Err(format!("refused {cmd:?} changed the state"));
            }
            return Ok(false);
        }
        self.committed += 1;
        let kind = format!("{cmd:?}");
        let kind = kind.split([' ', '(', '{']).next().unwrap_or("").to_string();
        *self.accepted.entry(kind).or_default() += 1;
        check_state(&self.md).map_err(|e| format!("after {cmd:?}: {e}"))?;
        let unclean = matches!(
            cmd,
            MetadataCommand::ElectLeaders {
                election_type: ElectionType::Unclean,
                ..
            }
        );
        check_transition(&prev, &self.md, unclean).map_err(|e| format!("after {cmd:?}: {e}"))?;
        if let MetadataCommand::ElectLeaders {
            election_type,
            partitions,
        } = &cmd
        {
            check_election(&prev, &self.md, *election_type, partitions)
                .map_err(|e| format!("after {cmd:?}: {e}"))?;
        }
        for (id, b) in &self.md.brokers {
            let seen = self.epochs_seen.entry(*id).or_insert(b.broker_epoch);
            if b.broker_epoch != *seen {
                if b.broker_epoch <= *seen {
                    return Err(format!("broker {id} epoch {} after {seen}", b.broker_epoch));
                }
                *seen = b.broker_epoch;
            }
        }
        if let MetadataCommand::AllocateProducerIds { .. } = cmd {
            let Some(block) = self.md.last_producer_id_block() else {
                return Err("allocation without a block".into());
            };
            if block.first_producer_id < self.pid_end {
                return Err(format!(
                    "producer id block {block:?} overlaps ..{}",
                    self.pid_end
                ));
            }
            self.pid_end = block.end();
        }
        Ok(true)
    }

    fn apply_all(&mut self, cmds: Vec<MetadataCommand>) -> Check {
        for c in cmds {
            self.apply(c)?;
        }
        Ok(())
    }

    fn node(&mut self) -> i32 {
        1 + self.rng.below(self.nodes as u64) as i32
    }

    fn epoch_of(&mut self, node: i32) -> i64 {
        let e = self.md.brokers.get(&node).map_or(0, |b| b.broker_epoch);
        if self.rng.chance(5) {
            e - 1
        } else {
            e
        }
    }

    fn step(&mut self) -> Check {
        self.now += self.rng.below(400);
        match self.rng.below(130) {
            0..=9 => {
                let node = self.node();
                let inc = self.incarnations.entry(node).or_insert(node as u128 * 1000);
                if self.rng.chance(67) {
                    *inc += 1;
                }
                let reg = BrokerRegistration {
                    node_id: node,
                    incarnation_id: Uuid::from_u128(*inc),
                    host: "h".into(),
                    port: 9000 + node,
                    rack: Some(format!("r{}", node % 2)),
                    inter_broker: None,
                };
                if let Ok(cmd) = self.hb.plan_register(self.now, &reg, &self.md) {
                    if self.apply(cmd)? {
                        let e = self.md.brokers[&node].broker_epoch;
                        self.hb.on_registered(self.now, node, e, self.committed);
                    }
                }
            }
            10..=44 => {
                let node = self.node();
                let epoch = self.epoch_of(node);
                let lag = self.rng.below(3) as i64;
                let want_fence = self.rng.chance(3);
                let want_shutdown = self.rng.chance(4);
                if let Ok((_, cmds)) = self.hb.on_heartbeat(
                    self.now,
                    node,
                    epoch,
                    self.committed - lag,
                    want_fence,
                    want_shutdown,
                    &self.md,
                ) {
                    self.apply_all(cmds)?;
                }
            }
            45..=52 => {
                self.now += self.rng.below(6000);
                let cmds = self.hb.tick(self.now, &self.md);
                self.apply_all(cmds)?;
            }
            53..=55 => {
                let node_id = self.node();
                self.apply(MetadataCommand::FenceBroker { node_id })?;
            }
            56..=58 => {
                let node_id = self.node();
                let broker_epoch = self.epoch_of(node_id);
                self.apply(MetadataCommand::UnfenceBroker {
                    node_id,
                    broker_epoch,
                })?;
            }
            59..=60 => {
                let node_id = self.node();
                let broker_epoch = self.epoch_of(node_id);
                self.apply(MetadataCommand::BeginControlledShutdown {
                    node_id,
                    broker_epoch,
                })?;
            }
            61..=77 => self.alter_partition()?,
            78..=85 => {
                let name = format!("t{}", self.rng.below(6));
                let parts = 1 + self.rng.below(4) as i32;
                let rf = 1 + self.rng.below(3) as i16;
                let mut configs = BTreeMap::new();
                if self.rng.chance(30) {
                    configs.insert("unclean.leader.election.enable".into(), "true".into());
                }
                let settings = BrokerSettings::default();
                if let Ok(cmd) = plan_create_topic(&self.md, &name, parts, rf, &configs, &settings)
                {
                    self.apply(cmd)?;
                }
            }
            86..=88 => {
                let name = format!("t{}", self.rng.below(6));
                let more = 1 + self.rng.below(3) as i32;
                let total = self
                    .md
                    .topics
                    .get(&name)
                    .map_or(1, |t| t.partitions.len() as i32 + more);
                if let Ok(cmd) = plan_create_partitions(&self.md, &name, total) {
                    self.apply(cmd)?;
                }
            }
            89..=92 => {
                let name = format!("t{}", self.rng.below(6));
                if let Ok(cmd) = plan_delete_topic(&self.md, &name) {
                    self.apply(cmd)?;
                }
            }
            93..=96 => {
                let broker_id = self.node();
                let broker_epoch = self.epoch_of(broker_id);
                self.apply(MetadataCommand::AllocateProducerIds {
                    broker_id,
                    broker_epoch,
                })?;
            }
            97..=99 => {
                // Controller failover: soft state is lost, sessions are granted afresh.
                self.hb = BrokerHeartbeats::default();
                self.hb.reset(self.now, self.committed);
            }
            100..=111 => self.elect_leaders()?,
            120..=129 => self.reassign()?,
            112..=114 => {
                // A raw command, possibly stale or naming unknown or duplicate partitions:
                // refused ones must change nothing (checked in `apply`).
                let kind = self.election_type();
                let partitions = self.some_partitions();
                self.apply(MetadataCommand::ElectLeaders {
                    election_type: kind,
                    partitions,
                })?;
            }
            _ => {
                // 115..=119
                let pct = [0, 10, 50][self.rng.below(3) as usize];
                if let Some(cmd) = plan_leader_rebalance(&self.md, pct) {
                    if !self.apply(cmd.clone())? {
                        return Err(format!("planned rebalance {cmd:?} was refused"));
                    }
                    if plan_leader_rebalance(&self.md, pct).is_some() {
                        return Err("a rebalance left work for the next one".into());
                    }
                }
            }
        }
        Ok(())
    }

    fn election_type(&mut self) -> ElectionType {
        if self.rng.chance(70) {
            ElectionType::Preferred
        } else {
            ElectionType::Unclean
        }
    }

    /// A few (topic, partition) pairs: mostly existing ones, some unknown, some repeated.
    fn some_partitions(&mut self) -> Vec<(String, i32)> {
        let existing: Vec<(String, i32)> = self
            .md
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.clone(), p.index)))
            .collect();
        let n = 1 + self.rng.below(4);
        (0..n)
            .map(|_| {
                if !existing.is_empty() && self.rng.chance(85) {
                    existing[self.rng.below(existing.len() as u64) as usize].clone()
                } else {
                    let topic = format!("t{}", self.rng.below(7));
                    let max = self
                        .md
                        .topics
                        .get(&topic)
                        .map_or(2, |t| t.partitions.len() + 1);
                    (topic, self.rng.below(max as u64) as i32)
                }
            })
            .collect()
    }

    /// ElectLeaders as the broker handler runs it: plan, check the plan against the
    /// per-partition outcomes, commit the command (which must be accepted).
    fn elect_leaders(&mut self) -> Check {
        let kind = self.election_type();
        let asked = if self.rng.chance(30) {
            None
        } else {
            Some(self.some_partitions())
        };
        let plan = plan_elect_leaders(&self.md, kind, asked.as_deref());
        let mut ok: Vec<(String, i32)> = Vec::new();
        for r in &plan.results {
            let outcome = self.md.election_outcome(&r.topic, r.partition, kind);
            if outcome.as_ref().err() != r.error.as_ref() {
                return Err(format!("plan {r:?} disagrees with the outcome {outcome:?}"));
            }
            if r.error.is_none() && !ok.contains(&(r.topic.clone(), r.partition)) {
                ok.push((r.topic.clone(), r.partition));
            }
        }
        let Some(cmd) = plan.command else {
            return if ok.is_empty() {
                Ok(())
            } else {
                Err(format!("no command for the successes {ok:?}"))
            };
        };
        let named = match &cmd {
            MetadataCommand::ElectLeaders { partitions, .. } => partitions.clone(),
            other => return Err(format!("planned {other:?}")),
        };
        if named != ok {
            return Err(format!("plan command {cmd:?} vs successes {ok:?}"));
        }
        if !self.apply(cmd.clone())? {
            return Err(format!("planned {cmd:?} was refused"));
        }
        Ok(())
    }

    /// A reassignment of a random partition to random brokers (sometimes unknown or
    /// duplicated ones, a changed replica count, or a cancel): planned ones must commit;
    /// sometimes the raw command is offered instead, which must be all or nothing.
    fn reassign(&mut self) -> Check {
        let parts: Vec<(String, i32)> = self
            .md
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.clone(), p.index)))
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        let (topic, partition) = parts[self.rng.below(parts.len() as u64) as usize].clone();
        let target = if self.rng.chance(15) {
            None
        } else {
            let n = 1 + self.rng.below(3);
            let mut t: Vec<i32> = Vec::new();
            for _ in 0..n {
                let b = if self.rng.chance(3) { 99 } else { self.node() };
                if !t.contains(&b) || self.rng.chance(5) {
                    t.push(b);
                }
            }
            Some(t)
        };
        let r = Reassignment {
            topic,
            partition,
            target,
        };
        if self.rng.chance(20) {
            self.apply(MetadataCommand::AlterPartitionReassignments { changes: vec![r] })?;
            return Ok(());
        }
        let allow_rf_change = self.rng.chance(70);
        let plan = plan_reassignments(&self.md, std::slice::from_ref(&r), allow_rf_change);
        if let Some(cmd) = plan.command {
            if !self.apply(cmd.clone())? {
                return Err(format!("planned reassignment {cmd:?} was refused"));
            }
        }
        Ok(())
    }

    fn alter_partition(&mut self) -> Check {
        let parts: Vec<(Uuid, i32)> = self
            .md
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.id, p.index)))
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        let (id, index) = parts[self.rng.below(parts.len() as u64) as usize];
        let Some(p) = self
            .md
            .topic_by_id(&id)
            .and_then(|t| t.partitions.get(index as usize))
            .cloned()
        else {
            return Ok(());
        };
        let leader_id = if self.rng.chance(90) {
            p.leader
        } else {
            self.node()
        };
        let mut new_isr: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|r| *r == leader_id || self.rng.chance(60))
            .collect();
        if self.rng.chance(5) {
            new_isr.retain(|r| *r != leader_id);
        }
        let stale = |rng: &mut Rng, v: i32| if rng.chance(5) { v - 1 } else { v };
        let leader_epoch = stale(&mut self.rng, p.leader_epoch);
        let partition_epoch = stale(&mut self.rng, p.partition_epoch);
        let broker_epoch = if self.rng.chance(50) {
            -1
        } else {
            self.epoch_of(leader_id)
        };
        self.apply(MetadataCommand::AlterPartition {
            topic: TopicRef::Id(id),
            partition: index,
            leader_id,
            broker_epoch,
            leader_epoch,
            partition_epoch,
            new_isr,
        })?;
        Ok(())
    }

    fn check_determinism(&self) -> Check {
        let json: Vec<String> = self
            .log
            .iter()
            .map(|c| serde_json::to_string(c).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let replay = || -> Result<Metadata, String> {
            let mut md = Metadata::new("sim", 1);
            for line in &json {
                let cmd: MetadataCommand = serde_json::from_str(line).map_err(|e| e.to_string())?;
                let _ = md.apply(&cmd);
            }
            Ok(md)
        };
        let (a, b) = (replay()?, replay()?);
        if a != b || a != self.md {
            return Err("replaying the command log does not give the same state".into());
        }
        let snap = serde_json::to_string(&self.md).map_err(|e| e.to_string())?;
        let mut back: Metadata = serde_json::from_str(&snap).map_err(|e| e.to_string())?;
        back.rebuild_index();
        if back != self.md {
            return Err("serde round trip of Metadata differs".into());
        }
        Ok(())
    }
}

fn run(seed: u64) -> (usize, usize, BTreeMap<String, usize>) {
    let mut sim = Sim::new(seed);
    for step in 0..STEPS {
        let r = sim.step().and_then(|_| {
            if step % 250 == 249 {
                sim.check_determinism()
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            panic!("simulation failed with SIM_SEED={seed} at step {step}: {e}");
        }
    }
    if let Err(e) = sim.check_determinism() {
        panic!("simulation failed with SIM_SEED={seed} at the end: {e}");
    }
    let leaders = sim
        .md
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.leader != NO_LEADER)
        .count();
    (sim.committed as usize, leaders, sim.accepted)
}

#[test]
fn simulation() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SIM_SEED must be a u64, got {s:?}"))],
        Err(_) => SEEDS.to_vec(),
    };
    for seed in seeds {
        let (committed, _, accepted) = run(seed);
        // The simulation must actually exercise the state machine.
        assert!(
            committed > STEPS / 5,
            "seed {seed}: only {committed} commits"
        );
        for kind in [
            "RegisterBroker",
            "UnfenceBroker",
            "FenceBroker",
            "BeginControlledShutdown",
            "AlterPartition",
            "CreateTopic",
            "DeleteTopic",
            "AllocateProducerIds",
            "ElectLeaders",
            "AlterPartitionReassignments",
        ] {
            assert!(
                accepted.get(kind).copied().unwrap_or(0) > 0,
                "seed {seed}: no {kind} accepted: {accepted:?}"
            );
        }
        if std::env::var("SIM_STATS").is_ok() {
            eprintln!("seed {seed}: {accepted:?}");
        }
    }
}

#[test]
fn simulation_is_reproducible() {
    assert_eq!(run(7), run(7));
}
