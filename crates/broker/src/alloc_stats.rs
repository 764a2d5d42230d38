//! Memory figures from the process's allocator, for `/metrics`.
//!
//! The broker crate does not choose the allocator: the `sluice` binary does (jemalloc) and
//! registers a reader here with [`set_allocator_stats`]. Embedders and tests that keep the
//! system allocator register nothing, and `/metrics` then shows only the process figures
//! (resident memory, open and maximum file descriptors).

use std::sync::OnceLock;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// One reading of the allocator's own statistics, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes handed out to the program and not yet freed.
    pub allocated: u64,
    /// Bytes in pages the allocator has in use for those allocations (allocated plus
    /// fragmentation inside active pages).
    pub active: u64,
    /// Bytes of physically resident pages the allocator maps (data and its own metadata).
    pub resident: u64,
    /// Bytes of virtual memory mapped by the allocator.
    pub mapped: u64,
    /// Bytes of virtual memory kept mapped but returned to the OS (not resident).
    pub retained: u64,
    /// Bytes used by the allocator's own bookkeeping.
    pub metadata: u64,
}

/// A function that reads the allocator's statistics; `None` when they are unavailable.
pub type AllocatorStatsFn = fn() -> Option<AllocatorStats>;

static READER: OnceLock<(&'static str, AllocatorStatsFn)> = OnceLock::new();

/// Registers the allocator's name and a reader of its statistics (first call wins).
pub fn set_allocator_stats(name: &'static str, reader: AllocatorStatsFn) {
    let _ = READER.set((name, reader));
}

/// The registered allocator's name and a fresh reading, if one is registered and readable.
pub fn read() -> Option<(&'static str, AllocatorStats)> {
    let (name, f) = READER.get()?;
    f().map(|s| (*name, s))
}

/// Resident set size of this process in bytes, from `/proc/self/statm` (Linux); `None`
/// elsewhere or when it cannot be read.
pub fn process_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096);
    Some(pages.saturating_mul(page))
}

/// Open file descriptors of this process, from `/proc/self/fd` (Linux); `None` elsewhere or
/// when it cannot be read.
pub fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    // The listing includes the descriptor that reads it.
    Some(u64::try_from(n.saturating_sub(1)).unwrap_or(u64::MAX))
}

/// The soft limit on open file descriptors (`RLIMIT_NOFILE`); `None` when unlimited or
/// unreadable.
pub fn max_fds() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and has no other preconditions.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if rc != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    // rlim_t is u64 on Linux but not on every platform.
    #[allow(clippy::useless_conversion)]
    u64::try_from(r.rlim_cur).ok()
}

fn gauge(v: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Registers the process gauges (resident memory, file descriptors) and the allocator gauges
/// read now.
pub fn register(reg: &mut Registry) {
    if let Some(rss) = process_rss_bytes() {
        reg.register(
            "sluice_process_resident_memory_bytes",
            "Resident set size of the broker process",
            gauge(rss),
        );
    }
    if let Some(n) = open_fds() {
        reg.register(
            "sluice_process_open_fds",
            "Open file descriptors of the broker process",
            gauge(n),
        );
    }
    if let Some(n) = max_fds() {
        reg.register(
            "sluice_process_max_fds",
            "Limit on open file descriptors of the broker process (RLIMIT_NOFILE soft limit)",
            gauge(n),
        );
    }
    let Some((name, s)) = read() else {
        return;
    };
    let gauges: [(&str, &str, u64); 6] = [
        (
            "allocated",
            "Bytes allocated by the broker and not yet freed",
            s.allocated,
        ),
        (
            "active",
            "Bytes in active allocator pages (allocated plus page fragmentation)",
            s.active,
        ),
        (
            "resident",
            "Bytes of resident memory mapped by the allocator",
            s.resident,
        ),
        (
            "mapped",
            "Bytes of virtual memory mapped by the allocator",
            s.mapped,
        ),
        (
            "retained",
            "Bytes of virtual memory the allocator keeps mapped but returned to the OS",
            s.retained,
        ),
        (
            "metadata",
            "Bytes of the allocator's own bookkeeping",
            s.metadata,
        ),
    ];
    for (what, help, v) in gauges {
        let fam = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        fam.get_or_create(&[("allocator", name)])
            .set(i64::try_from(v).unwrap_or(i64::MAX));
        reg.register(format!("sluice_allocator_{what}_bytes"), help, fam);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> Option<AllocatorStats> {
        Some(AllocatorStats {
            allocated: 1,
            active: 2,
            resident: 3,
            mapped: 4,
            retained: 5,
            metadata: 6,
        })
    }

    #[test]
    fn registered_reader_is_rendered() {
        set_allocator_stats("fake", fake);
        let mut reg = Registry::default();
        register(&mut reg);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("sluice_allocator_allocated_bytes{allocator=\"fake\"} 1"));
        assert!(out.contains("sluice_allocator_retained_bytes{allocator=\"fake\"} 5"));
        assert!(out.contains("# TYPE sluice_allocator_retained_bytes gauge"));
        assert!(out.contains("sluice_process_resident_memory_bytes "));
        assert!(process_rss_bytes().is_some_and(|r| r > 0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn file_descriptors_are_counted() {
        // At least stdin, stdout and stderr, and never more than the limit.
        let open = open_fds().unwrap();
        assert!(open >= 3, "{open}");
        assert!(max_fds().is_none_or(|max| open <= max));
    }
}
