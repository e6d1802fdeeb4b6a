//! The operator HTTP endpoint (`[ops] metrics_listen`), on axum/hyper: `GET /metrics` (the
//! registry in the OpenMetrics text format, which Prometheus scrapes) and `GET /health` (the
//! process answers). Anything else gets a 404 or 405 with a one-line reason. Keep it on loopback
//! or a management network: it has no authentication.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics;

/// A scrape that takes longer than this is cut off (a stuck client must not pin a task).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(registry)
}

pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(registry).layer(axum::middleware::from_fn(with_timeout));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn with_timeout(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "timed out\n").into_response(),
    }
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&registry),
    )
}

async fn health() -> &'static str {
    "ok\n"
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found: this endpoint serves GET /metrics and GET /health\n",
    )
}
