//! The broker's side of the cluster: talking to the active controller (registration,
//! heartbeats, controlled shutdown) and, on voter nodes, the controller service itself.

pub mod controller;
pub mod rpc;
pub mod status;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_controller::{BrokerRegistration, ControllerError};
use tokio::sync::watch;

use crate::state::Broker;
use rpc::{decode, encode, error_from_code, ControllerRequest, ControllerResponse};

/// How long one call to the active controller may take.
pub const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `req` to the active controller (wherever it is) and returns its answer; an
/// `Error` answer comes back as `Err` with the same Kafka code.
pub async fn call_controller(
    broker: &Broker,
    req: &ControllerRequest,
) -> Result<ControllerResponse, ControllerError> {
    let bytes = broker
        .quorum
        .call_leader(encode(req), CONTROLLER_CALL_TIMEOUT)
        .await?;
    match decode::<ControllerResponse>(&bytes)? {
        ControllerResponse::Error { code, message } => Err(error_from_code(code, message)),
        r => Ok(r),
    }
}

fn registration(broker: &Broker) -> BrokerRegistration {
    BrokerRegistration {
        node_id: broker.config.node_id,
        incarnation_id: broker.membership.incarnation_id,
        host: broker.advertised_host.clone(),
        port: broker.advertised_port,
        rack: broker.config.cluster.rack.clone(),
        inter_broker: broker.config.cluster.inter_broker_address(),
    }
}

/// Registers this broker (retrying until the controller accepts), then heartbeats until it
/// is unfenced. Logs progress every few seconds while it waits.
pub async fn register_and_unfence(broker: &Arc<Broker>) {
    let started = std::time::Instant::now();
    let mut last_log = started;
    loop {
        match register_once(broker).await {
            Ok(()) => break,
            Err(e) => {
                if last_log.elapsed() > Duration::from_secs(5) {
                    tracing::warn!("waiting to register with the controller: {e}");
                    last_log = std::time::Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    loop {
        match heartbeat_once(broker, false).await {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => tracing::debug!("heartbeat: {e}"),
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            tracing::warn!(
                applied = broker.applied_offset(),
                "still fenced: catching up with the metadata log"
            );
            last_log = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Serve only once this broker's own view shows it unfenced (and so its leaderships
    // restored), or a client's first Metadata could still see them elsewhere.
    let me = broker.config.node_id;
    let epoch = broker.broker_epoch();
    if !broker
        .wait_metadata(Duration::from_secs(10), |md| {
            md.brokers
                .get(&me)
                .is_some_and(|b| !b.fenced && b.broker_epoch == epoch)
        })
        .await
    {
        tracing::warn!("unfenced, but this broker has not applied it yet; serving anyway");
    }
    tracing::info!(
        broker_epoch = epoch,
        ms = started.elapsed().as_millis() as u64,
        "registered and unfenced"
    );
}

async fn register_once(broker: &Broker) -> Result<(), ControllerError> {
    let req = ControllerRequest::Register {
        registration: registration(broker),
        replaces: broker.membership.previous_incarnation,
    };
    match call_controller(broker, &req).await? {
        ControllerResponse::Registered { broker_epoch } => {
            remember_incarnation(broker);
            broker
                .membership
                .broker_epoch
                .store(broker_epoch, Ordering::Relaxed);
            broker.membership.fenced.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => Err(ControllerError::UnknownServer(format!(
            "unexpected answer to a registration: {other:?}"
        ))),
    }
}

/// The file that remembers the incarnation registered from this data dir.
pub const INCARNATION_FILE: &str = "broker-incarnation";

/// Reads the incarnation last registered from `data_dir`, if any.
pub fn previous_incarnation(data_dir: &std::path::Path) -> Option<uuid::Uuid> {
    let text = std::fs::read_to_string(data_dir.join(INCARNATION_FILE)).ok()?;
    uuid::Uuid::parse_str(text.trim()).ok()
}

fn remember_incarnation(broker: &Broker) {
    let path = broker.config.data_dir.join(INCARNATION_FILE);
    let id = broker.membership.incarnation_id.to_string();
    if let Err(e) = crate::dirs::write_atomically(&path, id.as_bytes()) {
        tracing::warn!(
            "cannot record this broker's incarnation in {}: {e}",
            path.display()
        );
    }
}

/// One heartbeat; returns whether the broker is still fenced. Re-registers when the
/// controller no longer knows this registration.
async fn heartbeat_once(broker: &Broker, want_shutdown: bool) -> Result<bool, ControllerError> {
    Ok(heartbeat(broker, want_shutdown).await?.0)
}

/// One heartbeat: (fenced, should_shut_down).
async fn heartbeat(broker: &Broker, want_shutdown: bool) -> Result<(bool, bool), ControllerError> {
    let req = ControllerRequest::Heartbeat {
        node_id: broker.config.node_id,
        broker_epoch: broker.broker_epoch(),
        metadata_offset: broker.applied_offset() as i64,
        want_fence: false,
        want_shutdown,
    };
    match call_controller(broker, &req).await {
        Ok(ControllerResponse::Heartbeat {
            is_fenced,
            should_shut_down,
            ..
        }) => {
            let was = broker.membership.fenced.swap(is_fenced, Ordering::Relaxed);
            if was != is_fenced {
                tracing::info!(
                    fenced = is_fenced,
                    "controller changed this broker's fencing"
                );
            }
            Ok((is_fenced, should_shut_down))
        }
        Ok(other) => Err(ControllerError::UnknownServer(format!(
            "unexpected answer to a heartbeat: {other:?}"
        ))),
        Err(
            e @ (ControllerError::StaleBrokerEpoch(_) | ControllerError::BrokerIdNotRegistered(_)),
        ) => {
            tracing::warn!("controller lost this broker's registration ({e}); registering again");
            broker.membership.fenced.store(true, Ordering::Relaxed);
            register_once(broker).await?;
            Ok((true, false))
        }
        Err(e) => Err(e),
    }
}

/// Heartbeats every `broker.heartbeat.interval.ms` until `stop` is set.
pub fn spawn_heartbeats(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(
        broker
            .config
            .settings
            .get_i64("broker.heartbeat.interval.ms")
            .unwrap_or(2000)
            .clamp(10, 60_000) as u64,
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = heartbeat(&broker, false).await {
                tracing::debug!("heartbeat failed: {e}");
            }
        }
    });
}

/// Controlled shutdown (KIP-631): asks the controller to move this broker's leaderships away
/// and waits until it says the broker may stop, or `max_wait` passes.
pub async fn controlled_shutdown(broker: &Broker, max_wait: Duration) {
    if broker.broker_epoch() < 0 {
        return;
    }
    let deadline = tokio::time::Instant::now() + max_wait;
    while tokio::time::Instant::now() < deadline {
        match heartbeat(broker, true).await {
            Ok((_, true)) => {
                tracing::info!("controlled shutdown: leaderships moved away");
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("controlled shutdown heartbeat: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!("controlled shutdown: the controller did not confirm in time; stopping anyway");
}
