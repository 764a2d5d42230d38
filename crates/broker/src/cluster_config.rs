//! How this node takes part in the cluster: its roles and the metadata quorum's voters.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

/// What a node runs (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Serves clients and follows the metadata quorum without voting.
    Broker,
    /// Votes in the metadata quorum and runs the controller; never serves clients.
    Controller,
    /// Both.
    Combined,
}

impl NodeRole {
    /// Parses `broker`, `controller` or `combined`.
    pub fn parse(s: &str) -> Option<NodeRole> {
        match s.trim().to_ascii_lowercase().as_str() {
            "broker" => Some(NodeRole::Broker),
            "controller" => Some(NodeRole::Controller),
            "combined" | "broker,controller" | "controller,broker" => Some(NodeRole::Combined),
            _ => None,
        }
    }

    /// Whether the node serves Kafka clients.
    pub fn is_broker(self) -> bool {
        matches!(self, NodeRole::Broker | NodeRole::Combined)
    }

    /// Whether the node votes in the metadata quorum.
    pub fn is_controller(self) -> bool {
        matches!(self, NodeRole::Controller | NodeRole::Combined)
    }

    /// Role names as Kafka prints them.
    pub fn names(self) -> Vec<&'static str> {
        match self {
            NodeRole::Broker => vec!["broker"],
            NodeRole::Controller => vec!["controller"],
            NodeRole::Combined => vec!["broker", "controller"],
        }
    }
}

/// Parses `ID@HOST:PORT,ID@HOST:PORT,...`.
pub fn parse_quorum(s: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| format!("{part:?}: expected ID@HOST:PORT"))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| format!("{part:?}: node id {id:?} is not a number"))?;
        if id < 0 {
            return Err(format!("{part:?}: node ids are not negative"));
        }
        let addr = addr.trim();
        let ok = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(format!("{part:?}: {addr:?} is not HOST:PORT"));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if out.is_empty() {
        return Err("no voters given; expected ID@HOST:PORT,...".into());
    }
    Ok(out)
}

/// The node's place in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Roles of this node.
    pub role: NodeRole,
    /// Voters of the metadata quorum (id → `HOST:PORT`); empty: a quorum of one (this node).
    pub voters: BTreeMap<i32, String>,
    /// Where this node's quorum RPC listens (`--controller-listen`); `None`: an ephemeral
    /// loopback port (single node) or, for a broker-only node, an ephemeral port on the
    /// advertised host.
    pub controller_listen: Option<String>,
    /// Rack of this broker.
    pub rack: Option<String>,
    /// Cluster id for a new cluster.
    pub cluster_id: Option<String>,
    /// A second Kafka listener for other brokers (replica fetches), `HOST:PORT`; `None`:
    /// followers use the client listener (Kafka's `inter.broker.listener.name`).
    pub inter_broker_listen: Option<String>,
    /// The inter-broker address registered for followers to fetch from (default: the
    /// inter-broker listen address).
    pub inter_broker_advertised: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            role: NodeRole::Combined,
            voters: BTreeMap::new(),
            controller_listen: None,
            rack: None,
            cluster_id: None,
            inter_broker_listen: None,
            inter_broker_advertised: None,
        }
    }
}

