//! Admin requests that change metadata, carried out by the active controller (Kafka's
//! Envelope forwarding, KIP-590). A broker that does not lead the metadata quorum sends the
//! client's request body, with the client's principal and address, to the quorum leader; the
//! leader runs its own handler (planning against its up-to-date metadata) and returns the
//! encoded response and the metadata offset holding the change; the asking broker waits until
//! it has applied that offset, then answers its client.

use std::sync::{Arc, Weak};

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_controller::ControllerError;
use sluice_protocol::Request;

use crate::cluster::controller::ForwardHandler;
use crate::cluster::rpc::{ControllerRequest, ControllerResponse, Envelope};
use crate::state::{Broker, METADATA_WAIT};

/// The principal requests are made as until authentication exists.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Whether this API changes cluster metadata and so is carried out by the controller.
pub fn is_forwarded_api(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::CreateTopics
            | ApiKey::DeleteTopics
            | ApiKey::CreatePartitions
            | ApiKey::ElectLeaders
            | ApiKey::AlterPartitionReassignments
            | ApiKey::AlterConfigs
            | ApiKey::IncrementalAlterConfigs
    )
}

/// Whether `request` should be forwarded from this broker.
pub fn should_forward(broker: &Broker, api: ApiKey) -> bool {
    is_forwarded_api(api) && !broker.config.cluster.is_single() && !broker.quorum.is_leader()
}

/// Forwards `request` to the active controller and returns its response. `Err`: the
/// controller could not be reached (the caller handles the request locally, where the
/// metadata commit reports the same unavailability as an error code).
pub async fn forward(
    broker: &Broker,
    request: &Request,
    client_host: &str,
) -> Result<ResponseKind, ControllerError> {
    let version = request.header.request_api_version;
    let mut body = BytesMut::new();
    request
        .body
        .encode(&mut body, version)
        .map_err(|e| ControllerError::InvalidRequest(format!("re-encoding for forwarding: {e}")))?;
    let env = Envelope {
        api_key: request.api_key as i16,
        api_version: version,
        client_id: request
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        principal: ANONYMOUS.to_string(),
        client_address: client_host.to_string(),
        body: body.to_vec(),
    };
    match crate::cluster::call_controller(broker, &ControllerRequest::Forward(env)).await? {
        ControllerResponse::Forwarded {
            body,
            metadata_offset,
        } => {
            let mut buf = bytes::Bytes::from(body);
            let resp = ResponseKind::decode(request.api_key, &mut buf, version).map_err(|e| {
                ControllerError::UnknownServer(format!("undecodable forwarded response: {e}"))
            })?;
            // Answer once this broker shows the change (a client reading Metadata from us
            // right after must see its topic); if it lags, answer anyway.
            if let Err(e) = broker.wait_applied(metadata_offset, METADATA_WAIT).await {
                tracing::warn!("forwarded change not applied here yet: {e}");
            }
            Ok(resp)
        }
        other => Err(ControllerError::UnknownServer(format!(
            "unexpected answer to a forwarded request: {other:?}"
        ))),
    }
}

/// The function the controller service calls to run a forwarded request on this node.
pub fn handler(broker: &Arc<Broker>) -> ForwardHandler {
    let weak: Weak<Broker> = Arc::downgrade(broker);
    Arc::new(move |env: Envelope| {
        let weak = weak.clone();
        Box::pin(async move {
            let broker = weak
                .upgrade()
                .ok_or_else(|| ControllerError::NotController("broker stopped".into()))?;
            let api = ApiKey::try_from(env.api_key).map_err(|_| {
                ControllerError::InvalidRequest(format!("unknown API key {}", env.api_key))
            })?;
            if !is_forwarded_api(api) {
                return Err(ControllerError::InvalidRequest(format!(
                    "{api:?} is not forwarded to the controller"
                )));
            }
            let mut buf = bytes::Bytes::from(env.body);
            let body = RequestKind::decode(api, &mut buf, env.api_version).map_err(|e| {
                ControllerError::InvalidRequest(format!("undecodable forwarded request: {e}"))
            })?;
            tracing::debug!(?api, principal = %env.principal, client = %env.client_address, "forwarded request");
            let header = RequestHeader::default()
                .with_request_api_key(env.api_key)
                .with_request_api_version(env.api_version)
                .with_client_id(Some(StrBytes::from_string(env.client_id)));
            let request = Request {
                header,
                api_key: api,
                body,
            };
            let resp = super::handle(&broker, request, &env.client_address)
                .await
                .map_err(|e| ControllerError::InvalidRequest(e.0))?
                .ok_or_else(|| ControllerError::UnknownServer("no response".into()))?;
            let mut out = BytesMut::new();
            resp.encode(&mut out, env.api_version).map_err(|e| {
                ControllerError::UnknownServer(format!("encoding forwarded response: {e}"))
            })?;
            Ok(out.to_vec())
        })
    })
}
