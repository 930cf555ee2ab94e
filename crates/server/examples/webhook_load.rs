//! Measures webhook delivery against a running scimgate: how many events per second the
//! dispatcher delivers to a fast local receiver (a backlog of users created while the endpoint
//! was disabled, then released), and the lag from a SCIM write's response to its webhook.
//!
//! ```sh
//! cargo run --release -- serve &      # a server on 127.0.0.1:8080
//! SCIMGATE_INTEGRATION_KEY=... cargo run --release -p scimgate --example webhook_load -- http://127.0.0.1:8080 [backlog] [lag samples]
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// When each user's `user.created` arrived, by user id.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    if let Ok(event) = serde_json::from_slice::<Value>(&body) {
        if event["type"] == "user.created" {
            if let Some(id) = event["data"]["user_id"].as_str() {
                arrivals.lock().expect("lock").insert(id.to_owned(), now);
            }
        }
    }
    StatusCode::NO_CONTENT
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Value,
) -> Value {
    let response = client
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap_or(Value::Null)
}

fn user(n: u64, run: u128) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("load{run}-{n}@example.com"), "active": true})
}

async fn wait_for(arrivals: &Arrivals, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while arrivals.lock().expect("lock").len() < count {
        assert!(Instant::now() < deadline, "deliveries stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let backlog: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let samples: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
    let key = std::env::var("SCIMGATE_INTEGRATION_KEY").expect("SCIMGATE_INTEGRATION_KEY");
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();

    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    let endpoint = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/webhook-endpoints"),
        &key,
        json!({"url": hook_url, "enabled": false, "event_types": ["user.created"]}),
    )
    .await;
    let endpoint_id = endpoint["webhook_endpoint_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let connection = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/connections"),
        &key,
        json!({"customer_id": format!("webhook-load-{run}")}),
    )
    .await;
    let scim = connection["scim_base_url"]
        .as_str()
        .expect("url")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let scim_key = connection["scim_api_key"].as_str().expect("key").to_owned();

    // The backlog: users created while the endpoint is disabled, 16 writers at a time.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writers: Vec<_> = (0..16)
        .map(|_| {
            let (client, scim, scim_key, next) =
                (client.clone(), scim.clone(), scim_key.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= backlog {
                        break;
                    }
                    call(
                        &client,
                        reqwest::Method::POST,
                        format!("{scim}/Users"),
                        &scim_key,
                        user(n, run),
                    )
                    .await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let released = Instant::now();
    call(
        &client,
        reqwest::Method::PATCH,
        format!("{base}/v1/webhook-endpoints/{endpoint_id}"),
        &key,
        json!({"enabled": true}),
    )
    .await;
    wait_for(&arrivals, backlog as usize).await;
    let drained = released.elapsed();
    println!(
        "dispatcher: {backlog} events delivered in {:.2} s = {:.0} events/s (one connection, one endpoint, in order)",
        drained.as_secs_f64(),
        backlog as f64 / drained.as_secs_f64()
    );

    // Lag: one write at a time, from the SCIM response to the webhook's arrival.
    let mut lags = Vec::new();
    for n in 0..samples {
        let created = call(
            &client,
            reqwest::Method::POST,
            format!("{scim}/Users"),
            &scim_key,
            user(backlog + n, run),
        )
        .await;
        let acknowledged = Instant::now();
        let id = created["id"].as_str().expect("id").to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        let arrived = loop {
            if let Some(at) = arrivals.lock().expect("lock").get(&id) {
                break *at;
            }
            assert!(Instant::now() < deadline, "no webhook for {id}");
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        lags.push(arrived.saturating_duration_since(acknowledged));
    }
    lags.sort();
    let pct = |p: f64| {
        lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "lag from SCIM write acknowledged to webhook received: p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({samples} writes)",
        pct(0.5), pct(0.9), pct(0.99), pct(1.0)
    );
}