impl ClusterConfig {
    /// Validates the combination of flags.
    pub fn new(
        node_id: i32,
        voters: BTreeMap<i32, String>,
        controller_listen: Option<String>,
        role: Option<NodeRole>,
        rack: Option<String>,
        cluster_id: Option<String>,
    ) -> Result<ClusterConfig, String> {
        let in_quorum = voters.is_empty() || voters.contains_key(&node_id);
        let role = role.unwrap_or(if in_quorum {
            NodeRole::Combined
        } else {
            NodeRole::Broker
        });
        if role.is_controller() && !in_quorum {
            return Err(format!(
                "--role {}: node {node_id} is not a voter in --controller-quorum; add {node_id}@HOST:PORT to it or use --role broker",
                role.names().join(",")
            ));
        }
        if !role.is_controller() && !voters.is_empty() && voters.contains_key(&node_id) {
            return Err(format!(
                "node {node_id} is a voter in --controller-quorum but --role broker never votes; drop it from the quorum or use --role combined"
            ));
        }
        if voters.is_empty() && role != NodeRole::Combined {
            return Err(
                "--role broker|controller needs --controller-quorum (a cluster); a single node is combined".into(),
            );
        }
        if let (Some(l), Some(v)) = (&controller_listen, voters.get(&node_id)) {
            let a = l.to_socket_addrs().ok().and_then(|mut a| a.next());
            let b = v.to_socket_addrs().ok().and_then(|mut a| a.next());
            if a.is_some() && b.is_some() && a.map(|x| x.port()) != b.map(|x| x.port()) {
                return Err(format!(
                    "--controller-listen {l} does not match this node's quorum entry {node_id}@{v}"
                ));
            }
        }
        if let Some(id) = &cluster_id {
            if id.trim().is_empty() || id.len() > 64 {
                return Err(format!("--cluster-id {id:?}: expected 1-64 characters"));
            }
        }
        Ok(ClusterConfig {
            role,
            voters,
            controller_listen,
            rack,
            cluster_id,
            inter_broker_listen: None,
            inter_broker_advertised: None,
        })
    }

    /// The inter-broker address to register, if this node has an inter-broker listener.
    pub fn inter_broker_address(&self) -> Option<String> {
        self.inter_broker_advertised
            .clone()
            .or_else(|| self.inter_broker_listen.clone())
    }

    /// Whether this node runs without a quorum flag (a quorum of one).
    pub fn is_single(&self) -> bool {
        self.voters.is_empty()
    }

    /// The socket address the quorum RPC binds to.
    pub fn quorum_listen(&self, node_id: i32, advertised_host: &str) -> Result<SocketAddr, String> {
        let text = match (&self.controller_listen, self.voters.get(&node_id)) {
            (Some(l), _) => l.clone(),
            (None, Some(v)) => v.clone(),
            (None, None) if self.is_single() => "127.0.0.1:0".to_string(),
            (None, None) => format!("{advertised_host}:0"),
        };
        text.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("controller listen address {text:?} does not resolve"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_list_parses_and_rejects_garbage() {
        let q = parse_quorum("1@127.0.0.1:19093, 2@127.0.0.1:29093,3@localhost:39093").unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q[&2], "127.0.0.1:29093");
        for bad in [
            "",
            "1@",
            "x@h:1",
            "1@h",
            "1@h:99999",
            "1@h:1,1@h:2",
            "-1@h:1",
        ] {
            assert!(parse_quorum(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_default_from_the_quorum() {
        let q = parse_quorum("1@127.0.0.1:19093,2@127.0.0.1:29093").unwrap();
        let c = ClusterConfig::new(1, q.clone(), None, None, None, None).unwrap();
        assert_eq!(c.role, NodeRole::Combined);
        let c = ClusterConfig::new(4, q.clone(), None, None, None, None).unwrap();
        assert_eq!(c.role, NodeRole::Broker);
        assert!(
            ClusterConfig::new(4, q.clone(), None, Some(NodeRole::Controller), None, None).is_err()
        );
        assert!(
            ClusterConfig::new(1, q.clone(), None, Some(NodeRole::Broker), None, None).is_err()
        );
        assert!(
            ClusterConfig::new(1, q, Some("127.0.0.1:1".into()), None, None, None).is_err(),
            "listen port must match the quorum entry"
        );
        let single = ClusterConfig::new(1, BTreeMap::new(), None, None, None, None).unwrap();
        assert!(single.is_single());
        assert_eq!(single.quorum_listen(1, "127.0.0.1").unwrap().port(), 0);
    }
}
