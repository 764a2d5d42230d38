//! The simulation's invariants, checked after every step (see the module docs of
//! `sim`).

use std::collections::BTreeSet;

use sluice_controller::NO_LEADER;

use super::{Check, Sim};

impl Sim {
    /// The invariants.
    pub(super) fn check(&mut self) -> Check {
        // Published hws: bounded, monotonic per epoch, and consistent with each other.
        for n in &mut self.nodes {
            let Some(ls) = n.leader.as_ref() else {
                continue;
            };
            let hw = ls.high_watermark();
            n.hw = hw;
            if hw > n.log.end() {
                return Err(format!(
                    "leader {} hw {hw} beyond its log end {}",
                    n.id,
                    n.log.end()
                ));
            }
            let key = (n.id, ls.leader_epoch());
            let seen = self.hw_seen.get(&key).copied();
            if seen.is_some_and(|s| hw < s) {
                return Err(format!(
                    "leader {} epoch {} hw went back from {seen:?} to {hw}",
                    n.id, key.1
                ));
            }
            self.hw_seen.insert(key, hw);
            for o in seen.unwrap_or(0)..hw {
                let e = n.log.get(o).ok_or("entry below hw missing")?;
                match self.committed.get(o as usize) {
                    Some(c) if *c != e => {
                        return Err(format!(
                            "leader {} epoch {} published {e:?} at {o} over committed {c:?}",
                            n.id, key.1
                        ))
                    }
                    Some(_) => {}
                    None if o as usize == self.committed.len() => self.committed.push(e),
                    None => return Err(format!("committed gap at {o}")),
                }
            }
        }
        self.stats.committed = self.committed.len();
        let part = self.part()?.clone();
        // ISR members hold exactly the committed entries below their log end, and never
        // lose one they held.
        let isr: BTreeSet<i32> = part.isr.iter().copied().collect();
        for n in &self.nodes {
            let upto = n.log.end().min(self.committed.len() as i64);
            let held = self.held.get(&n.id).copied().unwrap_or(0);
            if isr.contains(&n.id) {
                if n.log.end() < held {
                    return Err(format!(
                        "ISR member {} lost committed entries: log end {} < {held}",
                        n.id,
                        n.log.end()
                    ));
                }
                for o in 0..upto {
                    if n.log.get(o) != self.committed.get(o as usize).copied() {
                        return Err(format!(
                            "ISR member {} has {:?} at {o}, committed {:?}",
                            n.id,
                            n.log.get(o),
                            self.committed.get(o as usize)
                        ));
                    }
                }
            }
            self.held.insert(n.id, upto);
        }
        if part.leader != NO_LEADER {
            let l = &self.nodes[part.leader as usize];
            for (o, e) in &self.acked {
                if l.log.get(*o) != Some(*e) {
                    return Err(format!(
                        "acknowledged {e:?} at {o} missing from leader {} (epoch {}): {:?}",
                        l.id,
                        part.leader_epoch,
                        l.log.get(*o)
                    ));
                }
            }
            // ISR members agree with the leader below its hw.
            if let Some(ls) = l
                .leader
                .as_ref()
                .filter(|ls| ls.leader_epoch() == part.leader_epoch)
            {
                for m in &part.isr {
                    let m = &self.nodes[*m as usize];
                    for o in 0..ls.high_watermark().min(m.log.end()) {
                        if m.log.get(o) != l.log.get(o) {
                            return Err(format!(
                                "ISR member {} disagrees with leader {} at {o} below hw",
                                m.id, l.id
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
