//! The HTTP listener: `/health/live`, `/health/ready`, `/metrics` (Prometheus text) and the
//! consumer-lag API `/v1/groups`, `/v1/groups/{group}` (JSON; see [`crate::lag`] for the
//! status rules), and `/v1/metadata` (the applied metadata image and its offset).

use std::fmt::Write as _;
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

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let b = &s.broker;
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
    let mut text = b.metrics.render(&parts);
    crate::alloc_stats::render(&mut text);
    load_groups(b).await;
    let groups = b.groups.overview(None);
    let evaluated: Vec<_> = groups
        .iter()
        .map(|g| (g.group_id.as_str(), s.lag.evaluate(b, g)))
        .collect();
    text.push_str(
        "# HELP sluice_group_lag Committed-offset lag of a consumer group on a partition.\n\
         # TYPE sluice_group_lag gauge\n",
    );
    for (g, lag) in &evaluated {
        for p in &lag.partitions {
            if let Some(l) = p.lag {
                let _ = writeln!(
                    text,
                    "sluice_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {l}",
                    label(g),
                    label(&p.topic),
                    p.partition
                );
            }
        }
    }
    text.push_str(
        "# HELP sluice_group_status Consumer group status: 0 OK, 1 WARNING, 2 STALLED, \
         3 STOPPED, 4 ERROR.\n# TYPE sluice_group_status gauge\n",
    );
    for (g, lag) in &evaluated {
        let _ = writeln!(
            text,
            "sluice_group_status{{group=\"{}\"}} {}",
            label(g),
            lag.status.code()
        );
    }
    crate::cluster::status::render_gauges(&crate::cluster::status::current(b).await, &mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
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

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
