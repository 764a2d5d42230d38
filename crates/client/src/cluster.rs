//! Cluster-level requests: DescribeCluster (with fenced brokers) and DescribeQuorum.

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::{Client, ClientError, KafkaCode, Result};

/// The metadata log's topic, the one partition DescribeQuorum describes.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

impl Client {
    /// Broker addresses to try for cluster-level requests: the live brokers from Metadata.
    async fn cluster_candidates(&mut self) -> Result<Vec<String>> {
        let md = self.metadata(Some(&[])).await?;
        if md.brokers.is_empty() {
            return Err(ClientError::InvalidInput(
                "the cluster has no brokers".into(),
            ));
        }
        Ok(md.brokers.iter().map(|b| b.addr()).collect())
    }

    /// DescribeCluster at the highest version the broker supports; from v2 it asks for fenced
    /// brokers too (`is_fenced` is only meaningful then). Returns the response and version.
    pub async fn describe_cluster(&mut self) -> Result<(DescribeClusterResponse, i16)> {
        let mut last = None;
        for addr in self.cluster_candidates().await? {
            let conn = match self.conn(&addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let version = conn.version_for::<DescribeClusterRequest>()?;
            let mut req = DescribeClusterRequest::default();
            req.include_fenced_brokers = version >= 2;
            match conn.send_versioned(&req, version).await {
                Ok(resp) => {
                    if let Some(code) = KafkaCode::from_code(resp.error_code) {
                        return Err(ClientError::Kafka {
                            context: "DescribeCluster".into(),
                            code,
                            message: resp.error_message.map(|m| m.to_string()),
                        });
                    }
                    return Ok((resp, version));
                }
                Err(e) => {
                    self.drop_conn(&addr);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidInput("no brokers known".into())))
    }

    /// DescribeQuorum (v2 when the broker supports it) for `__cluster_metadata`-0. Returns the
    /// response and the version used; top-level and partition errors become `Err`.
    pub async fn describe_quorum(&mut self) -> Result<(DescribeQuorumResponse, i16)> {
        let mut p = PartitionData::default();
        p.partition_index = 0;
        let mut t = TopicData::default();
        t.topic_name = TopicName(StrBytes::from_static_str(METADATA_TOPIC));
        t.partitions.push(p);
        let mut req = DescribeQuorumRequest::default();
        req.topics.push(t);
        let mut last = None;
        for addr in self.cluster_candidates().await? {
            let version = match self.conn(&addr).await {
                Ok(c) => c.version_for::<DescribeQuorumRequest>()?,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match self.send_pinned(&addr, &req, version).await {
                Ok(resp) => {
                    let part_err = resp
                        .topics
                        .first()
                        .and_then(|t| t.partitions.first())
                        .map(|p| (p.error_code, p.error_message.clone()));
                    if let Some(code) = KafkaCode::from_code(resp.error_code) {
                        last = Some(ClientError::Kafka {
                            context: "DescribeQuorum".into(),
                            code,
                            message: resp.error_message.map(|m| m.to_string()),
                        });
                        continue;
                    }
                    match part_err {
                        None => {
                            return Err(ClientError::Protocol {
                                addr,
                                message: "DescribeQuorum answered no partition".into(),
                            })
                        }
                        Some((code, msg)) => {
                            if let Some(code) = KafkaCode::from_code(code) {
                                return Err(ClientError::Kafka {
                                    context: "DescribeQuorum __cluster_metadata-0".into(),
                                    code,
                                    message: msg.map(|m| m.to_string()),
                                });
                            }
                        }
                    }
                    return Ok((resp, version));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidInput("no brokers known".into())))
    }
}
