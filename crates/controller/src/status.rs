//! The cluster status document (`GET /v1/cluster`, `sluice cluster status`): nodes with their
//! roles and endpoints, the metadata quorum with each voter's lag, partitions led per broker
//! and offline partitions.
//!
//! Pure: the broker builds it from its applied [`Metadata`] ([`cluster_status`]); the console
//! tool builds the same document from Kafka responses (DescribeCluster, DescribeQuorum,
//! Metadata) through [`ClusterView`] and [`build`], so both print the same thing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Metadata, QuorumStatus, NO_LEADER};

/// One registered broker, as the builder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerView {
    /// Node id.
    pub id: i32,
    /// Advertised Kafka `host:port`.
    pub kafka: String,
    /// Rack.
    pub rack: Option<String>,
    /// Fenced by the controller.
    pub fenced: bool,
}

/// One partition, as the builder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Leader broker id, -1 when offline.
    pub leader: i32,
}

/// What the status document is built from, besides the quorum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Cluster id.
    pub cluster_id: String,
    /// Registered brokers.
    pub brokers: Vec<BrokerView>,
    /// Every partition.
    pub partitions: Vec<PartitionView>,
}

impl ClusterView {
    /// The view of applied metadata.
    pub fn from_metadata(md: &Metadata) -> ClusterView {
        ClusterView {
            cluster_id: md.cluster_id.clone(),
            brokers: md
                .brokers
                .values()
                .map(|b| BrokerView {
                    id: b.node_id,
                    kafka: format!("{}:{}", b.host, b.port),
                    rack: b.rack.clone(),
                    fenced: b.fenced,
                })
                .collect(),
            partitions: md
                .topics
                .values()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| PartitionView {
                        topic: t.name.clone(),
                        partition: p.index,
                        leader: p.leader,
                    })
                })
                .collect(),
        }
    }
}

/// The status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Cluster id.
    pub cluster_id: String,
    /// Registered brokers and voters, by id.
    pub nodes: Vec<NodeStatus>,
    /// The metadata quorum.
    pub quorum: QuorumSummary,
    /// Broker id (as a string) → number of partitions it leads (every registered broker).
    pub partitions_led: BTreeMap<String, u64>,
    /// Partitions without a leader.
    pub offline_partitions: Vec<OfflinePartition>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub id: i32,
    /// `broker` (registered) and/or `controller` (quorum voter).
    pub roles: Vec<String>,
    /// Where it listens.
    pub endpoints: Endpoints,
    /// Rack.
    pub rack: Option<String>,
    /// Fenced by the controller (false for a node that is not a registered broker).
    pub fenced: bool,
}

/// A node's listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Kafka listener `host:port` (registered brokers).
    pub kafka: Option<String>,
    /// Quorum RPC `host:port` (voters and observers).
    pub controller: Option<String>,
}

/// The metadata quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumSummary {
    /// Leader, `null` when none is known.
    pub leader_id: Option<i32>,
    /// Term (Kafka's leader epoch).
    pub term: u64,
    /// The leader's high watermark.
    pub high_watermark: u64,
    /// Voters by id.
    pub voters: Vec<ReplicaSummary>,
    /// Observers (learners) by id.
    pub observers: Vec<ReplicaSummary>,
}

/// One replica of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSummary {
    /// Node id.
    pub id: i32,
    /// Quorum RPC `host:port`.
    pub endpoint: String,
    /// Log end offset, `null` when unknown.
    pub log_end_offset: Option<u64>,
    /// High watermark − log end offset (never negative), `null` when unknown.
    pub lag: Option<u64>,
    /// Last fetch, ms since the epoch.
    pub last_fetch_ms: Option<u64>,
    /// Last time it was caught up, ms since the epoch.
    pub last_caught_up_ms: Option<u64>,
}

/// A partition without a leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflinePartition {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// The status document of applied metadata `md`, quorum status `q` (best taken from the
/// leader) and the configured `voters` (id → quorum `host:port`).
pub fn cluster_status(
    md: &Metadata,
    q: &QuorumStatus,
    voters: &BTreeMap<i32, String>,
) -> ClusterStatus {
    build(&ClusterView::from_metadata(md), q, voters)
}

