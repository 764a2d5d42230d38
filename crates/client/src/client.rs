//! The cluster-level client: bootstrap, metadata, routing to partition leaders, and the
//! admin/produce/fetch operations used by the console tools.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, FetchRequest, InitProducerIdRequest, ListOffsetsRequest,
    MetadataRequest, MetadataResponse, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use uuid::Uuid;

use crate::conn::Connection;
use crate::error::{ClientError, KafkaCode, Result};
use crate::records::{decode_batches, encode_batch, Compression, ConsumedRecord, ProduceRecord};

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Comma-separated `host:port` list to bootstrap from.
    pub bootstrap: String,
    /// Client id sent in every request header.
    pub client_id: String,
    /// Limit for opening a TCP connection.
    pub connect_timeout: Duration,
    /// Limit for a request's response (fetches add their max wait).
    pub request_timeout: Duration,
    /// How many times an operation is retried on retriable errors.
    pub retries: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: "127.0.0.1:9092".into(),
            client_id: "sluice-cli".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retries: 8,
        }
    }
}

/// A broker as advertised in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition as reported by Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id (-1 when none).
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// Offline replica broker ids.
    pub offline: Vec<i32>,
    /// Partition-level error, if any.
    pub error: Option<KafkaCode>,
}

/// One topic as reported by Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Topic id (nil if the broker has none).
    pub topic_id: Uuid,
    /// Whether it is an internal topic.
    pub internal: bool,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
    /// Topic-level error, if any.
    pub error: Option<KafkaCode>,
}

impl TopicInfo {
    /// The replication factor (the largest replica set of any partition).
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .iter()
            .map(|p| p.replicas.len())
            .max()
            .unwrap_or(0)
    }

    /// The partition indexes.
    pub fn partition_ids(&self) -> Vec<i32> {
        self.partitions.iter().map(|p| p.partition).collect()
    }
}

/// A Metadata response in plain types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Controller node id (-1 if unknown).
    pub controller_id: i32,
    /// Brokers sorted by id.
    pub brokers: Vec<BrokerInfo>,
    /// Topics sorted by name.
    pub topics: Vec<TopicInfo>,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count; -1 lets the broker choose its default.
    pub partitions: i32,
    /// Replication factor; -1 lets the broker choose its default.
    pub replication_factor: i16,
    /// Topic configs (`retention.ms` = `1000`, ...).
    pub configs: Vec<(String, String)>,
}

/// What the broker reported for a created (or validated) topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    /// Name.
    pub name: String,
    /// Topic id (nil for validate-only or old brokers).
    pub topic_id: Uuid,
    /// Partition count (-1 if the broker did not say).
    pub partitions: i32,
    /// Replication factor (-1 if the broker did not say).
    pub replication_factor: i16,
}

/// Per-topic outcome of a batch admin call.
pub type TopicResults<T> = Vec<(String, Result<T>)>;

/// Where a config value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic itself.
    DynamicTopic,
    /// Set dynamically on this broker.
    DynamicBroker,
    /// Set dynamically as a cluster-wide broker default.
    DynamicDefaultBroker,
    /// From the broker's static configuration file.
    StaticBroker,
    /// Built-in default.
    Default,
    /// Anything else the broker reports.
    Other(i8),
}

impl ConfigSource {
    fn from_code(code: i8) -> ConfigSource {
        match code {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }
}

/// One config entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name.
    pub name: String,
    /// Value (`None` for sensitive or unset values).
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it can be changed.
    pub read_only: bool,
    /// Whether the value is secret.
    pub sensitive: bool,
}

impl ConfigEntry {
    /// True when the value was set on the topic (not inherited from a default).
    pub fn is_topic_override(&self) -> bool {
        self.source == ConfigSource::DynamicTopic
    }
}

/// Which offset ListOffsets should look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose timestamp is >= this (ms since epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// Producer acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Do not wait for the broker (no offsets are reported).
    None,
    /// Wait for the leader.
    Leader,
    /// Wait for all in-sync replicas.
    #[default]
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!("invalid acks '{other}' (expected 0, 1 or all)")),
        }
    }
}

/// Result of producing one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOutcome {
    /// Offset of the first record (`None` with acks=0).
    pub base_offset: Option<i64>,
    /// Broker append time if the topic uses LogAppendTime (-1 otherwise).
    pub log_append_time: i64,
}

/// One partition position to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to read.
    pub offset: i64,
}

