//! Background log maintenance: time/size retention, `flush.ms`, and the compaction cleaner.
//!
//! Both loops run on blocking threads (storage is synchronous) and never hold broker locks
//! while they do I/O; a partition being cleaned keeps serving produce and fetch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_storage::CleanOptions;
use tokio::sync::watch;

use crate::partition::Partition;
use crate::state::Broker;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn setting_ms(broker: &Broker, name: &str, default: i64) -> Duration {
    let v = broker.config.settings.get_i64(name).unwrap_or(default);
    Duration::from_millis(v.max(10) as u64)
}

/// Starts the retention/flush loop and the cleaner. They stop when `stop` turns true.
pub fn spawn(broker: Arc<Broker>, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let b = broker.clone();
    let mut rx = stop.clone();
    tasks.push(tokio::spawn(async move {
        let every = setting_ms(&b, "log.retention.check.interval.ms", 300_000);
        let flush_every = setting_ms(&b, "log.flush.scheduler.interval.ms", 1_000);
        let mut next_retention = tokio::time::Instant::now() + every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(flush_every.min(every)) => {}
                _ = rx.wait_for(|s| *s) => return,
            }
            let b2 = b.clone();
            let run_retention = tokio::time::Instant::now() >= next_retention;
            if run_retention {
                next_retention = tokio::time::Instant::now() + every;
            }
            let _ = tokio::task::spawn_blocking(move || {
                flush_and_retain(&b2, run_retention);
            })
            .await;
        }
    }));
    let b = broker;
    let mut rx = stop;
    tasks.push(tokio::spawn(async move {
        let enabled = b
            .config
            .settings
            .get_bool("log.cleaner.enable")
            .unwrap_or(true);
        if !enabled {
            return;
        }
        let backoff = setting_ms(&b, "log.cleaner.backoff.ms", 15_000);
        let dirty_since = Arc::new(std::sync::Mutex::new(DirtySince::new()));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = rx.wait_for(|s| *s) => return,
            }
            let b2 = b.clone();
            let ds = dirty_since.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let mut ds = ds.lock().unwrap_or_else(|p| p.into_inner());
                clean_dirtiest(&b2, &mut ds)
            })
            .await;
        }
    }));
    tasks
}

/// Applies `flush.ms` to every log and, when due, retention to `delete`-policy topics.
pub fn flush_and_retain(broker: &Broker, retention: bool) {
    let now = now_ms();
    for h in broker.all_partitions() {
        if let Err(e) = h.log.maybe_flush() {
            tracing::error!(topic = %h.topic, partition = h.index, "flush failed: {e}");
        }
        if !retention {
            continue;
        }
        let cfg = h.config();
        if !cfg.cleanup_delete {
            continue;
        }
        let ms = (cfg.retention_ms >= 0).then_some(cfg.retention_ms);
        let bytes = (cfg.retention_bytes >= 0).then_some(cfg.retention_bytes);
        if ms.is_none() && bytes.is_none() {
            continue;
        }
        match h.log.enforce_retention(now, ms, bytes) {
            Ok(out) if out.segments_deleted > 0 => tracing::info!(
                topic = %h.topic,
                partition = h.index,
                segments = out.segments_deleted,
                bytes = out.bytes_deleted,
                log_start_offset = out.log_start_offset,
                "retention deleted old segments"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(topic = %h.topic, partition = h.index, "retention failed: {e}")
            }
        }
    }
}

/// When each compacted partition was first seen with cleanable (dirty) data since its last
/// clean, for `max.compaction.lag.ms`.
pub type DirtySince = HashMap<(String, i32), i64>;

/// Cleans one compacted log: one whose dirty data has waited longer than its
/// `max.compaction.lag.ms` if any (oldest first), else the one with the highest dirty ratio at
/// or above its `min.cleanable.dirty.ratio`. Returns true when a log was cleaned.
pub fn clean_dirtiest(broker: &Broker, dirty_since: &mut DirtySince) -> bool {
    let now = now_ms();
    // (overdue, -since or ratio) ordering: overdue logs first, then by dirty ratio.
    let mut best: Option<(bool, f64, Arc<Partition>)> = None;
    let mut seen = std::collections::HashSet::new();
    for h in broker.all_partitions() {
        let cfg = h.config();
        if !cfg.cleanup_compact {
            continue;
        }
        let key = (h.topic.clone(), h.index);
        seen.insert(key.clone());
        let info = h.log.cleanable_info(now, cfg.min_compaction_lag_ms);
        if info.cleanable_bytes == 0 {
            dirty_since.remove(&key);
            continue;
        }
        let since = *dirty_since.entry(key).or_insert(now);
        let max_lag = cfg.max_compaction_lag_ms;
        let overdue = max_lag > 0 && max_lag < i64::MAX && now.saturating_sub(since) >= max_lag;
        if !overdue && info.dirty_ratio < cfg.min_cleanable_dirty_ratio {
            continue;
        }
        let score = if overdue {
            (now - since) as f64
        } else {
            info.dirty_ratio
        };
        let better = match &best {
            None => true,
            Some((o, s, _)) => (overdue && !*o) || (overdue == *o && score > *s),
        };
        if better {
            best = Some((overdue, score, h));
        }
    }
    dirty_since.retain(|k, _| seen.contains(k));
    let Some((overdue, score, h)) = best else {
        return false;
    };
    let ratio = if overdue { -1.0 } else { score };
    let cfg = h.config();
    let max_bytes_per_sec = broker
        .config
        .settings
        .effective("log.cleaner.io.max.bytes.per.second")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 1e15)
        .map(|v| v as u64);
    let opts = CleanOptions {
        now_ms: now,
        delete_retention_ms: cfg.delete_retention_ms,
        min_compaction_lag_ms: cfg.min_compaction_lag_ms,
        max_bytes_per_sec,
    };
    match h.log.clean(&opts) {
        Ok(stats) => {
            dirty_since.remove(&(h.topic.clone(), h.index));
            tracing::info!(
                topic = %h.topic,
                partition = h.index,
                dirty_ratio = ratio,
                overdue,
                segments = stats.segments_cleaned,
                records_removed = stats.records_removed,
                tombstones_removed = stats.tombstones_removed,
                "compacted log"
            );
            true
        }
        Err(e) => {
            tracing::error!(topic = %h.topic, partition = h.index, "compaction failed: {e}");
            false
        }
    }
}
