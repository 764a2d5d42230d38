//! AlterConfigs (replace a resource's overrides) and IncrementalAlterConfigs (SET, DELETE,
//! APPEND, SUBTRACT), for topics and brokers. Broker configs are static in Sluice (set at
//! start) except the dynamic ones (`sluice_controller::DYNAMIC_BROKER_CONFIGS`: the
//! replication throttle rates), which are kept in the metadata per node id or for the
//! cluster-wide default (resource name "").

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::{
    plan_alter_broker_configs, plan_incremental_alter_configs, plan_replace_configs, AlterConfigOp,
    ControllerError, MetadataCommand,
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
            tracing::info!(resource = name, "altered configs");
            (codes::NONE, None)
        }
        Err(e) => err(e),
    }
}

fn unsupported(resource_type: i8) -> Outcome {
    (
        codes::INVALID_REQUEST,
        Some(format!("resource type {resource_type} can't be altered")),
    )
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
        let (code, msg) = if res.resource_type == RESOURCE_BROKER {
            let ops: Vec<_> = res
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        AlterConfigOp::Set,
                        c.value.as_ref().map(StrBytes::to_string),
                    )
                })
                .collect();
            let md = broker.metadata();
            match plan_alter_broker_configs(&md, &name, &ops, true) {
                Ok(cmd) => apply(broker, &name, cmd, req.validate_only).await,
                Err(e) => err(e),
            }
        } else if res.resource_type != RESOURCE_TOPIC {
            unsupported(res.resource_type)
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
        let (code, msg) = if res.resource_type != RESOURCE_TOPIC
            && res.resource_type != RESOURCE_BROKER
        {
            unsupported(res.resource_type)
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
                    let planned = if res.resource_type == RESOURCE_BROKER {
                        plan_alter_broker_configs(&md, &name, &ops, false)
                    } else {
                        plan_incremental_alter_configs(&md, &name, &ops, &broker.config.settings)
                    };
                    match planned {
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
