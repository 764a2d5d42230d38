//! Producer id allocation for idempotent producers.
//!
//! Ids are unique cluster-wide: the active controller hands each broker blocks of ids
//! (Kafka's AllocateProducerIds, KIP-730) by committing `AllocateProducerIds` to the metadata
//! log, so a block is never given twice, across restarts and brokers. The broker hands out the
//! ids of its current block and asks for the next block when it is used up.

use tokio::sync::Mutex;

use crate::cluster::rpc::{ControllerRequest, ControllerResponse};
use crate::state::Broker;

#[derive(Debug, Default)]
struct Block {
    next: i64,
    end: i64,
}

/// This broker's producer id allocator.
#[derive(Debug, Default)]
pub struct ProducerIds {
    block: Mutex<Block>,
}

impl ProducerIds {
    /// An allocator with no block yet.
    pub fn new() -> ProducerIds {
        ProducerIds::default()
    }

    /// Allocates a fresh producer id, fetching a new block from the controller when needed.
    /// Err: a Kafka error code.
    pub async fn allocate(&self, broker: &Broker) -> Result<i64, i16> {
        let mut b = self.block.lock().await;
        if b.next >= b.end {
            let req = ControllerRequest::AllocateProducerIds {
                node_id: broker.config.node_id,
                broker_epoch: broker.broker_epoch(),
            };
            match crate::cluster::call_controller(broker, &req).await {
                Ok(ControllerResponse::ProducerIds { first, size }) if size > 0 => {
                    b.next = first;
                    b.end = first + i64::from(size);
                }
                Ok(other) => {
                    tracing::warn!("producer id block request answered {other:?}");
                    return Err(crate::codes::COORDINATOR_LOAD_IN_PROGRESS);
                }
                Err(e) => {
                    tracing::warn!("producer id block request failed: {e}");
                    return Err(crate::codes::COORDINATOR_LOAD_IN_PROGRESS);
                }
            }
        }
        let id = b.next;
        b.next += 1;
        Ok(id)
    }
}
