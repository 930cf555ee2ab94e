//! The per-connection request log behind `GET /v1/connections/{id}/requests`. Entries are
//! written in batches by a background task, so logging never adds a commit to an IdP's request.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use scimgate_store::{RequestLogEntry, Store};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::scim::response::{LoggedError, Warnings};

/// How many requests each connection's log keeps.
pub const KEEP: u32 = 200;
const BATCH: usize = 512;

#[derive(Clone)]
pub struct RequestLog {
    sender: mpsc::Sender<(String, RequestLogEntry)>,
}

impl RequestLog {
    /// Starts the writer. It ends, after writing what is queued, once every sender is dropped.
    pub fn start(store: Arc<dyn Store>) -> (RequestLog, JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::channel::<(String, RequestLogEntry)>(16_384);
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while receiver.recv_many(&mut batch, BATCH).await > 0 {
                // Let a burst gather so one commit carries many entries.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while batch.len() < BATCH {
                    match receiver.try_recv() {
                        Ok(entry) => batch.push(entry),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.log_requests(&batch, KEEP).await {
                    tracing::warn!(error = %e, entries = batch.len(), "could not write the request log");
                }
                batch.clear();
            }
        });
        (RequestLog { sender }, task)
    }

    fn record(&self, connection_id: String, entry: RequestLogEntry) {
        // A full queue drops the entry: the log is for debugging and must not slow the IdP.
        let _ = self.sender.try_send((connection_id, entry));
    }
}

pub async fn middleware(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let time = OffsetDateTime::now_utc();
    let method = request.method().to_string();
    let full_path = request.uri().path().to_owned();
    let request_id = crate::ops::request_id(&request);
    let response = next.run(request).await;
    let mut parts = full_path
        .strip_prefix("/scim/v2/")
        .unwrap_or_default()
        .splitn(2, '/');
    let connection_id = parts.next().unwrap_or_default().to_owned();
    let path = format!("/{}", parts.next().unwrap_or_default());
    let error = response.extensions().get::<LoggedError>();
    let entry = RequestLogEntry {
        time,
        request_id,
        method,
        path,
        status: response.status().as_u16(),
        latency_ms: started.elapsed().as_millis() as u64,
        scim_type: error.and_then(|e| e.scim_type.clone()),
        detail: error.map(|e| e.detail.clone()),
        warnings: response
            .extensions()
            .get::<Warnings>()
            .map(|w| w.0.clone())
            .unwrap_or_default(),
    };
    if !connection_id.is_empty() {
        state.request_log.record(connection_id, entry);
    }
    response
}
