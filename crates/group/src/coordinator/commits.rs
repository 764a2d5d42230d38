//! Offset commits become visible only once their write is replicated, as in Kafka: an
//! OffsetCommit is staged ([`Coordinator::stage_commit`]), its records go to the log, and only
//! when the runtime reports the write as committed (the `__consumer_offsets` partition's high
//! watermark passed it) does [`Coordinator::complete_commit`] publish the offsets to
//! OffsetFetch. A failed write is dropped. Commits complete in any order, but a later commit
//! (in log order: commit ids are handed out in the order the writes are queued) is never
//! overwritten by an earlier one, so a client's retry of an old commit that was appended before
//! a newer one cannot move the visible offset back.

use super::{Action, CommitRequest, Coordinator, Millis};

impl Coordinator {
    /// Handles an OffsetCommit and publishes it at once (a write that cannot fail: tests and
    /// callers without replication). See [`Coordinator::stage_commit`].
    pub fn commit_offsets(&mut self, now: Millis, req: CommitRequest) -> (Vec<i16>, Vec<Action>) {
        let group = req.group_id.clone();
        let (errors, id, actions) = self.stage_commit(now, req);
        if let Some(id) = id {
            self.complete_commit(&group, id, true);
        }
        (errors, actions)
    }

    /// The write of staged commit `id` of `group_id` finished: publish its offsets when it
    /// succeeded (each unless a later commit already set that partition), drop them when it
    /// failed. Unknown groups or ids (unloaded, deleted) are ignored.
    pub fn complete_commit(&mut self, group_id: &str, id: u64, ok: bool) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(staged) = g.pending_commits.remove(&id) else {
            return;
        };
        if !ok {
            return;
        }
        for (tp, value) in staged {
            if g.offset_ids.get(&tp).is_none_or(|&cur| cur < id) {
                g.offset_ids.insert(tp.clone(), id);
                g.offsets.insert(tp, value);
            }
        }
    }

    /// Staged commits not yet completed (for tests and metrics).
    pub fn pending_commit_count(&self, group_id: &str) -> usize {
        self.groups
            .get(group_id)
            .map_or(0, |g| g.pending_commits.len())
    }
}
