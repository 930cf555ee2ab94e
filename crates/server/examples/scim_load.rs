//! Load generator for the SCIM API: measures `POST /Users` and `GET /Users?filter=userName eq`
//! against a running scimgate and prints requests per second and latency percentiles.
//!
//! ```sh
//! cargo run --release -- serve &      # a server on 127.0.0.1:8080
//! SCIMGATE_INTEGRATION_KEY=... cargo run --release -p scimgate --example scim_load -- http://127.0.0.1:8080 [seconds] [concurrency]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Run {
    name: &'static str,
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
}

fn report(run: &Run) {
    let mut l = run.latencies.clone();
    l.sort();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{:<34} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} requests, {} errors, {:.1} s)",
        run.name,
        l.len() as f64 / run.elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        l.len(),
        run.errors,
        run.elapsed.as_secs_f64()
    );
}

async fn drive<F, Fut>(name: &'static str, seconds: u64, concurrency: usize, make: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let make = make.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if make(n).await {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut run = Run {
        name,
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        if let Ok((latencies, errors)) = task.await {
            run.latencies.extend(latencies);
            run.errors += errors;
        }
    }
    run.elapsed = started.elapsed();
    run
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);
    let integration_key =
        std::env::var("SCIMGATE_INTEGRATION_KEY").expect("set SCIMGATE_INTEGRATION_KEY");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");

    let created: Value = client
        .post(format!("{base}/v1/connections"))
        .bearer_auth(&integration_key)
        .json(&json!({"customer_id": format!("load-{}", uuid::Uuid::new_v4())}))
        .send()
        .await
        .expect("create connection")
        .json()
        .await
        .expect("json");
    let scim = created["scim_base_url"]
        .as_str()
        .expect("base url")
        .to_owned();
    let key = created["scim_api_key"].as_str().expect("key").to_owned();
    println!(
        "scim_load: {concurrency} concurrent clients, {seconds} s per scenario, against {scim}"
    );

    let (c, s, k) = (client.clone(), scim.clone(), key.clone());
    let create = drive("POST /Users", seconds, concurrency, move |n| {
        let (c, s, k) = (c.clone(), s.clone(), k.clone());
        async move {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("user{n}@load.example"),
                "name": {"givenName": "Load", "familyName": format!("User{n}")},
                "emails": [{"value": format!("user{n}@load.example"), "type": "work", "primary": true}],
                "externalId": format!("ext-{n}"),
                "active": true
            });
            let r = c.post(format!("{s}/Users")).bearer_auth(&k).header("content-type", "application/scim+json").body(body.to_string()).send().await;
            matches!(r, Ok(r) if r.status() == 201)
        }
    })
    .await;
    report(&create);
    let users = create.latencies.len() as u64;

    let (c, s, k) = (client.clone(), scim.clone(), key.clone());
    let lookup = drive("GET /Users?filter=userName eq", seconds, concurrency, move |n| {
        let (c, s, k) = (c.clone(), s.clone(), k.clone());
        async move {
            let i = n % users.max(1);
            let url = format!("{s}/Users?filter=userName%20eq%20%22user{i}%40load.example%22&startIndex=1&count=100");
            let r = c.get(url).bearer_auth(&k).send().await;
            matches!(r, Ok(r) if r.status() == 200)
        }
    })
    .await;
    report(&lookup);
    println!("directory size during lookups: {users} users");
}
