//! The operator HTTP endpoint (`[ops] metrics_listen`), on axum/hyper: `GET /metrics` (the
//! registry in the OpenMetrics text format, which Prometheus scrapes), `GET /health` (the
//! process answers: a liveness probe) and `GET /ready` (200 when every part a call or an event
//! needs works, else 503 with the reasons in fixed words: a readiness probe, a load balancer's
//! check). Anything else gets a 404 or 405 with a one-line reason. Keep it on loopback or a
//! management network: it has no authentication.

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

/// What `/ready` asks.
pub trait Readiness: Send + Sync {
    /// Why the daemon is not ready, each reason in fixed words; empty when it is.
    fn not_ready(&self) -> Vec<String>;
}

#[derive(Clone)]
struct Endpoints {
    registry: Arc<Registry>,
    readiness: Arc<dyn Readiness>,
}

pub fn router(registry: Arc<Registry>, readiness: Arc<dyn Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .with_state(Endpoints {
            registry,
            readiness,
        })
}

pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    readiness: Arc<dyn Readiness>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(registry, readiness).layer(axum::middleware::from_fn(with_timeout));
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

async fn scrape(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&endpoints.registry),
    )
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(endpoints): State<Endpoints>) -> (StatusCode, String) {
    let reasons = endpoints.readiness.not_ready();
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", reasons.join("; ")),
        )
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found: this endpoint serves GET /metrics, GET /health and GET /ready\n",
    )
}
