//! Memory figures from the process's allocator, for `/metrics`.
//!
//! The broker crate does not choose the allocator: the `sluice` binary does (jemalloc) and
//! registers a reader here with [`set_allocator_stats`]. Embedders and tests that keep the
//! system allocator register nothing, and `/metrics` then shows only the process RSS.

use std::sync::OnceLock;

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

/// Appends the allocator gauges (and the process RSS) in Prometheus text format.
pub fn render(out: &mut String) {
    use std::fmt::Write;
    if let Some(rss) = process_rss_bytes() {
        let _ = writeln!(
            out,
            "# HELP sluice_process_resident_memory_bytes Resident set size of the broker process."
        );
        let _ = writeln!(out, "# TYPE sluice_process_resident_memory_bytes gauge");
        let _ = writeln!(out, "sluice_process_resident_memory_bytes {rss}");
    }
    let Some((name, s)) = read() else {
        return;
    };
    let gauges: [(&str, &str, u64); 6] = [
        (
            "allocated",
            "Bytes allocated by the broker and not yet freed.",
            s.allocated,
        ),
        (
            "active",
            "Bytes in active allocator pages (allocated plus page fragmentation).",
            s.active,
        ),
        (
            "resident",
            "Bytes of resident memory mapped by the allocator.",
            s.resident,
        ),
        (
            "mapped",
            "Bytes of virtual memory mapped by the allocator.",
            s.mapped,
        ),
        (
            "retained",
            "Bytes of virtual memory the allocator keeps mapped but returned to the OS.",
            s.retained,
        ),
        (
            "metadata",
            "Bytes of the allocator's own bookkeeping.",
            s.metadata,
        ),
    ];
    for (what, help, v) in gauges {
        let _ = writeln!(out, "# HELP sluice_allocator_{what}_bytes {help}");
        let _ = writeln!(out, "# TYPE sluice_allocator_{what}_bytes gauge");
        let _ = writeln!(
            out,
            "sluice_allocator_{what}_bytes{{allocator=\"{name}\"}} {v}"
        );
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
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("sluice_allocator_allocated_bytes{allocator=\"fake\"} 1"));
        assert!(out.contains("sluice_allocator_retained_bytes{allocator=\"fake\"} 5"));
        assert!(out.contains("sluice_process_resident_memory_bytes "));
        assert!(process_rss_bytes().is_some_and(|r| r > 0));
    }
}
