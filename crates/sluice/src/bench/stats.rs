//! Counting and latency histograms for `sluice bench`: totals, one HDR histogram for the run
//! and one per one-second window (the progress line and the plot's series).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Kafka's tools divide bytes by 1024 * 1024 for "MB/sec".
pub const MB: f64 = 1024.0 * 1024.0;

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub avg: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            avg: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One progress window (normally one second).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Sample {
    /// Seconds since the start of the run, at the window's end.
    pub t_s: f64,
    pub records: u64,
    /// Records completed in this window.
    pub window_records: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub latency_ms: Latency,
}

/// Totals of a finished run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub records: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub latency_ms: Latency,
    pub series: Vec<Sample>,
}

fn histogram() -> Histogram<u64> {
    // 1 us .. 1 hour at 3 significant digits; values above are clamped by `saturating_record`.
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        Err(_) => Histogram::new(3).unwrap_or_else(|_| unreachable!("3 sigfigs is valid")),
    }
}

/// What one side of a benchmark (producer or consumer) has done so far.
#[derive(Debug)]
pub struct Stats {
    start: Instant,
    last: Option<Instant>,
    records: u64,
    bytes: u64,
    hist: Histogram<u64>,
    window_start: Instant,
    window_records: u64,
    window_bytes: u64,
    window: Histogram<u64>,
    series: Vec<Sample>,
}

impl Stats {
    pub fn new(start: Instant) -> Stats {
        Stats {
            start,
            last: None,
            records: 0,
            bytes: 0,
            hist: histogram(),
            window_start: start,
            window_records: 0,
            window_bytes: 0,
            window: histogram(),
            series: Vec::new(),
        }
    }

    /// `count` records that each took `latency`.
    pub fn latency(&mut self, latency: Duration, count: u64) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.hist.saturating_record_n(us, count);
        self.window.saturating_record_n(us, count);
    }

    /// `records` records of `bytes` payload bytes completed at `now`.
    pub fn done(&mut self, records: u64, bytes: u64, now: Instant) {
        self.records += records;
        self.bytes += bytes;
        self.window_records += records;
        self.window_bytes += bytes;
        self.last = Some(now);
    }

    /// Closes the current window at `now` and returns it.
    pub fn tick(&mut self, now: Instant) -> Sample {
        let secs = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64()
            .max(1e-9);
        let s = Sample {
            t_s: now.saturating_duration_since(self.start).as_secs_f64(),
            records: self.records,
            window_records: self.window_records,
            records_per_sec: self.window_records as f64 / secs,
            mb_per_sec: self.window_bytes as f64 / MB / secs,
            latency_ms: Latency::of(&self.window),
        };
        self.series.push(s);
        self.window_start = now;
        self.window_records = 0;
        self.window_bytes = 0;
        self.window.reset();
        s
    }

    /// The run's totals; the rate is over the time from the start to the last completion.
    pub fn summary(&mut self, now: Instant) -> Summary {
        if self.window_records > 0 || self.series.is_empty() {
            self.tick(now);
        }
        let end = self.last.unwrap_or(now);
        let elapsed = end
            .saturating_duration_since(self.start)
            .as_secs_f64()
            .max(1e-9);
        Summary {
            records: self.records,
            bytes: self.bytes,
            elapsed_s: elapsed,
            records_per_sec: self.records as f64 / elapsed,
            mb_per_sec: self.bytes as f64 / MB / elapsed,
            latency_ms: Latency::of(&self.hist),
            series: self.series.clone(),
        }
    }
}

/// The per-second progress line (Kafka's ProducerPerformance wording).
pub fn progress_line(verb: &str, s: &Sample) -> String {
    format!(
        "{} records {verb}, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
        s.window_records, s.records_per_sec, s.mb_per_sec, s.latency_ms.avg, s.latency_ms.max
    )
}

/// The closing line (Kafka's ProducerPerformance wording, plus p99.9 in ms with decimals).
pub fn summary_line(verb: &str, s: &Summary, what: &str) -> String {
    let l = &s.latency_ms;
    format!(
        "{} records {verb}, {:.1} records/sec ({:.2} MB/sec), {:.2} ms avg {what}, {:.2} ms max {what}, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
        s.records, s.records_per_sec, s.mb_per_sec, l.avg, l.max, l.p50, l.p95, l.p99, l.p999
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_summary_add_up() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        s.latency(Duration::from_millis(2), 90);
        s.latency(Duration::from_millis(20), 10);
        s.done(100, 100 * 1024, t0 + Duration::from_millis(500));
        let w = s.tick(t0 + Duration::from_secs(1));
        assert_eq!(w.records, 100);
        assert!((w.records_per_sec - 100.0).abs() < 1e-6);
        s.latency(Duration::from_millis(2), 100);
        s.done(100, 100 * 1024, t0 + Duration::from_secs(2));
        let sum = s.summary(t0 + Duration::from_secs(3));
        assert_eq!(sum.records, 200);
        assert_eq!(sum.bytes, 200 * 1024);
        assert!((sum.elapsed_s - 2.0).abs() < 1e-6);
        assert!((sum.records_per_sec - 100.0).abs() < 1e-6);
        assert!((sum.latency_ms.p50 - 2.0).abs() < 0.01);
        assert!((sum.latency_ms.p99 - 20.0).abs() < 0.05);
        assert!((sum.latency_ms.max - 20.0).abs() < 0.05);
        assert!(sum.latency_ms.avg > 2.0 && sum.latency_ms.avg < 20.0);
        assert_eq!(sum.series.len(), 2);
        let line = summary_line("sent", &sum, "latency");
        assert!(
            line.starts_with("200 records sent, 100.0 records/sec"),
            "{line}"
        );
    }
}
