//! The process's allocator, chosen on purpose: jemalloc (through `tikv-jemallocator`).
//!
//! Why: glibc malloc grows per-thread arenas and keeps freed memory at the whim of its
//! trimming heuristics, so the broker's RSS stepped by ~16 MB at rounds nobody could predict.
//! jemalloc gives a bounded number of arenas, returns freed pages to the OS on a time-based
//! decay (done by a background thread, not on the request path), and exposes exact statistics
//! (`allocated`, `active`, `resident`, `retained`) that `/metrics` publishes and that the soak
//! test judges leaks by.
//!
//! The configuration is compiled in through jemalloc's `malloc_conf` symbol (prefixed `_rjem_`
//! by tikv-jemalloc-sys); `_RJEM_MALLOC_CONF` in the environment overrides it at run time.

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc options: a background thread purges unused dirty pages after ~1 s
/// (`dirty_decay_ms`) and releases them to the OS at once after that (`muzzy_decay_ms:0`), so
/// memory freed after a burst leaves the process within seconds instead of lingering.
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Registers jemalloc's statistics with the broker's `/metrics`.
pub fn register_stats() {
    #[cfg(not(target_env = "msvc"))]
    sluice_broker::set_allocator_stats("jemalloc", read_stats);
}

#[cfg(not(target_env = "msvc"))]
fn read_stats() -> Option<sluice_broker::AllocatorStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // Statistics are a snapshot taken when the epoch advances.
    epoch::advance().ok()?;
    Some(sluice_broker::AllocatorStats {
        allocated: stats::allocated::read().ok()? as u64,
        active: stats::active::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
        mapped: stats::mapped::read().ok()? as u64,
        retained: stats::retained::read().ok()? as u64,
        metadata: stats::metadata::read().ok()? as u64,
    })
}

#[cfg(all(test, not(target_env = "msvc")))]
mod tests {
    #[test]
    fn jemalloc_is_the_allocator_and_reports_stats() {
        let before = super::read_stats().expect("jemalloc stats");
        let big = vec![7u8; 8 << 20];
        let during = super::read_stats().expect("jemalloc stats");
        assert!(
            during.allocated >= before.allocated + (8 << 20) - (1 << 20),
            "an 8 MiB vector must show in jemalloc's allocated bytes: {before:?} -> {during:?}"
        );
        assert!(during.resident >= during.active && during.active >= during.allocated);
        drop(big);
        let background: bool = tikv_jemalloc_ctl::background_thread::read().expect("read");
        assert!(
            background,
            "malloc_conf must enable the background purge thread"
        );
    }
}
