//! Metadata: brokers, controller, topics with ids and partitions; auto-creates topics when the
//! client allows it and `auto.create.topics.enable` is on.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use sluice_controller::{Metadata, TopicInfo};
use uuid::Uuid;

use super::sb;
use crate::codes;
use crate::partition::TopicRef;
use crate::state::Broker;

pub async fn handle(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut md = broker.metadata();
    // Which topics: None (or empty list on v0) = all.
    let requested: Option<Vec<(Option<String>, Uuid)>> = match &req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.iter()
                .map(|x| (x.name.as_ref().map(|n| n.to_string()), x.topic_id))
                .collect(),
        ),
    };
    let auto_create = (version < 4 || req.allow_auto_topic_creation)
        && broker.config.settings.auto_create_topics_enable();

    let mut topics = Vec::new();
    match requested {
        None => {
            for t in md.topics.values() {
                topics.push(topic_entry(broker, &md, t));
            }
        }
        Some(list) => {
            for (name, id) in list {
                match name {
                    Some(name) => {
                        if let Some(t) = md.topics.get(&name) {
                            topics.push(topic_entry(broker, &md, t));
                            continue;
                        }
                        if let Err(e) = sluice_controller::validate_topic_name(&name) {
                            topics.push(error_topic(
                                Some(name),
                                Uuid::nil(),
                                codes::controller_error(&e),
                            ));
                            continue;
                        }
                        if auto_create {
                            match super::admin::auto_create(broker, &name).await {
                                Ok(new_md) => {
                                    md = new_md;
                                    if let Some(t) = md.topics.get(&name) {
                                        topics.push(topic_entry(broker, &md, t));
                                        continue;
                                    }
                                }
                                Err(code) => {
                                    topics.push(error_topic(Some(name), Uuid::nil(), code));
                                    continue;
                                }
                            }
                        }
                        topics.push(error_topic(
                            Some(name),
                            Uuid::nil(),
                            codes::UNKNOWN_TOPIC_OR_PARTITION,
                        ));
                    }
                    None => match md.topic_by_id(&id) {
                        Some(t) => topics.push(topic_entry(broker, &md, t)),
                        None => topics.push(error_topic(None, id, codes::UNKNOWN_TOPIC_ID)),
                    },
                }
            }
        }
    }

    let mut resp = MetadataResponse::default();
    resp.brokers = brokers(&md);
    resp.cluster_id = Some(sb(broker.cluster_id.clone()));
    resp.controller_id = BrokerId(controller_id(broker, &md));
    resp.topics = topics;
    resp
}

/// The "controller" clients are told about. As in KRaft this is a live broker, not the
/// quorum leader: clients send admin requests there and it forwards them to the active
/// controller. Sluice names the broker answering (the client is connected to it already, and
/// it stays a valid answer when the quorum leader dies), else the lowest unfenced broker.
pub fn controller_id(broker: &Broker, md: &Metadata) -> i32 {
    let me = broker.config.node_id;
    if md.brokers.get(&me).is_some_and(|b| !b.fenced) {
        return me;
    }
    md.brokers
        .values()
        .find(|b| !b.fenced)
        .map(|b| b.node_id)
        .unwrap_or(me)
}

/// Unfenced brokers (a fenced or shut-down broker is not given to clients).
fn brokers(md: &Metadata) -> Vec<MetadataResponseBroker> {
    md.brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            let mut e = MetadataResponseBroker::default();
            e.node_id = BrokerId(b.node_id);
            e.host = sb(b.host.clone());
            e.port = b.port;
            e.rack = b.rack.clone().map(sb);
            e
        })
        .collect()
}

fn error_topic(name: Option<String>, id: Uuid, code: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.error_code = code;
    t.name = name.map(|n| TopicName(sb(n)));
    t.topic_id = id;
    t
}

fn topic_entry(broker: &Broker, md: &Metadata, t: &TopicInfo) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default();
    e.name = Some(TopicName(sb(t.name.clone())));
    e.topic_id = t.id;
    e.is_internal = t.internal;
    e.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p.index;
            mp.leader_id = BrokerId(p.leader);
            mp.leader_epoch = p.leader_epoch;
            mp.replica_nodes = p.replicas.iter().map(|r| BrokerId(*r)).collect();
            mp.isr_nodes = p.isr.iter().map(|r| BrokerId(*r)).collect();
            // Replicas on brokers that are fenced or not registered are offline.
            mp.offline_replicas = p
                .replicas
                .iter()
                .filter(|r| md.brokers.get(r).is_none_or(|b| b.fenced))
                .map(|r| BrokerId(*r))
                .collect();
            if p.leader < 0 {
                mp.error_code = codes::LEADER_NOT_AVAILABLE;
            } else if p.leader == broker.config.node_id {
                let found = broker.local_partition(TopicRef::Name(&t.name), p.index);
                if found.err() == Some(codes::KAFKA_STORAGE_ERROR) {
                    mp.error_code = codes::KAFKA_STORAGE_ERROR;
                    mp.offline_replicas = vec![BrokerId(broker.config.node_id)];
                }
            }
            mp
        })
        .collect();
    e
}
