//! DescribeLogDirs (API 35, v1–4): the one log directory of this broker (`--data-dir`) and the
//! partitions it holds, with their size on disk and how far each is behind the high watermark.
//! Kafka's `kafka-reassign-partitions` and `kafka-log-dirs` ask for it; Sluice has one
//! directory per broker, so there are never "future" replicas being moved between directories.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::sb;
use crate::codes;
use crate::state::Broker;

/// Kafka's value for a volume size it cannot tell.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub fn handle(broker: &Broker, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted = |topic: &str, index: i32| match &req.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| t.topic.as_str() == topic && t.partitions.contains(&index)),
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<DescribeLogDirsPartition>> =
        std::collections::BTreeMap::new();
    for p in broker.all_partitions() {
        if !wanted(&p.topic, p.index) {
            continue;
        }
        let mut d = DescribeLogDirsPartition::default();
        d.partition_index = p.index;
        d.partition_size = i64::try_from(p.log.size_bytes()).unwrap_or(i64::MAX);
        d.offset_lag = (p.high_watermark() - p.log.log_end_offset()).max(0);
        d.is_future_key = false;
        by_topic.entry(p.topic.clone()).or_default().push(d);
    }
    let mut result = DescribeLogDirsResult::default();
    result.error_code = codes::NONE;
    let dir = broker
        .config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    result.log_dir = sb(dir.display().to_string());
    result.total_bytes = UNKNOWN_VOLUME_BYTES;
    result.usable_bytes = UNKNOWN_VOLUME_BYTES;
    result.topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            let mut t = DescribeLogDirsTopic::default();
            t.name = TopicName(sb(name));
            t.partitions = partitions;
            t
        })
        .collect();
    let mut resp = DescribeLogDirsResponse::default();
    resp.error_code = codes::NONE;
    resp.results = vec![result];
    resp
}
