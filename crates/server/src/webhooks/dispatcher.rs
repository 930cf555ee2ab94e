//! Delivers the event log to webhook endpoints. Every instance runs one; they share the work
//! through the store: sequencing takes a lock, fan-out is serialized, and each stream (an
//! endpoint's queue for one connection) is leased to one dispatcher at a time, so events of a
//! connection reach an endpoint in order and no attempt is made twice at once. All state is in
//! the database: a restarted instance resumes from it, and a dead one's leases lapse.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use scimgate_store::{ClaimedStream, StoreResult, StreamOutcome};
use time::OffsetDateTime;
use tokio::task::{JoinHandle, JoinSet};

use super::sender;
use super::WebhookSettings;
use crate::app::AppState;
use crate::events::EventView;

/// Streams delivered concurrently per cycle.
const STREAMS: u32 = 16;
/// Deliveries taken from a stream per lease; they go out one after another.
const BATCH: u32 = 100;
/// Events fanned out per store call.
const FAN_OUT: u32 = 1000;
/// How often an idle dispatcher looks for work written by other instances.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Long enough for a batch cut off at half of it plus one attempt's timeout.
fn lease(settings: &WebhookSettings) -> Duration {
    (settings.timeout * 2).max(Duration::from_secs(30)) * 2
}

pub fn start(state: Arc<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match cycle(&state).await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! {
                        _ = state.events_written.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatch failed; retrying shortly");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

/// One round: number new events, queue them for their endpoints, deliver what is due.
/// Returns whether anything was delivered.
async fn cycle(state: &Arc<AppState>) -> StoreResult<bool> {
    let sequenced = state.store.sequence_events().await?;
    if sequenced > 0 {
        metrics::counter!("scimgate_events_total").increment(sequenced);
    }
    while state.store.fan_out_events(FAN_OUT).await? == u64::from(FAN_OUT) {}
    let claimed = state
        .store
        .claim_webhook_streams(STREAMS, BATCH, lease(&state.webhooks))
        .await?;
    if claimed.is_empty() {
        return Ok(false);
    }
    let mut running = JoinSet::new();
    for stream in claimed {
        let state = state.clone();
        running.spawn(async move {
            let outcome = deliver(&state, stream).await;
            state.store.complete_webhook_stream(outcome).await
        });
    }
    while let Some(done) = running.join_next().await {
        match done {
            Ok(result) => result?,
            Err(e) => tracing::error!(error = %e, "a webhook delivery task failed"),
        }
    }
    Ok(true)
}

/// Sends a stream's deliveries in order, stopping at the first failure (it holds the rest
/// back) or when half the lease is used up.
async fn deliver(state: &AppState, stream: ClaimedStream) -> StreamOutcome {
    let settings = &state.webhooks;
    let started = Instant::now();
    let mut outcome = StreamOutcome {
        endpoint_id: stream.endpoint.id.clone(),
        stream: stream.stream.clone(),
        lease: stream.lease.clone(),
        attempts: Vec::new(),
        retry_at: None,
        retry_window: time::Duration::try_from(settings.retry_window)
            .unwrap_or(time::Duration::MAX),
    };
    for delivery in &stream.deliveries {
        if started.elapsed() > lease(settings) / 2 {
            break;
        }
        let body = serde_json::to_vec(&EventView::from(&delivery.event)).unwrap_or_default();
        let attempt = sender::send(
            &state.http,
            &stream.endpoint,
            &delivery.event.id,
            body,
            settings.timeout,
            delivery.id,
        )
        .await;
        let result = if attempt.success {
            "success"
        } else {
            "failure"
        };
        metrics::counter!("scimgate_webhook_attempts_total", "result" => result).increment(1);
        let failed = !attempt.success;
        if failed {
            tracing::info!(
                endpoint_id = %stream.endpoint.id,
                event_id = %delivery.event.id,
                attempts = delivery.attempts + 1,
                error = attempt.error.as_deref().unwrap_or_default(),
                "webhook delivery failed; will retry"
            );
            let wait = backoff(delivery.attempts + 1, settings);
            outcome.retry_at = Some(
                OffsetDateTime::now_utc()
                    + time::Duration::try_from(wait).unwrap_or(time::Duration::HOUR),
            );
        }
        outcome.attempts.push(attempt);
        if failed {
            break;
        }
    }
    outcome
}

/// The wait after the `failures`-th failed attempt: the base doubled per failure, capped,
/// with ±20 % jitter so endpoints that fail together do not retry together.
pub fn backoff(failures: u32, settings: &WebhookSettings) -> Duration {
    let doubled = settings
        .backoff_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = doubled.min(settings.backoff_max);
    capped.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let settings = WebhookSettings::default();
        let within = |d: Duration, nominal: u64| {
            let n = nominal as f64;
            (n * 0.8..=n * 1.2).contains(&d.as_secs_f64())
        };
        assert!(within(backoff(1, &settings), 5));
        assert!(within(backoff(2, &settings), 10));
        assert!(within(backoff(5, &settings), 80));
        assert!(within(backoff(40, &settings), 3600));
        // With a 1 h cap, about 80 attempts fit in the 3-day retry window.
        let total: f64 = (1..=80).map(|n| backoff(n, &settings).as_secs_f64()).sum();
        assert!((200_000.0..330_000.0).contains(&total), "{total}");
    }
}
