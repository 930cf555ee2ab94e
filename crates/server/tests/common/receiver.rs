//! The app's side of webhooks: a real HTTP receiver on a loopback port that records what it
//! accepts, can be taken down, and notices an event in flight twice at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Received {
    pub fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
    pub fn sequence(&self) -> i64 {
        self.body["sequence"].as_i64().unwrap_or_default()
    }
    pub fn connection(&self) -> Option<&str> {
        self.body["connection_id"].as_str()
    }
}

#[derive(Default)]
struct Inner {
    up: AtomicBool,
    delay_ms: AtomicU64,
    attempts: AtomicU64,
    overlaps: AtomicU64,
    received: Mutex<Vec<Received>>,
    in_flight: Mutex<HashMap<String, u32>>,
}

pub struct Receiver {
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("webhook-id");
    inner.attempts.fetch_add(1, Ordering::SeqCst);
    {
        let mut flying = inner.in_flight.lock().expect("lock");
        let n = flying.entry(id.clone()).or_default();
        if *n > 0 {
            inner.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        *n += 1;
    }
    let delay = inner.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let up = inner.up.load(Ordering::SeqCst);
    if up {
        inner.received.lock().expect("lock").push(Received {
            id: id.clone(),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            raw: body.to_vec(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
    }
    if let Some(n) = inner.in_flight.lock().expect("lock").get_mut(&id) {
        *n -= 1;
    }
    if up {
        (StatusCode::NO_CONTENT, "")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance")
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Inner::default());
        inner.up.store(true, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        let app = Router::new()
            .route("/hooks", post(accept))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, inner, task }
    }

    pub fn set_up(&self, up: bool) {
        self.inner.up.store(up, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.inner
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Requests answered, successfully or not.
    pub fn attempts(&self) -> u64 {
        self.inner.attempts.load(Ordering::SeqCst)
    }

    /// How often a request arrived for an event already in flight.
    pub fn overlaps(&self) -> u64 {
        self.inner.overlaps.load(Ordering::SeqCst)
    }

    /// What the receiver accepted (answered 2xx), in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for what was accepted, or panics after `secs`.
    pub async fn wait_until(&self, secs: u64, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; received {} events: {:?}",
                got.len(),
                got.iter().map(Received::event_type).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks a delivery's signatures the way a receiver would: any `v1` signature made with the
/// secret over `id.timestamp.body` will do.
pub fn signed_with(secret: &str, received: &Received) -> bool {
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{}.{}.", received.id, received.timestamp).as_bytes());
    mac.update(&received.raw);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    received.signature.split(' ').any(|s| s == expected)
}
