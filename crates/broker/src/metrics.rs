//! Counters exported on `/metrics` in Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Broker-wide counters. Cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Currently open client connections.
    pub connections: AtomicI64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Bytes of record batches appended.
    pub bytes_in: AtomicU64,
    /// Bytes of record batches served by Fetch.
    pub bytes_out: AtomicU64,
    requests: Mutex<BTreeMap<&'static str, (u64, f64)>>,
}

impl Metrics {
    /// Counts one request of `api` that took `secs`.
    pub fn observe_request(&self, api: &'static str, secs: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(api).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += secs;
    }

    /// Renders the counters plus per-partition gauges given by the caller.
    pub fn render(&self, partitions: &[(String, i32, i64, i64, u64, usize)]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP sluice_connections Open client connections.");
        let _ = writeln!(out, "# TYPE sluice_connections gauge");
        let _ = writeln!(
            out,
            "sluice_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sluice_connections_accepted_total Client connections accepted."
        );
        let _ = writeln!(out, "# TYPE sluice_connections_accepted_total counter");
        let _ = writeln!(
            out,
            "sluice_connections_accepted_total {}",
            self.connections_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sluice_bytes_in_total Record batch bytes appended."
        );
        let _ = writeln!(out, "# TYPE sluice_bytes_in_total counter");
        let _ = writeln!(
            out,
            "sluice_bytes_in_total {}",
            self.bytes_in.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sluice_bytes_out_total Record batch bytes served by fetch."
        );
        let _ = writeln!(out, "# TYPE sluice_bytes_out_total counter");
        let _ = writeln!(
            out,
            "sluice_bytes_out_total {}",
            self.bytes_out.load(Ordering::Relaxed)
        );
        let reqs = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let _ = writeln!(
            out,
            "# HELP sluice_requests_total Requests handled, by API."
        );
        let _ = writeln!(out, "# TYPE sluice_requests_total counter");
        for (api, (n, _)) in &reqs {
            let _ = writeln!(out, "sluice_requests_total{{api=\"{api}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP sluice_request_seconds_total Time spent handling requests, by API."
        );
        let _ = writeln!(out, "# TYPE sluice_request_seconds_total counter");
        for (api, (_, s)) in &reqs {
            let _ = writeln!(out, "sluice_request_seconds_total{{api=\"{api}\"}} {s}");
        }
        let _ = writeln!(
            out,
            "# HELP sluice_partitions Partitions hosted by this broker."
        );
        let _ = writeln!(out, "# TYPE sluice_partitions gauge");
        let _ = writeln!(out, "sluice_partitions {}", partitions.len());
        let _ = writeln!(
            out,
            "# HELP sluice_log_end_offset Next offset of each partition."
        );
        let _ = writeln!(out, "# TYPE sluice_log_end_offset gauge");
        for (t, p, _, end, _, _) in partitions {
            let _ = writeln!(
                out,
                "sluice_log_end_offset{{topic=\"{t}\",partition=\"{p}\"}} {end}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP sluice_log_start_offset First offset of each partition."
        );
        let _ = writeln!(out, "# TYPE sluice_log_start_offset gauge");
        for (t, p, start, _, _, _) in partitions {
            let _ = writeln!(
                out,
                "sluice_log_start_offset{{topic=\"{t}\",partition=\"{p}\"}} {start}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP sluice_log_size_bytes Bytes on disk of each partition log."
        );
        let _ = writeln!(out, "# TYPE sluice_log_size_bytes gauge");
        for (t, p, _, _, size, _) in partitions {
            let _ = writeln!(
                out,
                "sluice_log_size_bytes{{topic=\"{t}\",partition=\"{p}\"}} {size}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP sluice_log_segments Segment count of each partition log."
        );
        let _ = writeln!(out, "# TYPE sluice_log_segments gauge");
        for (t, p, _, _, _, segs) in partitions {
            let _ = writeln!(
                out,
                "sluice_log_segments{{topic=\"{t}\",partition=\"{p}\"}} {segs}"
            );
        }
        out
    }
}
