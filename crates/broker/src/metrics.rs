//! The broker's metrics, exported on `/metrics` with the Prometheus organisation's
//! `prometheus-client` crate.
//!
//! Two registries make up one scrape:
//! - [`Metrics`] lives as long as the broker and holds what request paths update: atomic
//!   counters and per-API latency histograms in label families. Updating them takes no
//!   broker-wide lock: a family's label map is read-locked (shared) to find the series, a
//!   counter is one atomic add, and a histogram locks only its own series.
//! - [`Scrape`] is built for each scrape from state read at that moment (partition logs,
//!   consumer lag, process figures) and dropped after.
//!
//! Counters are registered without `_total`: the encoder appends it, so exported names are the
//! ones Sluice always had (`sluice_requests_total`, `sluice_bytes_in_total`, ...).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::RwLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the request latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Content type of the Prometheus text format (0.0.4), the default answer.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Content type of the OpenMetrics text format, answered when the scraper asks for it.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: i32,
}

type HistogramFamily = Family<ApiLabels, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The counters of one topic, cloned out of their families (they share the series) so that
/// the produce and fetch paths find all three with one lookup by `&str`.
#[derive(Debug, Clone)]
struct TopicCounters {
    bytes_in: Counter,
    bytes_out: Counter,
    messages_in: Counter,
}

/// Broker-wide metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    /// Currently open client connections.
    pub connections: AtomicI64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Bytes of record batches appended.
    pub bytes_in: AtomicU64,
    /// Bytes of record batches served by Fetch.
    pub bytes_out: AtomicU64,
    messages_in: Counter,
    requests: Family<ApiLabels, Counter>,
    request_duration: HistogramFamily,
    topic_bytes_in: Family<TopicLabels, Counter>,
    topic_bytes_out: Family<TopicLabels, Counter>,
    topic_messages_in: Family<TopicLabels, Counter>,
    topics: RwLock<HashMap<String, TopicCounters>>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let messages_in = Counter::default();
        let requests = Family::<ApiLabels, Counter>::default();
        let request_duration = HistogramFamily::new_with_constructor(request_histogram);
        let topic_bytes_in = Family::<TopicLabels, Counter>::default();
        let topic_bytes_out = Family::<TopicLabels, Counter>::default();
        let topic_messages_in = Family::<TopicLabels, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "sluice_messages_in",
            "Records appended (from each batch header's record count)",
            messages_in.clone(),
        );
        registry.register(
            "sluice_requests",
            "Requests handled, by API",
            requests.clone(),
        );
        registry.register(
            "sluice_request_duration_seconds",
            "Request handling time, by API",
            request_duration.clone(),
        );
        registry.register(
            "sluice_topic_bytes_in",
            "Record bytes appended, by topic",
            topic_bytes_in.clone(),
        );
        registry.register(
            "sluice_topic_bytes_out",
            "Record bytes fetched, by topic",
            topic_bytes_out.clone(),
        );
        registry.register(
            "sluice_topic_messages_in",
            "Records appended, by topic (from each batch header's record count)",
            topic_messages_in.clone(),
        );
        Metrics {
            connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            messages_in,
            requests,
            request_duration,
            topic_bytes_in,
            topic_bytes_out,
            topic_messages_in,
            topics: RwLock::new(HashMap::new()),
            registry,
        }
    }
}

impl Metrics {
    /// Counts one request of `api` that took `secs`.
    pub fn observe_request(&self, api: &'static str, secs: f64) {
        let labels = ApiLabels { api };
        self.requests.get_or_create(&labels).inc();
        self.request_duration.get_or_create(&labels).observe(secs);
    }

