//! The broker-wide memory pool (Kafka's `queued.max.request.bytes`): the bytes of requests
//! being read and of fetch responses being assembled or waiting to be written are leased from
//! one pool of fixed size, so a client cannot make the broker allocate more by opening more
//! connections, declaring huge frames or asking for huge fetches.
//!
//! - A request's body larger than [`SMALL_FRAME`] is leased from the request pool before it is
//!   read: while the pool cannot give the declared length, the connection is simply not read
//!   from (TCP pushes back on the sender). A frame larger than the whole pool is still admitted
//!   when the pool is empty, so a request up to `socket.request.max.bytes` always gets through
//!   eventually. Small frames (every ordinary request) are not held up by large ones waiting,
//!   and a frame that is not complete within `connections.max.idle.ms` closes its connection.
//! - A fetch leases what it reads, partition by partition, from a second pool of the same size
//!   (so slow senders of large requests never starve consumers); a fetch that finds it empty
//!   is answered smaller (or empty, after its wait) instead of allocating. The lease travels
//!   with the encoded response to the connection's writer and ends when it is written.

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

tokio::task_local! {
    /// Leases taken while a request is handled that must live until its response is written.
    static RESPONSE_LEASES: RefCell<Vec<Lease>>;
}

/// Runs a request handler and collects the leases it handed to [`hold_until_written`].
pub async fn collect_leases<F: Future>(f: F) -> (F::Output, Vec<Lease>) {
    RESPONSE_LEASES
        .scope(RefCell::new(Vec::new()), async {
            let out = f.await;
            let leases = RESPONSE_LEASES.with(|l| l.take());
            (out, leases)
        })
        .await
}

/// Keeps `leases` until the response of the request being handled is written (dropped at
/// once outside [`collect_leases`], e.g. for a forwarded request).
pub fn hold_until_written(leases: Vec<Lease>) {
    let _ = RESPONSE_LEASES.try_with(|l| l.borrow_mut().extend(leases));
}

/// The pool size from `queued.max.request.bytes` (-1 or unset: [`default_pool_bytes`]).
pub fn pool_bytes(settings: &sluice_controller::BrokerSettings) -> usize {
    let max_request = usize::try_from(settings.socket_request_max_bytes().max(1)).unwrap_or(1);
    match settings.get_i64("queued.max.request.bytes") {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => default_pool_bytes(max_request),
    }
}

/// Frames up to this size are read without a lease (a connection holds at most one).
pub const SMALL_FRAME: usize = 64 * 1024;

/// A fixed-size pool of bytes.
pub struct MemoryPool {
    capacity: usize,
    used: Mutex<usize>,
    freed: Notify,
}

/// Bytes leased from a [`MemoryPool`], given back when dropped.
pub struct Lease {
    pool: Arc<MemoryPool>,
    bytes: usize,
}

impl Lease {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives back what is held beyond `keep` bytes (a read that used less than it leased).
    pub fn shrink_to(&mut self, keep: usize) {
        if keep < self.bytes {
            self.pool.release(self.bytes - keep);
            self.bytes = keep;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.pool.release(self.bytes);
        }
    }
}

impl MemoryPool {
    /// A pool of `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> Arc<MemoryPool> {
        Arc::new(MemoryPool {
            capacity: capacity.max(1),
            used: Mutex::new(0),
            freed: Notify::new(),
        })
    }

    /// Bytes leased now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, n: usize) {
        {
            let mut used = self.lock();
            *used = used.saturating_sub(n);
        }
        self.freed.notify_waiters();
    }

    /// Leases `n` bytes if they fit now (or, for `n` above the capacity, if the pool is
    /// empty).
    pub fn try_acquire(self: &Arc<Self>, n: usize) -> Option<Lease> {
        let mut used = self.lock();
        let fits = used.checked_add(n).is_some_and(|t| t <= self.capacity);
        if fits || (*used == 0 && n > self.capacity) {
            *used = used.saturating_add(n);
            Some(Lease {
                pool: self.clone(),
                bytes: n,
            })
        } else {
            None
        }
    }

    /// Leases `n` bytes, waiting until they fit.
    pub async fn acquire(self: &Arc<Self>, n: usize) -> Lease {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(l) = self.try_acquire(n) {
                return l;
            }
            freed.await;
        }
    }

    /// Leases up to `want` bytes: what is free now, possibly nothing.
    pub fn acquire_up_to(self: &Arc<Self>, want: usize) -> Lease {
        let mut used = self.lock();
        let n = want.min(self.capacity.saturating_sub(*used));
        *used = used.saturating_add(n);
        Lease {
            pool: self.clone(),
            bytes: n,
        }
    }
}

/// The default pool size: an eighth of the machine's memory, between 64 MiB and 1 GiB, and at
/// least one largest request (`socket.request.max.bytes`).
pub fn default_pool_bytes(socket_request_max_bytes: usize) -> usize {
    const MIB: usize = 1024 * 1024;
    let eighth = physical_memory_bytes().map_or(512 * MIB, |m| m / 8);
    eighth
        .clamp(64 * MIB, 1024 * MIB)
        .max(socket_request_max_bytes)
}

/// Total memory of the machine (Linux `/proc/meminfo`), if known.
fn physical_memory_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn leases_are_bounded_and_given_back() {
        let pool = MemoryPool::new(100);
        let a = pool.try_acquire(60).unwrap();
        assert!(pool.try_acquire(50).is_none());
        let mut b = pool.acquire_up_to(50);
        assert_eq!(b.bytes(), 40);
        assert_eq!(pool.acquire_up_to(10).bytes(), 0);
        b.shrink_to(10);
        assert_eq!(pool.used(), 70);
        drop(a);
        drop(b);
        assert_eq!(pool.used(), 0);
        // Oversized requests get through alone.
        let big = pool.try_acquire(500).unwrap();
        assert!(pool.try_acquire(1).is_none());
        drop(big);
        assert!(pool.try_acquire(1).is_some());
    }

    #[tokio::test]
    async fn acquire_waits_for_a_release() {
        let pool = MemoryPool::new(100);
        let held = pool.try_acquire(80).unwrap();
        let p = pool.clone();
        let waiter = tokio::spawn(async move { p.acquire(50).await.bytes() });
        // The test runtime has one thread: yielding lets the waiter run until it blocks,
        // however slow the machine.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !waiter.is_finished(),
            "50 bytes do not fit while 80 are leased"
        );
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released bytes wake the waiter")
            .unwrap();
        assert_eq!(got, 50);
    }

    #[test]
    fn default_size_is_bounded() {
        let d = default_pool_bytes(100 * 1024 * 1024);
        assert!((100 * 1024 * 1024..=1024 * 1024 * 1024).contains(&d));
    }
}
