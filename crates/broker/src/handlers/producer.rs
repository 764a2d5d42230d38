//! InitProducerId for idempotent producers (transactions come later).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::codes;
use crate::state::Broker;

pub async fn init_producer_id(
    broker: &Broker,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        // Transactions are not implemented. A retriable error would make clients retry for
        // ever; this one fails the transactional producer at once.
        resp.error_code = codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return resp;
    }
    // KIP-360: an idempotent producer that already has an id may ask for an epoch bump.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return resp;
    }
    match broker.producer_ids.allocate(broker).await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(code) => resp.error_code = code,
    }
    resp
}
