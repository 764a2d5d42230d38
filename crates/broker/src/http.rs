//! The HTTP listener: `/health/live`, `/health/ready`, `/metrics` (Prometheus text) and the
//! consumer-lag API `/v1/groups`, `/v1/groups/{group}` (JSON; see [`crate::lag`] for the
//! status rules), and `/v1/metadata` (the applied metadata image and its offset).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::lag::{load_groups, spawn_sampler, LagMonitor};
use crate::state::Broker;

#[derive(Clone)]
struct AppState {
    broker: Arc<Broker>,
    lag: Arc<LagMonitor>,
}

/// Builds the HTTP router and starts the consumer-lag sampler that feeds it.
pub fn router(broker: Arc<Broker>) -> Router {
    let lag = Arc::new(LagMonitor::default());
    spawn_sampler(Arc::downgrade(&broker), lag.clone());
    Router::new()
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/cluster", get(cluster_status))
        .route("/v1/groups", get(list_groups))
        .route("/v1/groups/{group}", get(describe_group))
        .route("/v1/metadata", get(metadata_image))
        .with_state(AppState { broker, lag })
}

/// The metadata image this broker has applied, with its offset in the metadata log: every
/// node of a settled cluster serves the same image (the cluster tests compare them).
async fn metadata_image(State(s): State<AppState>) -> Json<Value> {
    let b = &s.broker;
    Json(json!({
        "node_id": b.config.node_id,
        "offset": b.applied_offset(),
        "metadata": serde_json::to_value(&*b.metadata()).unwrap_or(Value::Null),
    }))
}

async fn ready() -> impl IntoResponse {
    // The HTTP listener starts after recovery and the Kafka listener bind, so reaching this
    // handler means the broker is serving.
    (StatusCode::OK, "ready\n")
}

async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    use crate::metrics::{Scrape, OPENMETRICS_TEXT, PROMETHEUS_TEXT};
    let b = &s.broker;
    load_groups(b).await;
    let parts = b.all_partitions();
    let offline = b
        .metadata()
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.leader < 0)
        .count();
    let (mut under_replicated, mut under_min_isr) = (0, 0);
    for (_, ur, umi) in parts.iter().filter_map(|p| p.leader_view()) {
        under_replicated += usize::from(ur);
        under_min_isr += usize::from(umi);
    }
    let scrape = Scrape::new(parts.len(), offline, under_replicated, under_min_isr);
    for h in &parts {
        scrape.partition(
            &h.topic,
            h.index,
            h.log.log_start_offset(),
            h.log.log_end_offset(),
            h.log.size_bytes(),
            h.log.segment_count(),
        );
    }
    for g in &b.groups.overview(None) {
        let lag = s.lag.evaluate(b, g);
        for p in &lag.partitions {
            if let Some(l) = p.lag {
                scrape.group_lag(&g.group_id, &p.topic, p.partition, l);
            }
        }
        scrape.group_status(&g.group_id, i64::from(lag.status.code()));
    }
    // Prometheus asks for OpenMetrics first; other scrapers get the Prometheus text format.
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let mut text = b.metrics.render(scrape, openmetrics);
    // The cluster gauges, before OpenMetrics' closing `# EOF`.
    let mut cluster = String::new();
    crate::cluster::status::render_gauges(&crate::cluster::status::current(b).await, &mut cluster);
    match text.rfind("# EOF") {
        Some(at) if openmetrics => text.insert_str(at, &cluster),
        _ => text.push_str(&cluster),
    }
    let content_type = if openmetrics {
        OPENMETRICS_TEXT
    } else {
        PROMETHEUS_TEXT
    };
    ([(header::CONTENT_TYPE, content_type)], text)
}

/// `GET /v1/cluster`: the cluster status document (see `sluice_controller::status`).
async fn cluster_status(State(s): State<AppState>) -> Json<Value> {
    let doc = crate::cluster::status::current(&s.broker).await;
    Json(serde_json::to_value(doc).unwrap_or(Value::Null))
}

async fn list_groups(State(s): State<AppState>) -> Json<Value> {
    load_groups(&s.broker).await;
    let groups = s.broker.groups.overview(None);
    let list: Vec<Value> = groups
        .iter()
        .map(|g| {
            let lag = s.lag.evaluate(&s.broker, g);
            json!({
                "group": g.group_id,
                "state": g.state.name(),
                "protocol_type": g.protocol_type,
                "members": g.members.len(),
                "total_lag": lag.total_lag,
                "status": lag.status.name(),
            })
        })
        .collect();
    Json(json!({ "groups": list }))
}

async fn describe_group(State(s): State<AppState>, Path(group): Path<String>) -> Response {
    load_groups(&s.broker).await;
    let Some(g) = s.broker.groups.overview(Some(&group)).into_iter().next() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("group {group:?} does not exist") })),
        )
            .into_response();
    };
    let lag = s.lag.evaluate(&s.broker, &g);
    let partitions: Vec<Value> = lag
        .partitions
        .iter()
        .map(|p| {
            let owner = g.members.iter().find(|m| {
                m.assignment
                    .iter()
                    .any(|(t, ps)| *t == p.topic && ps.contains(&p.partition))
            });
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "current_offset": p.current_offset,
                "log_end_offset": p.log_end_offset,
                "lag": p.lag,
                "member_id": owner.map(|m| m.member_id.as_str()),
                "host": owner.map(|m| m.client_host.as_str()),
                "client_id": owner.map(|m| m.client_id.as_str()),
                "status": p.status.name(),
            })
        })
        .collect();
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "host": m.client_host,
                "assignment": m.assignment.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "group": g.group_id,
        "state": g.state.name(),
        "protocol_type": g.protocol_type,
        "protocol": g.protocol,
        "generation": g.generation,
        "leader": g.leader,
        "status": lag.status.name(),
        "total_lag": lag.total_lag,
        "members": members,
        "partitions": partitions,
    }))
    .into_response()
}
