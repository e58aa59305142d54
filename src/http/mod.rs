//! The HTTP server: the contact API for nurturing tools and sales, the web console for marketing operations
//! (`/ui/`), health checks for orchestrators, and Prometheus metrics for SREs. `/v1/*` may require a bearer
//! token; `/healthz`, `/readyz`, `/metrics` and the console's static files stay open (the console asks for
//! the token and sends it with its API calls).

mod accounts;
mod api;
mod console;
pub mod metrics;
mod whatif;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::task::JoinHandle;

pub use api::{DEFAULT_LIMIT, LeaderboardQuery};
pub use metrics::metrics_handle;

use crate::app::Instance;

/// Every route served, as (method, path template): the one list the router and the OpenAPI test share.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/contacts/{id}"),
    ("GET", "/v1/contacts/{id}/series"),
    ("GET", "/v1/leaderboard"),
    ("GET", "/v1/accounts"),
    ("GET", "/v1/accounts/{id}"),
    ("GET", "/v1/rules"),
    ("POST", "/v1/whatif"),
    ("GET", "/"),
    ("GET", "/ui/"),
    ("GET", "/ui/console.js"),
    ("GET", "/ui/console.css"),
];

/// Binds the configured address and serves until the returned task is aborted.
pub async fn serve(instance: Arc<Instance>) -> Result<JoinHandle<()>, String> {
    metrics_handle();
    let listener = tokio::net::TcpListener::bind(instance.config.http.listen).await.map_err(|err| err.to_string())?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    tracing::info!(%address, "HTTP API and metrics listening");
    let refresher = metrics::spawn_refresher(instance.clone());
    let app = router(instance);
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "HTTP server stopped");
        }
        refresher.abort();
    }))
}

/// The routes, for the server and for tests.
pub fn router(instance: Arc<Instance>) -> Router {
    let api = Router::new()
        .route("/v1/contacts/{id}", get(api::contact))
        .route("/v1/contacts/{id}/series", get(api::series))
        .route("/v1/leaderboard", get(api::leaderboard))
        .route("/v1/accounts", get(accounts::ranking))
        .route("/v1/accounts/{id}", get(accounts::account))
        .route("/v1/rules", get(api::rules))
        .route("/v1/whatif", post(whatif::whatif).layer(DefaultBodyLimit::max(whatif::MAX_BODY_BYTES)))
        .route_layer(middleware::from_fn_with_state(instance.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "alive" })) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/", get(console::root))
        .route("/ui/", get(console::index))
        .route("/ui/console.js", get(console::script))
        .route("/ui/console.css", get(console::style))
        .merge(api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async { error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .with_state(instance)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn ready(State(instance): State<Arc<Instance>>) -> Response {
    let reason = instance.status.not_ready_reason();
    ::metrics::gauge!(crate::telemetry::READY).set(if reason.is_none() { 1.0 } else { 0.0 });
    match reason {
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
