//! Producer id allocation for idempotent producers.
//!
//! Ids are handed out from blocks reserved durably in `<data>/producer-id-block`: the file holds
//! the first id *not yet reserved*; reserving a block writes the new bound (fsync) before any id
//! of it is handed out, so an id is never reused across restarts.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::dirs::write_atomically;
use crate::BrokerError;

const BLOCK: i64 = 1000;

#[derive(Debug)]
struct Inner {
    next: i64,
    reserved_to: i64,
}

/// Durable producer id allocator.
#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl ProducerIds {
    /// Loads the allocator state from `dir`.
    pub fn open(dir: &std::path::Path) -> Result<ProducerIds, BrokerError> {
        let path = dir.join("producer-id-block");
        let start = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i64>().unwrap_or(0).max(0),
            Err(_) => 0,
        };
        Ok(ProducerIds {
            path,
            inner: Mutex::new(Inner {
                next: start,
                reserved_to: start,
            }),
        })
    }

    /// Allocates a fresh producer id.
    pub fn allocate(&self) -> Result<i64, BrokerError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.next >= g.reserved_to {
            let new_bound = g.next + BLOCK;
            write_atomically(&self.path, new_bound.to_string().as_bytes())?;
            g.reserved_to = new_bound;
        }
        let id = g.next;
        g.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_repeat_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIds::open(dir.path()).unwrap();
        let x = a.allocate().unwrap();
        let y = a.allocate().unwrap();
        assert_eq!(y, x + 1);
        drop(a);
        let b = ProducerIds::open(dir.path()).unwrap();
        let z = b.allocate().unwrap();
        assert!(z > y, "{z} must be above {y}");
    }
}
