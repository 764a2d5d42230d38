//! `sluice cluster status`: nodes, the metadata quorum (leader, term, each voter's lag),
//! partitions led per broker and offline partitions — the document `/v1/cluster` serves,
//! built with the same function (`sluice_controller::status`) from DescribeCluster,
//! DescribeQuorum and Metadata answers.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use kafka_protocol::messages::{DescribeClusterResponse, DescribeQuorumResponse};
use sluice_client::ClusterMetadata;
use sluice_controller::status::{build, BrokerView, ClusterStatus, ClusterView, PartitionView};
use sluice_controller::{QuorumStatus, ReplicaStatus};

use super::output::{print, print_json, table};
use super::{CommonArgs, OutputFormat};

/// Arguments of `sluice cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Nodes, the metadata quorum with each voter's lag, partitions led and offline.
    Status,
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<i32> {
    let mut client = args.common.connect().await?;
    match args.command {
        ClusterCommand::Status => {
            let md = client.metadata(None).await?;
            let (dc, _) = client.describe_cluster().await?;
            let (dq, _) = client.describe_quorum().await?;
            let (q, voters) = quorum_from(&dq);
            let status = build(&view_from(&dc, &md), &q, &voters);
            match args.common.output {
                OutputFormat::Json => print_json(&serde_json::to_value(&status)?)?,
                OutputFormat::Table => print(&render_table(&status))?,
            }
            Ok(0)
        }
    }
}

