//! Runs one scenario: a fixed number of operations spread over a fixed number of workers, each
//! timed, each checked. An operation returns `Err` with what was wrong when its response was.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
    /// The share of the machine's CPU time that was busy (anyone's), from 0 to 1.
    pub machine_busy: Option<f64>,
    /// CPU time the server under test spent (user and system), if it is being watched.
    pub server_cpu: Option<Duration>,
    /// CPU time this tool spent: the client's side, and for the ceilings the server's too.
    pub tool_cpu: Option<Duration>,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The server's CPU time per operation, in microseconds.
    pub fn server_cpu_per_op_us(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        per_op_us(cpu, self.ops)
    }

    /// This tool's CPU time per operation, in microseconds.
    pub fn tool_cpu_per_op_us(&self) -> Option<f64> {
        per_op_us(self.tool_cpu?, self.ops)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[at - 1]
    }
}

fn per_op_us(cpu: Duration, ops: u64) -> Option<f64> {
    (ops > 0).then(|| cpu.as_secs_f64() * 1e6 / ops as f64)
}

/// The process of the server under test, whose CPU time every scenario records while it is
/// set; 0 when the server is this tool itself.
static SERVER_PID: AtomicU32 = AtomicU32::new(0);

pub fn watch_server(pid: u32) {
    SERVER_PID.store(pid, Ordering::Relaxed);
}

/// Records the CPU time of `pid` instead of the server under test's until dropped.
pub struct Watching {
    previous: u32,
}

pub fn watch_for_a_while(pid: u32) -> Watching {
    Watching {
        previous: SERVER_PID.swap(pid, Ordering::Relaxed),
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        SERVER_PID.store(self.previous, Ordering::Relaxed);
    }
}

/// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on every architecture.
const TICK: Duration = Duration::from_millis(10);

/// The machine's (busy, total) CPU ticks since boot, over all cores (Linux `/proc/stat`).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    // idle and iowait
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The user and system CPU time a process has used (Linux `/proc/PID/stat`).
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it do not.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(TICK * u32::try_from(ticks).ok()?)
}

fn server_cpu() -> Option<Duration> {
    match SERVER_PID.load(Ordering::Relaxed) {
        0 => None,
        pid => process_cpu(pid),
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
    let (machine_before, server_before, tool_before) = (
        machine_ticks(),
        server_cpu(),
        process_cpu(std::process::id()),
    );
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
        machine_busy: None,
        server_cpu: None,
        tool_cpu: None,
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
    stats.machine_busy =
        machine_before
            .zip(machine_ticks())
            .and_then(|((busy0, total0), (busy1, total1))| {
                (total1 > total0).then(|| (busy1 - busy0) as f64 / (total1 - total0) as f64)
            });
    stats.server_cpu = server_before
        .zip(server_cpu())
        .map(|(before, after)| after.saturating_sub(before));
    stats.tool_cpu = tool_before
        .zip(process_cpu(std::process::id()))
        .map(|(before, after)| after.saturating_sub(before));
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
