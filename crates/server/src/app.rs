//! The application: shared state, the one router, and the server's lifecycle.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{middleware, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use scimgate_protocol::{ResourceSchemas, SchemaRegistry};
use scimgate_store::{Kind, Store};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::request_log::RequestLog;
use crate::scim::key_cache::ScimKeyCache;
use crate::webhooks::WebhookSettings;
use crate::{management, ops, scim};

/// The largest page a list returns (advertised as `filter.maxResults`).
pub const MAX_RESULTS: u64 = 1000;
/// The page size when a list request names no `count`.
pub const DEFAULT_PAGE_SIZE: u64 = 100;

/// Per-connection request rate limit for the SCIM API; `None` when disabled.
pub struct ScimRateLimit(Option<DefaultKeyedRateLimiter<String>>);

impl ScimRateLimit {
    pub fn per_second(rate: u32) -> Self {
        ScimRateLimit(NonZeroU32::new(rate).map(|r| {
            let burst = r.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            RateLimiter::keyed(Quota::per_second(r).allow_burst(burst))
        }))
    }

    pub fn allow(&self, connection_id: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|l| l.check_key(&connection_id.to_owned()).is_ok())
    }
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub registry: SchemaRegistry,
    pub public_url: String,
    pub integration_key: Option<String>,
    pub request_log: RequestLog,
    pub scim_rate_limit: ScimRateLimit,
    pub scim_keys: ScimKeyCache,
    /// Groups with more members than this answer PATCH without `members`.
    pub patch_response_member_limit: u64,
    /// How long users deleted through SCIM stay readable in the directory API.
    pub deleted_user_retention: time::Duration,
    /// How long events stay in the log (and queued for webhooks).
    pub event_retention: time::Duration,
    /// How long before a SCIM key expires `connection.scim_api_key_expiring` is sent.
    pub key_expiry_warning: time::Duration,
    pub webhooks: WebhookSettings,
    /// Wakes the webhook dispatcher after a write, so events go out without waiting for a poll.
    pub events_written: tokio::sync::Notify,
    pub http: reqwest::Client,
}

impl AppState {
    pub fn view(&self, kind: Kind) -> ResourceSchemas<'_> {
        match self.registry.view(kind.as_str()) {
            Some(view) => view,
            None => unreachable!("the standard registry defines User and Group"),
        }
    }
}

/// Settings of one running server.
pub struct Settings {
    pub public_url: String,
    pub integration_key: Option<String>,
    pub max_body_bytes: usize,
    pub scim_rate_limit: u32,
    /// How long a resolved SCIM key is trusted without reading it again (zero: always read).
    pub scim_key_cache_ttl: std::time::Duration,
    pub patch_response_member_limit: u64,
    pub deleted_user_retention_days: u32,
    pub event_retention_days: u32,
    pub key_expiry_warning_days: u32,
    pub webhooks: WebhookSettings,
}

async fn fallback(request: Request) -> Response {
    if request.uri().path().starts_with("/v1") {
        management::not_found().await
    } else {
        (StatusCode::NOT_FOUND, "not found").into_response()
    }
}

/// After any request that may have written, wakes the webhook dispatcher.
async fn wake_dispatcher(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: Request,
    next: middleware::Next,
) -> Response {
    let writes = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    if writes && response.status().is_success() {
        state.events_written.notify_one();
    }
    response
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let scim = scim::router(state.clone()).layer(middleware::from_fn_with_state(
        state.clone(),
        crate::request_log::middleware,
    ));
    Router::new()
        .merge(scim)
        .merge(management::router(state.clone()))
        .merge(ops::router())
        .merge(crate::setup::router())
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            wake_dispatcher,
        ))
        .layer(middleware::from_fn(management::error::attach_request_id))
        .layer(middleware::from_fn(ops::record))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// A server bound to its port, ready to run.
pub struct Server {
    listener: TcpListener,
    app: Router,
    log_writer: tokio::task::JoinHandle<()>,
    /// The mapping recompute, retention and webhook dispatch tasks.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn bind(
        store: Arc<dyn Store>,
        addr: SocketAddr,
        settings: Settings,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let (request_log, log_writer) = RequestLog::start(store.clone());
        let state = Arc::new(AppState {
            store,
            registry: SchemaRegistry::standard(),
            public_url: settings.public_url,
            integration_key: settings.integration_key,
            request_log,
            scim_rate_limit: ScimRateLimit::per_second(settings.scim_rate_limit),
            scim_keys: ScimKeyCache::new(settings.scim_key_cache_ttl),
            patch_response_member_limit: settings.patch_response_member_limit,
            deleted_user_retention: time::Duration::days(i64::from(
                settings.deleted_user_retention_days,
            )),
            event_retention: time::Duration::days(i64::from(settings.event_retention_days)),
            key_expiry_warning: time::Duration::days(i64::from(settings.key_expiry_warning_days)),
            webhooks: settings.webhooks,
            events_written: tokio::sync::Notify::new(),
            http: crate::webhooks::sender::client(),
        });
        ops::prometheus();
        let mapping_worker = crate::mapping_worker::start(state.clone());
        let retention = crate::retention::start(state.clone());
        let dispatcher = crate::webhooks::dispatcher::start(state.clone());
        Ok(Server {
            listener,
            app: router(state, settings.max_body_bytes),
            log_writer,
            background: vec![mapping_worker, retention, dispatcher],
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish and flushes the
    /// request log.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await?;
        // A recompute batch cut short leaves its users leased; the lease lapses and another
        // run maps them.
        for task in self.background {
            task.abort();
            let _ = task.await;
        }
        // The router and the worker (and with them the last senders of the request log) are
        // gone: the writer drains its queue and ends.
        let _ = self.log_writer.await;
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