fn opt(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

/// The quorum status and voter endpoints a DescribeQuorum answer describes.
fn quorum_from(resp: &DescribeQuorumResponse) -> (QuorumStatus, BTreeMap<i32, String>) {
    let endpoints: BTreeMap<i32, String> = resp
        .nodes
        .iter()
        .filter_map(|n| {
            let l = n
                .listeners
                .iter()
                .find(|l| l.name.as_str() == "CONTROLLER")
                .or(n.listeners.first())?;
            Some((n.node_id.0, format!("{}:{}", l.host.as_str(), l.port)))
        })
        .collect();
    let part = resp.topics.first().and_then(|t| t.partitions.first());
    let mut replicas = Vec::new();
    let mut voters = BTreeMap::new();
    if let Some(p) = part {
        for (list, voter) in [(&p.current_voters, true), (&p.observers, false)] {
            for r in list {
                let id = r.replica_id.0;
                let endpoint = endpoints.get(&id).cloned().unwrap_or_default();
                if voter && !endpoint.is_empty() {
                    voters.insert(id, endpoint.clone());
                }
                replicas.push(ReplicaStatus {
                    node_id: id,
                    endpoint,
                    log_end_offset: opt(r.log_end_offset),
                    last_fetch_ms: opt(r.last_fetch_timestamp),
                    last_caught_up_ms: opt(r.last_caught_up_timestamp),
                    voter,
                });
            }
        }
    }
    let q = QuorumStatus {
        node_id: -1,
        leader_id: part.map(|p| p.leader_id.0).filter(|id| *id >= 0),
        term: part
            .and_then(|p| u64::try_from(p.leader_epoch).ok())
            .unwrap_or(0),
        high_watermark: part.and_then(|p| opt(p.high_watermark)).unwrap_or(0),
        replicas,
    };
    (q, voters)
}

/// Brokers from DescribeCluster (with fencing from v2), partitions from Metadata.
fn view_from(dc: &DescribeClusterResponse, md: &ClusterMetadata) -> ClusterView {
    ClusterView {
        cluster_id: dc.cluster_id.to_string(),
        brokers: dc
            .brokers
            .iter()
            .map(|b| BrokerView {
                id: b.broker_id.0,
                kafka: format!("{}:{}", b.host.as_str(), b.port),
                rack: b.rack.as_ref().map(|r| r.to_string()),
                fenced: b.is_fenced,
            })
            .collect(),
        partitions: md
            .topics
            .iter()
            .filter(|t| t.error.is_none())
            .flat_map(|t| {
                t.partitions.iter().map(|p| PartitionView {
                    topic: t.name.clone(),
                    partition: p.partition,
                    leader: p.leader,
                })
            })
            .collect(),
    }
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

fn render_table(s: &ClusterStatus) -> String {
    let mut out = format!("Cluster {}\n\n", s.cluster_id);
    let rows: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.id.to_string(),
                n.roles.join(","),
                or_dash(n.endpoints.kafka.clone()),
                or_dash(n.endpoints.controller.clone()),
                or_dash(n.rack.clone()),
                if n.fenced { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["ID", "ROLES", "KAFKA", "CONTROLLER", "RACK", "FENCED"],
        &rows,
    ));
    out.push_str(&format!(
        "\nQuorum: leader {}, term {}, high watermark {}\n",
        or_dash(s.quorum.leader_id),
        s.quorum.term,
        s.quorum.high_watermark
    ));
    let replica_rows = |kind: &str, list: &[sluice_controller::status::ReplicaSummary]| {
        list.iter()
            .map(|v| {
                vec![
                    v.id.to_string(),
                    if Some(v.id) == s.quorum.leader_id {
                        "leader".to_string()
                    } else {
                        kind.to_string()
                    },
                    v.endpoint.clone(),
                    or_dash(v.log_end_offset),
                    or_dash(v.lag),
                    or_dash(v.last_caught_up_ms),
                ]
            })
            .collect::<Vec<_>>()
    };
    let mut rows = replica_rows("follower", &s.quorum.voters);
    rows.extend(replica_rows("observer", &s.quorum.observers));
    out.push_str(&table(
        &[
            "VOTER",
            "STATE",
            "ENDPOINT",
            "LOG-END",
            "LAG",
            "CAUGHT-UP-MS",
        ],
        &rows,
    ));
    let led: Vec<Vec<String>> = s
        .partitions_led
        .iter()
        .map(|(id, n)| vec![id.clone(), n.to_string()])
        .collect();
    out.push('\n');
    out.push_str(&table(&["BROKER", "PARTITIONS-LED"], &led));
    if s.offline_partitions.is_empty() {
        out.push_str("\nOffline partitions: none\n");
    } else {
        out.push_str("\nOffline partitions:\n");
        let rows: Vec<Vec<String>> = s
            .offline_partitions
            .iter()
            .map(|p| vec![p.topic.clone(), p.partition.to_string()])
            .collect();
        out.push_str(&table(&["TOPIC", "PARTITION"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_quorum_response::{
        Listener, Node, PartitionData, ReplicaState, TopicData,
    };
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn quorum_from_describe_quorum_v2() {
        let mut resp = DescribeQuorumResponse::default();
        let mut p = PartitionData::default();
        p.leader_id = BrokerId(2);
        p.leader_epoch = 4;
        p.high_watermark = 20;
        for (id, leo) in [(1, 20), (2, 21), (3, -1)] {
            let mut r = ReplicaState::default();
            r.replica_id = BrokerId(id);
            r.log_end_offset = leo;
            r.last_fetch_timestamp = -1;
            r.last_caught_up_timestamp = -1;
            p.current_voters.push(r);
            let mut n = Node::default();
            n.node_id = BrokerId(id);
            let mut l = Listener::default();
            l.name = StrBytes::from_static_str("CONTROLLER");
            l.host = StrBytes::from_static_str("127.0.0.1");
            l.port = 9000 + id as u16;
            n.listeners.push(l);
            resp.nodes.push(n);
        }
        let mut t = TopicData::default();
        t.partitions.push(p);
        resp.topics.push(t);
        let (q, voters) = quorum_from(&resp);
        assert_eq!(q.leader_id, Some(2));
        assert_eq!(q.term, 4);
        assert_eq!(voters.get(&3).map(String::as_str), Some("127.0.0.1:9003"));
        let s = build(&ClusterView::default(), &q, &voters);
        let lags: Vec<Option<u64>> = s.quorum.voters.iter().map(|v| v.lag).collect();
        assert_eq!(lags, vec![Some(0), Some(0), None]);
        let text = render_table(&s);
        assert!(text.contains("Quorum: leader 2, term 4, high watermark 20"));
        assert!(text.contains("Offline partitions: none"));
    }
}