/// Fetch tuning.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// How long the broker may wait for `min_bytes`.
    pub max_wait: Duration,
    /// Minimum bytes before the broker answers.
    pub min_bytes: i32,
    /// Limit for the whole response.
    pub max_bytes: i32,
    /// Limit per partition.
    pub partition_max_bytes: i32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
        }
    }
}

/// What a fetch returned for one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Partition error, if any (e.g. OFFSET_OUT_OF_RANGE).
    pub error: Option<KafkaCode>,
    /// High watermark.
    pub high_watermark: i64,
    /// Log start offset (-1 if unknown).
    pub log_start_offset: i64,
    /// Records at or after the requested offset.
    pub records: Vec<ConsumedRecord>,
    /// Where to fetch next (requested offset if nothing was returned).
    pub next_offset: i64,
}

/// An async client for a Kafka-protocol cluster.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    bootstrap: Vec<String>,
    conns: HashMap<String, Connection>,
    brokers: HashMap<i32, String>,
    topics: HashMap<String, TopicInfo>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Splits "a:1, b:2" into addresses, rejecting entries without a port.
pub fn parse_bootstrap(list: &str) -> Result<Vec<String>> {
    let addrs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::InvalidInput(
            "the bootstrap server list is empty".into(),
        ));
    }
    for a in &addrs {
        let port_ok = a
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(ClientError::InvalidInput(format!(
                "invalid bootstrap server '{a}': expected host:port, e.g. 127.0.0.1:9092"
            )));
        }
    }
    Ok(addrs)
}

fn is_transport(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Connect { .. } | ClientError::Io { .. } | ClientError::Timeout { .. }
    )
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(5)).min(1000))
}

