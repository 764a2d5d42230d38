//! The cluster status document served at `/v1/cluster` and its Prometheus gauges. The
//! document itself is built by the pure `sluice_controller::status` (shared with
//! `sluice cluster status`); this file gathers its inputs on a broker.

use std::fmt::Write as _;

pub use sluice_controller::status::{cluster_status, ClusterStatus};
use sluice_controller::QuorumStatus;

use super::rpc::{ControllerRequest, ControllerResponse};
use crate::state::Broker;

/// The quorum status as the leader sees it (it alone knows every replica's progress),
/// falling back to this node's own view when no leader answers.
pub async fn quorum_status(broker: &Broker) -> QuorumStatus {
    let ask = super::call_controller(broker, &ControllerRequest::DescribeQuorum);
    match tokio::time::timeout(std::time::Duration::from_secs(2), ask).await {
        Ok(Ok(ControllerResponse::Quorum(q))) => q,
        _ => broker.quorum.status(),
    }
}

/// This broker's status document: applied metadata plus the leader's quorum status.
pub async fn current(broker: &Broker) -> ClusterStatus {
    let q = quorum_status(broker).await;
    let md = broker.metadata();
    let mut s = cluster_status(&md, &q, &broker.config.cluster.voters);
    if s.cluster_id.is_empty() {
        s.cluster_id = broker.cluster_id.clone();
    }
    s
}

/// Appends the cluster gauges to a Prometheus text exposition.
pub fn render_gauges(s: &ClusterStatus, text: &mut String) {
    text.push_str(
        "# HELP sluice_quorum_leader_id Node id of the metadata quorum leader (-1: none).\n\
         # TYPE sluice_quorum_leader_id gauge\n",
    );
    let _ = writeln!(
        text,
        "sluice_quorum_leader_id {}",
        s.quorum.leader_id.unwrap_or(-1)
    );
    text.push_str(
        "# HELP sluice_quorum_commit_lag Metadata log entries a voter is behind the leader's \
         high watermark.\n# TYPE sluice_quorum_commit_lag gauge\n",
    );
    for v in &s.quorum.voters {
        if let Some(lag) = v.lag {
            let _ = writeln!(text, "sluice_quorum_commit_lag{{voter=\"{}\"}} {lag}", v.id);
        }
    }
    text.push_str(
        "# HELP sluice_fenced_brokers Registered brokers the controller has fenced.\n\
         # TYPE sluice_fenced_brokers gauge\n",
    );
    let fenced = s.nodes.iter().filter(|n| n.fenced).count();
    let _ = writeln!(text, "sluice_fenced_brokers {fenced}");
    // `sluice_offline_partitions` is registered with the broker's other gauges (metrics.rs).
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_controller::{Metadata, ReplicaStatus};
    use std::collections::BTreeMap;

    #[test]
    fn gauges() {
        let q = QuorumStatus {
            node_id: 1,
            leader_id: Some(1),
            term: 2,
            high_watermark: 10,
            replicas: vec![
                ReplicaStatus {
                    node_id: 1,
                    endpoint: "127.0.0.1:1".into(),
                    log_end_offset: Some(10),
                    last_fetch_ms: None,
                    last_caught_up_ms: None,
                    voter: true,
                },
                ReplicaStatus {
                    node_id: 2,
                    endpoint: "127.0.0.1:2".into(),
                    log_end_offset: Some(7),
                    last_fetch_ms: None,
                    last_caught_up_ms: None,
                    voter: true,
                },
            ],
        };
        let s = cluster_status(&Metadata::default(), &q, &BTreeMap::new());
        let mut text = String::new();
        render_gauges(&s, &mut text);
        assert!(text.contains("sluice_quorum_leader_id 1\n"));
        assert!(text.contains("sluice_quorum_commit_lag{voter=\"2\"} 3\n"));
        assert!(text.contains("sluice_fenced_brokers 0\n"));
    }
}
