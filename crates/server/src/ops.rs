//! Operations endpoints: liveness, readiness and Prometheus metrics.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use scimgate_store::Kind;

use crate::app::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process-wide Prometheus recorder.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
            .map(|b| b.build_recorder());
        match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                // Only the first server in a process installs it; later ones share the handle.
                let _ = metrics::set_global_recorder(recorder);
                handle
            }
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Ok(n) = state.store.count_connections().await {
        metrics::gauge!("scimgate_connections").set(n as f64);
    }
    for kind in [Kind::User, Kind::Group] {
        if let Ok(n) = state.store.count_resources(kind).await {
            metrics::gauge!("scimgate_directory_resources", "kind" => kind.as_str()).set(n as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}

/// The id `SetRequestIdLayer` gave the request (or the one the client or proxy sent).
pub fn request_id(request: &Request) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Counts requests and their latency by surface, route template and status.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let surface = if route.starts_with("/scim/") {
        "scim"
    } else if route.starts_with("/v1") {
        "management"
    } else {
        "ops"
    };
    let method = request.method().to_string();
    let request_id = request_id(&request);
    // Only ids go to the log: the path of a SCIM request holds the connection and resource ids;
    // the query (filters naming people) and bodies stay out.
    let path = request.uri().path().to_owned();
    let connection_id = path
        .strip_prefix("/scim/v2/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let response = next.run(request).await;
    let latency = started.elapsed();
    tracing::info!(
        request_id,
        surface,
        connection_id,
        method,
        path,
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request"
    );
    let status = response.status().as_u16().to_string();
    metrics::counter!("scimgate_http_requests_total", "surface" => surface, "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!("scimgate_http_request_duration_seconds", "surface" => surface, "route" => route)
        .record(latency.as_secs_f64());
    response
}