impl Client {
    /// Connects to the first reachable bootstrap server.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let bootstrap = parse_bootstrap(&config.bootstrap)?;
        let mut client = Client {
            config,
            bootstrap,
            conns: HashMap::new(),
            brokers: HashMap::new(),
            topics: HashMap::new(),
        };
        let mut last = None;
        for addr in client.bootstrap.clone() {
            match client.conn(&addr).await {
                Ok(_) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidInput("no bootstrap servers".into())))
    }

    /// The settings this client was created with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub(crate) async fn conn(&mut self, addr: &str) -> Result<&mut Connection> {
        if self.conns.get(addr).is_some_and(Connection::is_desynced) {
            // A request was abandoned midway (its future dropped): start afresh.
            self.conns.remove(addr);
        }
        if !self.conns.contains_key(addr) {
            let c = Connection::connect(
                addr,
                &self.config.client_id,
                self.config.connect_timeout,
                self.config.request_timeout,
            )
            .await?;
            self.conns.insert(addr.to_owned(), c);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| ClientError::Protocol {
                addr: addr.to_owned(),
                message: "connection disappeared".into(),
            })
    }

    /// Forgets the connection to `addr` (after a transport error), so the next use reconnects.
    pub(crate) fn drop_conn(&mut self, addr: &str) {
        self.conns.remove(addr);
    }

    /// Sends to a specific address, dropping the connection on transport errors.
    async fn send_to<R: Request>(
        &mut self,
        addr: &str,
        req: &R,
        extra: Duration,
    ) -> Result<R::Response> {
        let result = match self.conn(addr).await {
            Ok(conn) => conn.send_with_extra_time(req, extra).await,
            Err(e) => Err(e),
        };
        if result.as_ref().err().is_some_and(is_transport) {
            self.conns.remove(addr);
        }
        result
    }

    /// Sends to any reachable broker (open connections first, then bootstrap, then known).
    async fn send_any<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let mut candidates: Vec<String> = self.conns.keys().cloned().collect();
        candidates.sort();
        for a in self.bootstrap.iter().chain(self.brokers.values()) {
            if !candidates.contains(a) {
                candidates.push(a.clone());
            }
        }
        let mut last = None;
        for addr in candidates {
            match self.send_to(&addr, req, Duration::ZERO).await {
                Ok(r) => return Ok(r),
                Err(e) if is_transport(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidInput("no brokers known".into())))
    }

    async fn send_to_broker<R: Request>(
        &mut self,
        broker: i32,
        req: &R,
        extra: Duration,
    ) -> Result<R::Response> {
        let addr = match self.brokers.get(&broker) {
            Some(a) => a.clone(),
            None => {
                self.metadata(None).await?;
                self.brokers
                    .get(&broker)
                    .cloned()
                    .ok_or_else(|| ClientError::Protocol {
                        addr: "-".into(),
                        message: format!("broker {broker} is not in the cluster metadata"),
                    })?
            }
        };
        self.send_to(&addr, req, extra).await
    }

    /// Fetches metadata for `topics` (`None` = all topics) and refreshes the caches.
    /// Never auto-creates topics.
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> Result<ClusterMetadata> {
        let mut req = MetadataRequest::default();
        req.allow_auto_topic_creation = false;
        req.topics = topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(TopicName(StrBytes::from_string(n.clone())));
                    t
                })
                .collect()
        });
        let resp = self.send_any(&req).await?;
        Ok(self.absorb_metadata(resp))
    }

    fn absorb_metadata(&mut self, resp: MetadataResponse) -> ClusterMetadata {
        let mut brokers: Vec<BrokerInfo> = resp
            .brokers
            .into_iter()
            .map(|b| BrokerInfo {
                id: b.node_id.0,
                host: b.host.as_str().to_owned(),
                port: b.port,
                rack: b.rack.map(|r| r.as_str().to_owned()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        for b in &brokers {
            self.brokers.insert(b.id, b.addr());
        }
        let mut topics: Vec<TopicInfo> = resp
            .topics
            .into_iter()
            .map(|t| {
                let mut partitions: Vec<PartitionInfo> = t
                    .partitions
                    .into_iter()
                    .map(|p| PartitionInfo {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                        error: KafkaCode::from_code(p.error_code),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                TopicInfo {
                    name: t.name.map(|n| n.0.as_str().to_owned()).unwrap_or_default(),
                    topic_id: t.topic_id,
                    internal: t.is_internal,
                    partitions,
                    error: KafkaCode::from_code(t.error_code),
                }
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        for t in &topics {
            if t.error.is_none() {
                self.topics.insert(t.name.clone(), t.clone());
            } else {
                self.topics.remove(&t.name);
            }
        }
        ClusterMetadata {
            cluster_id: resp.cluster_id.map(|c| c.as_str().to_owned()),
            controller_id: resp.controller_id.0,
            brokers,
            topics,
        }
    }

    /// Metadata of one topic, waiting briefly for leaders of a just-created topic.
    /// Fails with [`ClientError::UnknownTopic`] if it does not exist.
    pub async fn topic(&mut self, name: &str) -> Result<TopicInfo> {
        let mut attempt = 0;
        loop {
            let md = self.metadata(Some(&[name.to_owned()])).await?;
            let topic = md.topics.into_iter().find(|t| t.name == name);
            let retry_reason = match topic {
                None => return Err(ClientError::UnknownTopic(name.to_owned())),
                Some(t) => match t.error {
                    Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                        return Err(ClientError::UnknownTopic(name.to_owned()))
                    }
                    Some(code) if !code.is_retriable() => {
                        return Err(ClientError::Kafka {
                            context: format!("metadata for topic '{name}'"),
                            code,
                            message: None,
                        })
                    }
                    Some(code) => ClientError::Kafka {
                        context: format!("metadata for topic '{name}'"),
                        code,
                        message: None,
                    },
                    None => match t.partitions.iter().find(|p| p.leader < 0) {
                        None => return Ok(t),
                        Some(p) => ClientError::NoLeader {
                            topic: name.to_owned(),
                            partition: p.partition,
                        },
                    },
                },
            };
            if attempt >= self.config.retries {
                return Err(retry_reason);
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    async fn cached_topic(&mut self, name: &str) -> Result<TopicInfo> {
        match self.topics.get(name) {
            Some(t) => Ok(t.clone()),
            None => self.topic(name).await,
        }
    }

    /// The number of partitions of `topic`.
    pub async fn partition_count(&mut self, topic: &str) -> Result<i32> {
        let t = self.cached_topic(topic).await?;
        i32::try_from(t.partitions.len())
            .map_err(|_| ClientError::InvalidInput("too many partitions".into()))
    }

    async fn leader_of(&mut self, topic: &str, partition: i32) -> Result<(i32, Uuid)> {
        let t = self.cached_topic(topic).await?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| ClientError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                count: t.partitions.len(),
            })?;
        if p.leader < 0 {
            self.topics.remove(topic);
            return Err(ClientError::NoLeader {
                topic: topic.to_owned(),
                partition,
            });
        }
        Ok((p.leader, t.topic_id))
    }

    /// Creates topics. The outer error is for transport problems; each topic has its own result.
    pub async fn create_topics(
        &mut self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<TopicResults<CreatedTopic>> {
        let mut req = CreateTopicsRequest::default();
        req.timeout_ms = 30_000;
        req.validate_only = validate_only;
        req.topics = topics
            .iter()
            .map(|t| {
                let mut c = CreatableTopic::default();
                c.name = TopicName(StrBytes::from_string(t.name.clone()));
                c.num_partitions = t.partitions;
                c.replication_factor = t.replication_factor;
                c.configs = t
                    .configs
                    .iter()
                    .map(|(k, v)| {
                        let mut cfg = CreatableTopicConfig::default();
                        cfg.name = StrBytes::from_string(k.clone());
                        cfg.value = Some(StrBytes::from_string(v.clone()));
                        cfg
                    })
                    .collect();
                c
            })
            .collect();
        let resp = self.send_any(&req).await?;
        let mut out = Vec::new();
        for t in topics {
            let r = resp.topics.iter().find(|r| r.name.0.as_str() == t.name);
            let result = match r {
                None => Err(ClientError::Protocol {
                    addr: "-".into(),
                    message: format!("CreateTopics response has no entry for '{}'", t.name),
                }),
                Some(r) => ClientError::check(r.error_code, r.error_message.as_deref(), || {
                    format!("create topic '{}'", t.name)
                })
                .map(|()| CreatedTopic {
                    name: t.name.clone(),
                    topic_id: r.topic_id,
                    partitions: r.num_partitions,
                    replication_factor: r.replication_factor,
                }),
            };
            out.push((t.name.clone(), result));
        }
        Ok(out)
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&mut self, names: &[String]) -> Result<TopicResults<()>> {
        let mut req = DeleteTopicsRequest::default();
        req.timeout_ms = 30_000;
        // v6+ uses `topics`, older versions `topic_names`; fill both.
        req.topic_names = names
            .iter()
            .map(|n| TopicName(StrBytes::from_string(n.clone())))
            .collect();
        req.topics = names
            .iter()
            .map(|n| {
                let mut s = DeleteTopicState::default();
                s.name = Some(TopicName(StrBytes::from_string(n.clone())));
                s
            })
            .collect();
        let resp = self.send_any(&req).await?;
        let mut out = Vec::new();
        for n in names {
            self.topics.remove(n);
            let r = resp
                .responses
                .iter()
                .find(|r| r.name.as_ref().is_some_and(|x| x.0.as_str() == n));
            let result = match r {
                None => Err(ClientError::Protocol {
                    addr: "-".into(),
                    message: format!("DeleteTopics response has no entry for '{n}'"),
                }),
                Some(r) => ClientError::check(r.error_code, r.error_message.as_deref(), || {
                    format!("delete topic '{n}'")
                }),
            };
            out.push((n.clone(), result));
        }
        Ok(out)
    }

    /// Raises the partition count of topics to the given totals.
    pub async fn create_partitions(
        &mut self,
        topics: &[(String, i32)],
        validate_only: bool,
    ) -> Result<TopicResults<()>> {
        let mut req = CreatePartitionsRequest::default();
        req.timeout_ms = 30_000;
        req.validate_only = validate_only;
        req.topics = topics
            .iter()
            .map(|(n, count)| {
                let mut t = CreatePartitionsTopic::default();
                t.name = TopicName(StrBytes::from_string(n.clone()));
                t.count = *count;
                t.assignments = None;
                t
            })
            .collect();
        let resp = self.send_any(&req).await?;
        let mut out = Vec::new();
        for (n, _) in topics {
            self.topics.remove(n);
            let r = resp.results.iter().find(|r| r.name.0.as_str() == n);
            let result = match r {
                None => Err(ClientError::Protocol {
                    addr: "-".into(),
                    message: format!("CreatePartitions response has no entry for '{n}'"),
                }),
                Some(r) => ClientError::check(r.error_code, r.error_message.as_deref(), || {
                    format!("add partitions to topic '{n}'")
                }),
            };
            out.push((n.clone(), result));
        }
        Ok(out)
    }

    /// All config entries of a topic.
    pub async fn describe_configs(&mut self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let mut req = DescribeConfigsRequest::default();
        let mut res = DescribeConfigsResource::default();
        res.resource_type = 2; // TOPIC
        res.resource_name = StrBytes::from_string(topic.to_owned());
        res.configuration_keys = None;
        req.resources = vec![res];
        let resp = self.send_any(&req).await?;
        let result = resp
            .results
            .into_iter()
            .find(|r| r.resource_name.as_str() == topic)
            .ok_or_else(|| ClientError::Protocol {
                addr: "-".into(),
                message: format!("DescribeConfigs response has no entry for '{topic}'"),
            })?;
        ClientError::check(result.error_code, result.error_message.as_deref(), || {
            format!("describe configs of topic '{topic}'")
        })?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.as_str().to_owned(),
                value: c.value.map(|v| v.as_str().to_owned()),
                source: ConfigSource::from_code(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Looks up offsets of partitions of `topic` (all partitions when `partitions` is empty).
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<i32, i64>> {
        let mut wanted: Vec<i32> = if partitions.is_empty() {
            self.cached_topic(topic).await?.partition_ids()
        } else {
            partitions.to_vec()
        };
        let mut out = BTreeMap::new();
        let mut attempt = 0;
        while !wanted.is_empty() {
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            let mut retry: Vec<i32> = Vec::new();
            let mut last_err = None;
            for &p in &wanted {
                match self.leader_of(topic, p).await {
                    Ok((leader, _)) => by_leader.entry(leader).or_default().push(p),
                    Err(e) if e.is_retriable() => {
                        retry.push(p);
                        last_err = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            for (leader, parts) in by_leader {
                let mut req = ListOffsetsRequest::default();
                req.replica_id = BrokerId(-1);
                req.timeout_ms = 30_000;
                let mut t = ListOffsetsTopic::default();
                t.name = TopicName(StrBytes::from_string(topic.to_owned()));
                t.partitions = parts
                    .iter()
                    .map(|&p| {
                        let mut lp = ListOffsetsPartition::default();
                        lp.partition_index = p;
                        lp.current_leader_epoch = -1;
                        lp.timestamp = spec.wire();
                        lp
                    })
                    .collect();
                req.topics = vec![t];
                let resp = match self.send_to_broker(leader, &req, Duration::ZERO).await {
                    Ok(r) => r,
                    Err(e) if e.is_retriable() => {
                        retry.extend(parts);
                        last_err = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for p in parts {
                    let pr = resp
                        .topics
                        .iter()
                        .filter(|t| t.name.0.as_str() == topic)
                        .flat_map(|t| t.partitions.iter())
                        .find(|x| x.partition_index == p);
                    let Some(pr) = pr else {
                        return Err(ClientError::Protocol {
                            addr: "-".into(),
                            message: format!("ListOffsets response lacks {topic}-{p}"),
                        });
                    };
                    match ClientError::check(pr.error_code, None, || {
                        format!("list offsets of {topic}-{p}")
                    }) {
                        Ok(()) => {
                            out.insert(p, pr.offset);
                        }
                        Err(e) if e.is_retriable() => {
                            self.topics.remove(topic);
                            retry.push(p);
                            last_err = Some(e);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            if attempt >= self.config.retries {
                return Err(last_err.unwrap_or_else(|| ClientError::NoLeader {
                    topic: topic.to_owned(),
                    partition: retry[0],
                }));
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            self.topics.remove(topic);
            wanted = retry;
        }
        Ok(out)
    }

    /// Produces `records` as one batch to `topic`/`partition`.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        acks: Acks,
        compression: Compression,
    ) -> Result<ProduceOutcome> {
        let batch = encode_batch(records, compression, now_ms()).map_err(|message| {
            ClientError::Protocol {
                addr: "-".into(),
                message,
            }
        })?;
        let mut attempt = 0;
        loop {
            let result = self
                .produce_once(topic, partition, batch.clone(), acks)
                .await;
            match result {
                Err(e) if attempt < self.config.retries && produce_retriable(&e) => {
                    self.topics.remove(topic);
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn produce_once(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<ProduceOutcome> {
        let (leader, topic_id) = self.leader_of(topic, partition).await?;
        let mut pd = PartitionProduceData::default();
        pd.index = partition;
        pd.records = Some(batch);
        let mut td = TopicProduceData::default();
        td.name = TopicName(StrBytes::from_string(topic.to_owned()));
        td.topic_id = topic_id;
        td.partition_data = vec![pd];
        let mut req = ProduceRequest::default();
        req.acks = acks.wire();
        req.timeout_ms = 30_000;
        req.topic_data = vec![td];
        if acks == Acks::None {
            let addr = self.broker_addr(leader).await?;
            let conn = self.conn(&addr).await?;
            if topic_id.is_nil() && conn.version_for::<ProduceRequest>()? >= 13 {
                return Err(ClientError::Protocol {
                    addr,
                    message: "topic id unknown for Produce v13".into(),
                });
            }
            return conn.send_oneway(&req).await.map(|()| ProduceOutcome {
                base_offset: None,
                log_append_time: -1,
            });
        }
        let resp = self.send_to_broker(leader, &req, Duration::ZERO).await?;
        let pr = resp
            .responses
            .iter()
            .filter(|t| {
                t.name.0.as_str() == topic || (!topic_id.is_nil() && t.topic_id == topic_id)
            })
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| ClientError::Protocol {
                addr: "-".into(),
                message: format!("Produce response lacks {topic}-{partition}"),
            })?;
        let message = pr.error_message.as_deref().map(str::to_owned).or_else(|| {
            pr.record_errors
                .first()
                .and_then(|e| e.batch_index_error_message.as_deref().map(str::to_owned))
        });
        ClientError::check(pr.error_code, message.as_deref(), || {
            format!("produce to {topic}-{partition}")
        })?;
        Ok(ProduceOutcome {
            base_offset: Some(pr.base_offset),
            log_append_time: pr.log_append_time_ms,
        })
    }

    /// Asks any broker for an idempotent producer id and epoch (InitProducerId without a
    /// transactional id), retrying retriable errors.
    pub async fn init_producer_id(&mut self) -> Result<(i64, i16)> {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None;
        req.transaction_timeout_ms = 60_000;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        let mut attempt = 0;
        loop {
            let resp = self.send_any(&req).await?;
            match ClientError::check(resp.error_code, None, || "InitProducerId".into()) {
                Ok(()) => return Ok((resp.producer_id.0, resp.producer_epoch)),
                Err(e) if e.is_retriable() && attempt < self.config.retries => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The `host:port` of broker `broker` (from cached metadata, refreshed when unknown).
    pub async fn broker_address(&mut self, broker: i32) -> Result<String> {
        self.broker_addr(broker).await
    }

    async fn broker_addr(&mut self, broker: i32) -> Result<String> {
        if !self.brokers.contains_key(&broker) {
            self.metadata(None).await?;
        }
        self.brokers
            .get(&broker)
            .cloned()
            .ok_or_else(|| ClientError::Protocol {
                addr: "-".into(),
                message: format!("broker {broker} is not in the cluster metadata"),
            })
    }

    /// Fetches from the given positions (grouped per leader). Partition-level errors are
    /// returned in [`FetchedPartition::error`]; leader changes invalidate cached metadata so
    /// the next call routes anew.
    pub async fn fetch(
        &mut self,
        positions: &[FetchPosition],
        opts: FetchOptions,
    ) -> Result<Vec<FetchedPartition>> {
        let mut by_leader: BTreeMap<i32, Vec<(FetchPosition, Uuid)>> = BTreeMap::new();
        let mut out = Vec::new();
        for pos in positions {
            match self.leader_of(&pos.topic, pos.partition).await {
                Ok((leader, id)) => by_leader.entry(leader).or_default().push((pos.clone(), id)),
                Err(e) if e.is_retriable() => out.push(FetchedPartition {
                    topic: pos.topic.clone(),
                    partition: pos.partition,
                    error: Some(KafkaCode(5)), // LEADER_NOT_AVAILABLE
                    high_watermark: -1,
                    log_start_offset: -1,
                    records: Vec::new(),
                    next_offset: pos.offset,
                }),
                Err(e) => return Err(e),
            }
        }
        for (leader, group) in by_leader {
            let mut req = FetchRequest::default();
            req.replica_id = BrokerId(-1);
            req.max_wait_ms = i32::try_from(opts.max_wait.as_millis()).unwrap_or(i32::MAX);
            req.min_bytes = opts.min_bytes;
            req.max_bytes = opts.max_bytes;
            req.isolation_level = 0;
            req.session_id = 0;
            req.session_epoch = -1;
            let mut topics: Vec<FetchTopic> = Vec::new();
            for (pos, id) in &group {
                let mut fp = FetchPartition::default();
                fp.partition = pos.partition;
                fp.current_leader_epoch = -1;
                fp.fetch_offset = pos.offset;
                fp.last_fetched_epoch = -1;
                fp.log_start_offset = -1;
                fp.partition_max_bytes = opts.partition_max_bytes;
                match topics.iter_mut().find(|t| t.topic.0.as_str() == pos.topic) {
                    Some(t) => t.partitions.push(fp),
                    None => {
                        let mut t = FetchTopic::default();
                        t.topic = TopicName(StrBytes::from_string(pos.topic.clone()));
                        t.topic_id = *id;
                        t.partitions = vec![fp];
                        topics.push(t);
                    }
                }
            }
            req.topics = topics;
            let resp = match self.send_to_broker(leader, &req, opts.max_wait).await {
                Ok(r) => r,
                Err(e) if is_transport(&e) => {
                    // Broker went away: report as retriable per partition so callers keep going.
                    for (pos, _) in group {
                        self.topics.remove(&pos.topic);
                        out.push(FetchedPartition {
                            topic: pos.topic.clone(),
                            partition: pos.partition,
                            error: Some(KafkaCode(13)), // NETWORK_EXCEPTION
                            high_watermark: -1,
                            log_start_offset: -1,
                            records: Vec::new(),
                            next_offset: pos.offset,
                        });
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            ClientError::check(resp.error_code, None, || "fetch".into())?;
            for (pos, id) in group {
                let pd = resp
                    .responses
                    .iter()
                    .filter(|t| {
                        t.topic.0.as_str() == pos.topic || (!id.is_nil() && t.topic_id == id)
                    })
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == pos.partition);
                let Some(pd) = pd else {
                    // The broker may omit partitions (e.g. response size limit); nothing new.
                    out.push(FetchedPartition {
                        topic: pos.topic.clone(),
                        partition: pos.partition,
                        error: None,
                        high_watermark: -1,
                        log_start_offset: -1,
                        records: Vec::new(),
                        next_offset: pos.offset,
                    });
                    continue;
                };
                let error = KafkaCode::from_code(pd.error_code);
                if error.is_some_and(KafkaCode::is_retriable) {
                    self.topics.remove(&pos.topic);
                }
                let mut records = Vec::new();
                let mut next_offset = pos.offset;
                if let Some(data) = pd.records.clone() {
                    let decoded =
                        decode_batches(data).map_err(|message| ClientError::Protocol {
                            addr: format!("broker {leader}"),
                            message: format!("{}-{}: {message}", pos.topic, pos.partition),
                        })?;
                    if let Some(n) = decoded.next_offset {
                        next_offset = next_offset.max(n);
                    }
                    records = decoded
                        .records
                        .into_iter()
                        .filter(|r| r.offset >= pos.offset)
                        .collect();
                }
                out.push(FetchedPartition {
                    topic: pos.topic.clone(),
                    partition: pos.partition,
                    error,
                    high_watermark: pd.high_watermark,
                    log_start_offset: pd.log_start_offset,
                    records,
                    next_offset,
                });
            }
        }
        Ok(out)
    }
}

fn produce_retriable(e: &ClientError) -> bool {
    match e {
        // Rejected requests are safe to resend; timeouts/IO might have been applied.
        ClientError::Kafka { code, .. } => code.is_retriable() && code.0 != 7,
        ClientError::NoLeader { .. } | ClientError::Connect { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_parsing() {
        assert_eq!(
            parse_bootstrap("a:1, b:2").unwrap(),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
        assert!(parse_bootstrap("").is_err());
        assert!(parse_bootstrap("localhost").is_err());
        assert!(parse_bootstrap("localhost:notaport").is_err());
        assert!(parse_bootstrap(":9092").is_err());
    }

    #[test]
    fn acks_parse() {
        assert_eq!("all".parse::<Acks>().unwrap(), Acks::All);
        assert_eq!("-1".parse::<Acks>().unwrap().wire(), -1);
        assert_eq!("0".parse::<Acks>().unwrap().wire(), 0);
        assert_eq!("1".parse::<Acks>().unwrap().wire(), 1);
        assert!("2".parse::<Acks>().is_err());
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(50));
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(30), Duration::from_millis(1000));
    }

    #[test]
    fn offset_spec_wire() {
        assert_eq!(OffsetSpec::Earliest.wire(), -2);
        assert_eq!(OffsetSpec::Latest.wire(), -1);
        assert_eq!(OffsetSpec::Timestamp(5).wire(), 5);
    }

    #[tokio::test]
    async fn connect_reports_unreachable_bootstrap() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = ClientConfig {
            bootstrap: format!("127.0.0.1:{port}"),
            ..Default::default()
        };
        let err = Client::connect(cfg).await.unwrap_err();
        assert!(err.to_string().contains("is a broker running?"), "{err}");
    }
}

/// Tests against a scripted in-process broker (no real broker needed).
#[cfg(test)]
mod mock_tests {
    use super::*;
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{ApiVersionsResponse, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves one connection: ApiVersions (Metadata capped at v9), then Metadata answers.
    /// Records (api key, version) of every request.
    async fn mock_broker(seen: Arc<Mutex<Vec<(i16, i16)>>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let port = i32::from(addr.port());
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            for _ in 0..8 {
                let mut len = [0u8; 4];
                if sock.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
                sock.read_exact(&mut body).await.unwrap();
                let mut body = bytes::Bytes::from(body);
                let key = (&body[0..2]).get_i16();
                let version = (&body[2..4]).get_i16();
                seen.lock().unwrap().push((key, version));
                let header_version = if key == 18 {
                    if version >= 3 {
                        2
                    } else {
                        1
                    }
                } else if version >= 9 {
                    2
                } else {
                    1
                };
                let header = RequestHeader::decode(&mut body, header_version).unwrap();
                let mut out = BytesMut::new();
                out.put_i32(0);
                let mut rh = ResponseHeader::default();
                rh.correlation_id = header.correlation_id;
                if key == 18 {
                    rh.encode(&mut out, 0).unwrap();
                    let mut resp = ApiVersionsResponse::default();
                    resp.api_keys = vec![
                        ApiVersion::default()
                            .with_api_key(18)
                            .with_min_version(0)
                            .with_max_version(3),
                        ApiVersion::default()
                            .with_api_key(3)
                            .with_min_version(0)
                            .with_max_version(9),
                    ];
                    resp.encode(&mut out, version).unwrap();
                } else {
                    rh.encode(&mut out, if version >= 9 { 1 } else { 0 })
                        .unwrap();
                    let mut resp = MetadataResponse::default();
                    let mut b = MetadataResponseBroker::default();
                    b.node_id = BrokerId(7);
                    b.host = StrBytes::from_static_str("127.0.0.1");
                    b.port = port;
                    resp.brokers = vec![b];
                    resp.controller_id = BrokerId(7);
                    let mut t = MetadataResponseTopic::default();
                    t.name = Some(TopicName(StrBytes::from_static_str("orders")));
                    t.partitions = (0..2)
                        .rev()
                        .map(|i| {
                            let mut p = MetadataResponsePartition::default();
                            p.partition_index = i;
                            p.leader_id = BrokerId(7);
                            p.replica_nodes = vec![BrokerId(7)];
                            p.isr_nodes = vec![BrokerId(7)];
                            p
                        })
                        .collect();
                    let mut missing = MetadataResponseTopic::default();
                    missing.name = Some(TopicName(StrBytes::from_static_str("nope")));
                    missing.error_code = 3;
                    resp.topics = vec![t, missing];
                    resp.encode(&mut out, version).unwrap();
                }
                let len = (out.len() - 4) as i32;
                out[0..4].copy_from_slice(&len.to_be_bytes());
                sock.write_all(&out).await.unwrap();
            }
        });
        addr.to_string()
    }

    #[tokio::test]
    async fn negotiates_versions_and_reads_metadata() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let addr = mock_broker(Arc::clone(&seen)).await;
        let cfg = ClientConfig {
            bootstrap: addr.clone(),
            ..Default::default()
        };
        let mut client = Client::connect(cfg).await.unwrap();
        let md = client.metadata(None).await.unwrap();
        assert_eq!(md.controller_id, 7);
        assert_eq!(md.brokers.len(), 1);
        assert_eq!(md.brokers[0].addr(), addr);
        let orders = md.topics.iter().find(|t| t.name == "orders").unwrap();
        assert_eq!(orders.partition_ids(), vec![0, 1]);
        assert_eq!(orders.replication_factor(), 1);
        let err = client.topic("nope").await.unwrap_err();
        assert!(
            matches!(err, ClientError::UnknownTopic(ref t) if t == "nope"),
            "{err}"
        );
        let seen = seen.lock().unwrap().clone();
        // ApiVersions at our max (4) is above the mock's 3 but Kafka brokers answer it anyway
        // with their range; Metadata then uses min(13, 9) = 9.
        assert_eq!(seen[0].0, 18);
        assert!(seen[1..].iter().all(|&(k, v)| k == 3 && v == 9), "{seen:?}");
    }
}