/// The status document of `view`, quorum status `q` and the `voters` (id → `host:port`).
pub fn build(
    view: &ClusterView,
    q: &QuorumStatus,
    voters: &BTreeMap<i32, String>,
) -> ClusterStatus {
    let hw = q.high_watermark;
    let summary = |r: &crate::ReplicaStatus| ReplicaSummary {
        id: r.node_id,
        endpoint: if r.endpoint.is_empty() {
            voters.get(&r.node_id).cloned().unwrap_or_default()
        } else {
            r.endpoint.clone()
        },
        log_end_offset: r.log_end_offset,
        lag: r.log_end_offset.map(|leo| hw.saturating_sub(leo)),
        last_fetch_ms: r.last_fetch_ms,
        last_caught_up_ms: r.last_caught_up_ms,
    };
    let mut qvoters: Vec<ReplicaSummary> =
        q.replicas.iter().filter(|r| r.voter).map(summary).collect();
    // Configured voters the status does not know (a node that has not joined yet).
    for (id, ep) in voters {
        if !qvoters.iter().any(|v| v.id == *id) {
            qvoters.push(ReplicaSummary {
                id: *id,
                endpoint: ep.clone(),
                log_end_offset: None,
                lag: None,
                last_fetch_ms: None,
                last_caught_up_ms: None,
            });
        }
    }
    qvoters.sort_by_key(|v| v.id);
    let mut observers: Vec<ReplicaSummary> = q
        .replicas
        .iter()
        .filter(|r| !r.voter && !qvoters.iter().any(|v| v.id == r.node_id))
        .map(summary)
        .collect();
    observers.sort_by_key(|v| v.id);

    let ids: BTreeSet<i32> = view
        .brokers
        .iter()
        .map(|b| b.id)
        .chain(qvoters.iter().map(|v| v.id))
        .collect();
    let nodes = ids
        .into_iter()
        .map(|id| {
            let broker = view.brokers.iter().find(|b| b.id == id);
            let voter = qvoters.iter().find(|v| v.id == id);
            let observer = observers.iter().find(|v| v.id == id);
            let mut roles = Vec::new();
            if broker.is_some() {
                roles.push("broker".to_string());
            }
            if voter.is_some() {
                roles.push("controller".to_string());
            }
            NodeStatus {
                id,
                roles,
                endpoints: Endpoints {
                    kafka: broker.map(|b| b.kafka.clone()),
                    controller: voter
                        .or(observer)
                        .map(|v| v.endpoint.clone())
                        .filter(|e| !e.is_empty()),
                },
                rack: broker.and_then(|b| b.rack.clone()),
                fenced: broker.is_some_and(|b| b.fenced),
            }
        })
        .collect();

    let mut partitions_led: BTreeMap<i32, u64> = view.brokers.iter().map(|b| (b.id, 0)).collect();
    let mut offline_partitions = Vec::new();
    for p in &view.partitions {
        if p.leader == NO_LEADER || p.leader < 0 {
            offline_partitions.push(OfflinePartition {
                topic: p.topic.clone(),
                partition: p.partition,
            });
        } else {
            *partitions_led.entry(p.leader).or_default() += 1;
        }
    }
    offline_partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));

    ClusterStatus {
        cluster_id: view.cluster_id.clone(),
        nodes,
        quorum: QuorumSummary {
            leader_id: q.leader_id,
            term: q.term,
            high_watermark: hw,
            voters: qvoters,
            observers,
        },
        partitions_led: partitions_led
            .into_iter()
            .map(|(id, n)| (id.to_string(), n))
            .collect(),
        offline_partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaStatus;

    fn replica(id: i32, leo: Option<u64>, voter: bool) -> ReplicaStatus {
        ReplicaStatus {
            node_id: id,
            endpoint: format!("127.0.0.1:{}9093", id),
            log_end_offset: leo,
            last_fetch_ms: leo.map(|_| 1000),
            last_caught_up_ms: leo.map(|_| 900),
            voter,
        }
    }

    fn voters() -> BTreeMap<i32, String> {
        (1..=3).map(|i| (i, format!("127.0.0.1:{i}9093"))).collect()
    }

    fn view() -> ClusterView {
        ClusterView {
            cluster_id: "c1".into(),
            brokers: vec![
                BrokerView {
                    id: 1,
                    kafka: "127.0.0.1:19092".into(),
                    rack: Some("a".into()),
                    fenced: false,
                },
                BrokerView {
                    id: 2,
                    kafka: "127.0.0.1:29092".into(),
                    rack: None,
                    fenced: true,
                },
                BrokerView {
                    id: 4,
                    kafka: "127.0.0.1:49092".into(),
                    rack: None,
                    fenced: false,
                },
            ],
            partitions: vec![
                PartitionView {
                    topic: "t".into(),
                    partition: 1,
                    leader: 1,
                },
                PartitionView {
                    topic: "t".into(),
                    partition: 0,
                    leader: -1,
                },
                PartitionView {
                    topic: "a".into(),
                    partition: 0,
                    leader: 1,
                },
                PartitionView {
                    topic: "a".into(),
                    partition: 1,
                    leader: 4,
                },
            ],
        }
    }

    #[test]
    fn builds_nodes_quorum_and_partitions() {
        let q = QuorumStatus {
            node_id: 1,
            leader_id: Some(1),
            term: 3,
            high_watermark: 50,
            replicas: vec![
                replica(1, Some(52), true),
                replica(2, Some(40), true),
                replica(3, None, true),
                replica(4, Some(49), false),
            ],
        };
        let s = build(&view(), &q, &voters());
        let ids: Vec<i32> = s.nodes.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        assert_eq!(s.nodes[0].roles, vec!["broker", "controller"]);
        assert_eq!(s.nodes[2].roles, vec!["controller"]);
        assert_eq!(s.nodes[3].roles, vec!["broker"]);
        assert_eq!(s.nodes[2].endpoints.kafka, None);
        assert_eq!(
            s.nodes[3].endpoints.controller.as_deref(),
            Some("127.0.0.1:49093")
        );
        assert!(s.nodes[1].fenced && !s.nodes[0].fenced && !s.nodes[2].fenced);
        assert_eq!(s.nodes[0].rack.as_deref(), Some("a"));
        assert_eq!(s.quorum.leader_id, Some(1));
        let lags: Vec<Option<u64>> = s.quorum.voters.iter().map(|v| v.lag).collect();
        assert_eq!(lags, vec![Some(0), Some(10), None]);
        assert_eq!(s.quorum.observers.len(), 1);
        assert_eq!(s.quorum.observers[0].lag, Some(1));
        assert_eq!(s.partitions_led.get("1"), Some(&2));
        assert_eq!(s.partitions_led.get("2"), Some(&0));
        assert_eq!(s.partitions_led.get("4"), Some(&1));
        assert_eq!(
            s.offline_partitions,
            vec![OfflinePartition {
                topic: "t".into(),
                partition: 0
            }]
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["quorum"]["leader_id"], 1);
        assert!(json["nodes"][2]["endpoints"]["kafka"].is_null());
        assert_eq!(json["partitions_led"]["1"], 2);
    }

    #[test]
    fn voters_missing_from_a_follower_status_still_listed() {
        let q = QuorumStatus {
            node_id: 2,
            leader_id: None,
            term: 0,
            high_watermark: 0,
            replicas: vec![],
        };
        let s = build(&ClusterView::default(), &q, &voters());
        assert_eq!(s.quorum.voters.len(), 3);
        assert_eq!(s.quorum.voters[1].endpoint, "127.0.0.1:29093");
        assert!(s.quorum.voters.iter().all(|v| v.lag.is_none()));
        assert_eq!(s.nodes.len(), 3);
        assert!(s.nodes.iter().all(|n| n.roles == vec!["controller"]));
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["quorum"]["leader_id"].is_null());
    }

    #[test]
    fn from_metadata_counts_partitions() {
        let md = Metadata::default();
        let q = QuorumStatus {
            node_id: 1,
            leader_id: Some(1),
            term: 1,
            high_watermark: 1,
            replicas: vec![replica(1, Some(1), true)],
        };
        let s = cluster_status(&md, &q, &BTreeMap::new());
        assert_eq!(s.nodes.len(), 1);
        assert!(s.partitions_led.is_empty());
    }
}