    /// Runs `f` on the counters of `topic`, created on first use (the common case takes one
    /// shared read lock and no allocation).
    fn with_topic(&self, topic: &str, f: impl FnOnce(&TopicCounters)) {
        if let Some(c) = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            return f(c);
        }
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        let c = TopicCounters {
            bytes_in: self.topic_bytes_in.get_or_create_owned(&labels),
            bytes_out: self.topic_bytes_out.get_or_create_owned(&labels),
            messages_in: self.topic_messages_in.get_or_create_owned(&labels),
        };
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        f(topics.entry(labels.topic).or_insert(c));
    }

    /// Counts record bytes appended to (`inbound`) or fetched from a topic.
    pub fn topic_bytes(&self, topic: &str, n: u64, inbound: bool) {
        self.with_topic(topic, |c| {
            if inbound {
                c.bytes_in.inc_by(n);
            } else {
                c.bytes_out.inc_by(n);
            }
        });
    }

    /// Counts `records` records appended to `topic` (Kafka's MessagesInPerSec).
    pub fn topic_messages_in(&self, topic: &str, records: i64) {
        let n = u64::try_from(records).unwrap_or(0);
        self.messages_in.inc_by(n);
        self.with_topic(topic, |c| {
            c.messages_in.inc_by(n);
        });
    }

    /// Encodes this broker's metrics followed by the per-scrape ones, in the Prometheus text
    /// format or, with `openmetrics`, in OpenMetrics text.
    pub fn render(&self, scrape: Scrape, openmetrics: bool) -> String {
        let mut now = scrape.registry;
        now.register(
            "sluice_connections",
            "Open client connections",
            ConstGauge::new(self.connections.load(Ordering::Relaxed)),
        );
        now.register(
            "sluice_connections_accepted",
            "Client connections accepted",
            ConstCounter::new(self.connections_total.load(Ordering::Relaxed)),
        );
        now.register(
            "sluice_bytes_in",
            "Record batch bytes appended",
            ConstCounter::new(self.bytes_in.load(Ordering::Relaxed)),
        );
        now.register(
            "sluice_bytes_out",
            "Record batch bytes served by fetch",
            ConstCounter::new(self.bytes_out.load(Ordering::Relaxed)),
        );
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would only cut the text short.
        let _ = if openmetrics {
            use prometheus_client::encoding::text;
            text::encode_registry(&mut out, &now)
                .and_then(|()| text::encode_registry(&mut out, &self.registry))
                .and_then(|()| text::encode_eof(&mut out))
        } else {
            use prometheus_client::encoding::prometheus_text::encode;
            encode(&mut out, &now).and_then(|()| encode(&mut out, &self.registry))
        };
        out
    }
}

/// Gauges read at scrape time: partition logs, consumer groups, process figures.
#[derive(Debug)]
pub struct Scrape {
    registry: Registry,
    log_end_offset: Family<PartitionLabels, Gauge>,
    log_start_offset: Family<PartitionLabels, Gauge>,
    log_size: Family<PartitionLabels, Gauge>,
    log_segments: Family<PartitionLabels, Gauge>,
    group_lag: Family<GroupPartitionLabels, Gauge>,
    group_status: Family<GroupLabels, Gauge>,
}

