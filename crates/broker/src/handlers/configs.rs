//! AlterConfigs (replace a resource's overrides) and IncrementalAlterConfigs (SET, DELETE,
//! APPEND, SUBTRACT), for topics. Broker configs are static in Sluice (set at start).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::{
    plan_incremental_alter_configs, plan_replace_configs, AlterConfigOp, ControllerError,
    MetadataCommand,
};

use super::sb;
use crate::codes;
use crate::state::Broker;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Outcome for one resource: error code and message.
type Outcome = (i16, Option<String>);

async fn apply(broker: &Broker, name: &str, cmd: MetadataCommand, validate_only: bool) -> Outcome {
    if validate_only {
        return (codes::NONE, None);
    }
    // Committing reconciles: the topic's partitions take the new config on return.
    match broker.commit(cmd).await {
        Ok(_) => {
            tracing::info!(topic = name, "altered topic configs");
            (codes::NONE, None)
        }
        Err(e) => err(e),
    }
}

fn not_topic(resource_type: i8, name: &str) -> Outcome {
    if resource_type == RESOURCE_BROKER {
        (
            codes::INVALID_REQUEST,
            Some(format!(
                "broker {name}: Sluice broker configs are static; set them with --set KEY=VALUE and restart"
            )),
        )
    } else {
        (
            codes::INVALID_REQUEST,
            Some(format!("resource type {resource_type} can't be altered")),
        )
    }
}

fn err(e: ControllerError) -> Outcome {
    (codes::controller_error(&e), Some(e.to_string()))
}

pub async fn alter_configs(broker: &Arc<Broker>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let _g = broker.admin_lock.lock().await;
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let (code, msg) = if res.resource_type != RESOURCE_TOPIC {
            not_topic(res.resource_type, &name)
        } else {
            let mut map = BTreeMap::new();
            let mut null = None;
            for c in &res.configs {
                match &c.value {
                    Some(v) => {
                        map.insert(c.name.to_string(), v.to_string());
                    }
                    None => null = Some(c.name.to_string()),
                }
            }
            match null {
                Some(k) => (
                    codes::INVALID_CONFIG,
                    Some(format!("config {k} has a null value")),
                ),
                None => {
                    let md = broker.metadata();
                    match plan_replace_configs(&md, &name, &map) {
                        Ok(cmd) => apply(broker, &name, cmd, req.validate_only).await,
                        Err(e) => err(e),
                    }
                }
            }
        };
        let mut r = AlterConfigsResourceResponse::default();
        r.error_code = code;
        r.error_message = msg.map(sb);
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name;
        responses.push(r);
    }
    let mut resp = AlterConfigsResponse::default();
    resp.responses = responses;
    resp
}

pub async fn incremental_alter_configs(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let _g = broker.admin_lock.lock().await;
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let name = res.resource_name.to_string();
        let (code, msg) = if res.resource_type != RESOURCE_TOPIC {
            not_topic(res.resource_type, &name)
        } else {
            let mut ops = Vec::with_capacity(res.configs.len());
            let mut bad = None;
            for c in &res.configs {
                match AlterConfigOp::from_wire(c.config_operation) {
                    Some(op) => ops.push((
                        c.name.to_string(),
                        op,
                        c.value.as_ref().map(StrBytes::to_string),
                    )),
                    None => bad = Some(c.config_operation),
                }
            }
            match bad {
                Some(op) => (
                    codes::INVALID_REQUEST,
                    Some(format!("unknown config operation {op}")),
                ),
                None => {
                    let md = broker.metadata();
                    match plan_incremental_alter_configs(&md, &name, &ops, &broker.config.settings)
                    {
                        Ok(cmd) => apply(broker, &name, cmd, req.validate_only).await,
                        Err(e) => err(e),
                    }
                }
            }
        };
        let mut r = AlterConfigsResourceResponse::default();
        r.error_code = code;
        r.error_message = msg.map(sb);
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name;
        responses.push(r);
    }
    let mut resp = IncrementalAlterConfigsResponse::default();
    resp.responses = responses;
    resp
}
