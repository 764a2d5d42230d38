//! The HTTP listener: `/health/live`, `/health/ready` and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::state::Broker;

/// Builds the HTTP router.
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(broker)
}

async fn ready(State(_b): State<Arc<Broker>>) -> impl IntoResponse {
    // The HTTP listener starts after recovery and the Kafka listener bind, so reaching this
    // handler means the broker is serving.
    (StatusCode::OK, "ready\n")
}

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let parts: Vec<_> = b
        .all_partitions()
        .iter()
        .map(|h| {
            (
                h.topic.clone(),
                h.index,
                h.log.log_start_offset(),
                h.log.log_end_offset(),
                h.log.size_bytes(),
                h.log.segment_count(),
            )
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        b.metrics.render(&parts),
    )
}