/// Saturating conversion for gauges, whose values are i64.
fn gauge_value(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

impl Scrape {
    /// A scrape of a broker hosting `partitions` partitions, of which the metadata shows
    /// `offline` without a leader; `under_replicated` and `under_min_isr` count the
    /// partitions led here whose ISR is smaller than their replicas / min.insync.replicas.
    pub fn new(
        partitions: usize,
        offline: usize,
        under_replicated: usize,
        under_min_isr: usize,
    ) -> Scrape {
        let mut registry = Registry::default();
        registry.register(
            "sluice_under_replicated_partitions",
            "Partitions led by this broker whose ISR is smaller than their replica set",
            ConstGauge::new(gauge_value(under_replicated)),
        );
        registry.register(
            "sluice_under_min_isr_partitions",
            "Partitions led by this broker whose ISR is smaller than min.insync.replicas \
             (acks=all writes are refused)",
            ConstGauge::new(gauge_value(under_min_isr)),
        );
        registry.register(
            "sluice_offline_partitions",
            "Partitions without a leader in this broker's view of the cluster metadata \
             (the same figure on every broker: aggregate with max, not sum)",
            ConstGauge::new(gauge_value(offline)),
        );
        registry.register(
            "sluice_partitions",
            "Partitions hosted by this broker",
            ConstGauge::new(gauge_value(partitions)),
        );
        let mut s = Scrape {
            log_end_offset: Family::default(),
            log_start_offset: Family::default(),
            log_size: Family::default(),
            log_segments: Family::default(),
            group_lag: Family::default(),
            group_status: Family::default(),
            registry,
        };
        let families: [(&str, &str, Family<PartitionLabels, Gauge>); 4] = [
            (
                "sluice_log_end_offset",
                "Next offset of each partition",
                s.log_end_offset.clone(),
            ),
            (
                "sluice_log_start_offset",
                "First offset of each partition",
                s.log_start_offset.clone(),
            ),
            (
                "sluice_log_size_bytes",
                "Bytes on disk of each partition log",
                s.log_size.clone(),
            ),
            (
                "sluice_log_segments",
                "Segment count of each partition log",
                s.log_segments.clone(),
            ),
        ];
        for (name, help, fam) in families {
            s.registry.register(name, help, fam);
        }
        s.registry.register(
            "sluice_group_lag",
            "Committed-offset lag of a consumer group on a partition",
            s.group_lag.clone(),
        );
        s.registry.register(
            "sluice_group_status",
            "Consumer group status: 0 OK, 1 WARNING, 2 STALLED, 3 STOPPED, 4 ERROR",
            s.group_status.clone(),
        );
        crate::alloc_stats::register(&mut s.registry);
        s
    }

    /// Records one partition log's offsets, size and segment count.
    pub fn partition(
        &self,
        topic: &str,
        partition: i32,
        start: i64,
        end: i64,
        size: u64,
        segments: usize,
    ) {
        let l = PartitionLabels {
            topic: topic.to_string(),
            partition,
        };
        self.log_end_offset.get_or_create(&l).set(end);
        self.log_start_offset.get_or_create(&l).set(start);
        self.log_size.get_or_create(&l).set(gauge_value(size));
        self.log_segments
            .get_or_create(&l)
            .set(gauge_value(segments));
    }

    /// Records a consumer group's lag on one partition.
    pub fn group_lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        let l = GroupPartitionLabels {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        };
        self.group_lag.get_or_create(&l).set(lag);
    }

    /// Records a consumer group's status code.
    pub fn group_status(&self, group: &str, code: i64) {
        let l = GroupLabels {
            group: group.to_string(),
        };
        self.group_status.get_or_create(&l).set(code);
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
        let text = m.render(Scrape::new(0, 0, 0, 0), false);
        assert!(text
            .contains("sluice_request_duration_seconds_bucket{api=\"Produce\",le=\"0.00025\"} 1"));
        assert!(
            text.contains("sluice_request_duration_seconds_bucket{api=\"Produce\",le=\"0.5\"} 2")
        );
        assert!(
            text.contains("sluice_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 2")
        );
        assert!(text.contains("sluice_request_duration_seconds_count{api=\"Produce\"} 2"));
        assert!(text.contains("sluice_requests_total{api=\"Produce\"} 2"));
        assert!(text.contains("sluice_topic_bytes_in_total{topic=\"t\"} 10"));
        assert!(text.contains("sluice_topic_bytes_out_total{topic=\"t\"} 4"));
    }

    #[test]
    fn counters_increase_and_names_are_kept() {
        let m = Metrics::default();
        m.connections.fetch_add(2, Ordering::Relaxed);
        m.connections_total.fetch_add(3, Ordering::Relaxed);
        m.bytes_in.fetch_add(100, Ordering::Relaxed);
        m.topic_messages_in("a", 5);
        m.topic_messages_in("a", 7);
        m.topic_messages_in("b", 1);
        let s = Scrape::new(2, 1, 0, 0);
        s.partition("a", 0, 1, 12, 4096, 1);
        s.group_lag("g", "a", 0, 3);
        s.group_status("g", 0);
        let text = m.render(s, false);
        for line in [
            "sluice_connections 2\n",
            "# TYPE sluice_connections_accepted_total counter\n",
            "sluice_connections_accepted_total 3\n",
            "sluice_bytes_in_total 100\n",
            "sluice_bytes_out_total 0\n",
            "sluice_messages_in_total 13\n",
            "sluice_topic_messages_in_total{topic=\"a\"} 12\n",
            "sluice_topic_messages_in_total{topic=\"b\"} 1\n",
            "sluice_partitions 2\n",
            "sluice_offline_partitions 1\n",
            "sluice_under_replicated_partitions 0\n",
            "sluice_log_end_offset{topic=\"a\",partition=\"0\"} 12\n",
            "sluice_log_start_offset{topic=\"a\",partition=\"0\"} 1\n",
            "sluice_log_size_bytes{topic=\"a\",partition=\"0\"} 4096\n",
            "sluice_log_segments{topic=\"a\",partition=\"0\"} 1\n",
            "sluice_group_lag{group=\"g\",topic=\"a\",partition=\"0\"} 3\n",
            "sluice_group_status{group=\"g\"} 0\n",
            "# HELP sluice_connections Open client connections.\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        #[cfg(target_os = "linux")]
        assert!(text.contains("sluice_process_open_fds "));
        assert!(!text.contains("_total_total"));
    }

    #[test]
    fn openmetrics_ends_with_eof_and_escapes_labels() {
        let m = Metrics::default();
        m.topic_bytes("we\"ird\\t\nopic", 1, true);
        m.observe_request("Fetch", 0.01);
        let text = m.render(Scrape::new(0, 0, 0, 0), true);
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.contains("sluice_topic_bytes_in_total{topic=\"we\\\"ird\\\\t\\nopic\"} 1"));
        assert!(text.contains("# TYPE sluice_requests counter\n"));
        assert!(text.contains("sluice_requests_total{api=\"Fetch\"} 1\n"));
        let prom = m.render(Scrape::new(0, 0, 0, 0), false);
        assert!(!prom.contains("# EOF"));
        assert!(prom.contains("# TYPE sluice_requests_total counter\n"));
        assert!(prom.contains("sluice_topic_bytes_in_total{topic=\"we\\\"ird\\\\t\\nopic\"} 1"));
    }
}
