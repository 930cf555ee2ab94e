//! Runs one scenario: a fixed number of operations spread over a fixed number of workers, each
//! timed, each checked. An operation returns `Err` with what was wrong when its response was.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Stats {
    pub name: String,
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Sorted.
    pub latencies: Vec<Duration>,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[at - 1]
    }
}

/// Runs `op(0..count)` on `concurrency` workers.
pub async fn run<F, Fut>(name: &str, concurrency: usize, count: u64, op: F) -> Stats
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut first_error = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let t = Instant::now();
                    let outcome = op(i).await;
                    latencies.push(t.elapsed());
                    if let Err(e) = outcome {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut stats = Stats {
        name: name.to_owned(),
        ops: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(count as usize),
    };
    for worker in workers {
        match worker.await {
            Ok((latencies, errors, first_error)) => {
                stats.latencies.extend(latencies);
                stats.errors += errors;
                if stats.first_error.is_none() {
                    stats.first_error = first_error;
                }
            }
            Err(e) => {
                stats.errors += 1;
                stats
                    .first_error
                    .get_or_insert(format!("a worker panicked: {e}"));
            }
        }
    }
    stats.elapsed = started.elapsed();
    stats.ops = stats.latencies.len() as u64;
    stats.latencies.sort_unstable();
    stats
}

/// Sends a request and checks its status, returning the JSON body.
pub async fn expect(
    request: reqwest::RequestBuilder,
    status: u16,
) -> Result<serde_json::Value, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let got = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    if got != status {
        return Err(format!(
            "expected {status}, got {got}: {}",
            text.chars().take(300).collect::<String>()
        ));
    }
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| format!("the body is not JSON: {e}"))
}
