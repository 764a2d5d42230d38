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
    requests: Mutex<BTreeMap<&'static str, Histogram>>,
    topic_bytes: Mutex<BTreeMap<String, (u64, u64)>>,
}

/// Upper bounds (seconds) of the request latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Counts one request of `api` that took `secs`.
    pub fn observe_request(&self, api: &'static str, secs: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let h = m.entry(api).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
    }

    /// Counts record bytes appended to (`inbound`) or fetched from a topic.
    pub fn topic_bytes(&self, topic: &str, n: u64, inbound: bool) {
        let mut m = self.topic_bytes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = m.get_mut(topic) {
            if inbound {
                e.0 += n;
            } else {
                e.1 += n;
            }
            return;
        }
        m.insert(topic.to_string(), if inbound { (n, 0) } else { (0, n) });
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
        for (api, h) in &reqs {
            let _ = writeln!(out, "sluice_requests_total{{api=\"{api}\"}} {}", h.count);
        }
        let _ = writeln!(
            out,
            "# HELP sluice_request_duration_seconds Request handling time, by API."
        );
        let _ = writeln!(out, "# TYPE sluice_request_duration_seconds histogram");
        for (api, h) in &reqs {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "sluice_request_duration_seconds_bucket{{api=\"{api}\",le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "sluice_request_duration_seconds_bucket{{api=\"{api}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "sluice_request_duration_seconds_sum{{api=\"{api}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "sluice_request_duration_seconds_count{{api=\"{api}\"}} {}",
                h.count
            );
        }
        let tb = self
            .topic_bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let _ = writeln!(
            out,
            "# HELP sluice_topic_bytes_in_total Record bytes appended, by topic."
        );
        let _ = writeln!(out, "# TYPE sluice_topic_bytes_in_total counter");
        for (t, (i, _)) in &tb {
            let _ = writeln!(out, "sluice_topic_bytes_in_total{{topic=\"{t}\"}} {i}");
        }
        let _ = writeln!(
            out,
            "# HELP sluice_topic_bytes_out_total Record bytes fetched, by topic."
        );
        let _ = writeln!(out, "# TYPE sluice_topic_bytes_out_total counter");
        for (t, (_, o)) in &tb {
            let _ = writeln!(out, "sluice_topic_bytes_out_total{{topic=\"{t}\"}} {o}");
        }
        let _ = writeln!(out, "# HELP sluice_under_replicated_partitions Partitions with fewer in-sync replicas than replicas (always 0 on one node).");
        let _ = writeln!(out, "# TYPE sluice_under_replicated_partitions gauge");
        let _ = writeln!(out, "sluice_under_replicated_partitions 0");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_request("Produce", 0.0002);
        m.observe_request("Produce", 0.3);
        m.topic_bytes("t", 10, true);
        m.topic_bytes("t", 4, false);
        let text = m.render(&[]);
        assert!(text
            .contains("sluice_request_duration_seconds_bucket{api=\"Produce\",le=\"0.00025\"} 1"));
        assert!(
            text.contains("sluice_request_duration_seconds_bucket{api=\"Produce\",le=\"0.5\"} 2")
        );
        assert!(text.contains("sluice_request_duration_seconds_count{api=\"Produce\"} 2"));
        assert!(text.contains("sluice_topic_bytes_in_total{topic=\"t\"} 10"));
        assert!(text.contains("sluice_topic_bytes_out_total{topic=\"t\"} 4"));
    }
}
