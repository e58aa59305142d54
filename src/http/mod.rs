//! The HTTP server: the contact API for nurturing tools and sales, health checks for orchestrators, and
//! Prometheus metrics for SREs. `/v1/*` may require a bearer token; `/healthz`, `/readyz` and `/metrics`
//! stay open for probes and scrapers.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::app::Instance;
use crate::hashing::partition_for_key;
use crate::runtime::now_ms;
use crate::runtime::record::StoredContact;
use crate::scoring::ContactView;

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok();
            crate::telemetry::describe();
            handle
        })
        .as_ref()
}

/// Binds the configured address and serves until the returned task is aborted.
pub async fn serve(instance: Arc<Instance>) -> Result<JoinHandle<()>, String> {
    metrics_handle();
    let listener = tokio::net::TcpListener::bind(instance.config.http.listen).await.map_err(|err| err.to_string())?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    tracing::info!(%address, "HTTP API and metrics listening");
    let app = router(instance);
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "HTTP server stopped");
        }
    }))
}

/// The routes, for the server and for tests.
pub fn router(instance: Arc<Instance>) -> Router {
    let api = Router::new()
        .route("/v1/contacts/{id}", get(contact))
        .route("/v1/rules", get(rules))
        .route_layer(middleware::from_fn_with_state(instance.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "alive" })) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(instance)
}

use axum::Json;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn ready(State(instance): State<Arc<Instance>>) -> Response {
    match instance.status.not_ready_reason() {
        None => Json(json!({ "status": "ready", "partitions": instance.status.owned() })).into_response(),
        Some(reason) => error(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn metrics() -> Response {
    match metrics_handle() {
        Some(handle) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response(),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "metrics recorder unavailable"),
    }
}

async fn rules(State(instance): State<Arc<Instance>>) -> Response {
    let rules = instance.rules.get();
    Json(json!({
        "version": rules.version,
        "name": rules.name,
        "groups": rules.groups.iter().map(|group| &group.name).collect::<Vec<_>>(),
        "rules": rules.rules.iter().map(|rule| json!({ "id": rule.id, "on": rule.event_type })).collect::<Vec<_>>(),
        "thresholds": rules.thresholds.iter().map(|threshold| &threshold.name).collect::<Vec<_>>(),
        "phases": rules.phases.iter().map(|phase| &phase.name).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn contact(State(instance): State<Arc<Instance>>, Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > crate::event::MAX_FIELD_BYTES {
        return error(StatusCode::BAD_REQUEST, "invalid contact id");
    }
    let partition = partition_for_key(id.as_bytes(), instance.partitions) as i32;
    if instance.status.is_restoring(partition) {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("partition {partition} is restoring; retry shortly"));
    }
    if !instance.status.owns(partition) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            format!("partition {partition} is not owned by this instance; ask the instance that owns it"),
        );
    }
    let store = instance.store.clone();
    let rules = instance.rules.get();
    let lookup = tokio::task::spawn_blocking(move || {
        let bytes = store.get(partition, &id).map_err(|err| err.to_string())?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let stored = StoredContact::decode(&rules, &id, &bytes).map_err(|err| err.to_string())?;
        Ok::<_, String>(stored.state.map(|state| ContactView::new(&rules, &state, now_ms())))
    })
    .await;
    match lookup {
        Ok(Ok(Some(view))) => Json(view).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "unknown contact"),
        Ok(Err(reason)) => error(StatusCode::INTERNAL_SERVER_ERROR, reason),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "lookup failed"),
    }
}

async fn require_token(
    State(instance): State<Arc<Instance>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &instance.config.http.token else {
        return next.run(request).await;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) {
        next.run(request).await
    } else {
        error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
    }
}

/// Compares without an early exit, so response time does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (index, byte) in b.iter().enumerate() {
        difference |= usize::from(a.get(index).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret-longer", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
