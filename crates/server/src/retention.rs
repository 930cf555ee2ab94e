//! Housekeeping on a timer: forgets users deleted through SCIM and events once their retention
//! periods have passed, and warns about SCIM keys about to expire. Running it on several
//! instances at once is harmless: deletes are idempotent and each key is warned about once.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::app::AppState;

const EVERY: Duration = Duration::from_secs(60);

pub fn start(state: Arc<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let before = OffsetDateTime::now_utc() - state.deleted_user_retention;
            match state.store.prune_deleted(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    users = n,
                    "pruned users deleted before the retention period"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "pruning deleted users failed; retrying later")
                }
            }
            let before = OffsetDateTime::now_utc() - state.event_retention;
            match state.store.prune_events(before).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(events = n, "pruned events older than the retention period")
                }
                Err(e) => tracing::warn!(error = %e, "pruning events failed; retrying later"),
            }
            let until = OffsetDateTime::now_utc() + state.key_expiry_warning;
            match state.store.warn_expiring_keys(until).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(keys = n, "SCIM API keys expire soon; events sent");
                    state.events_written.notify_one();
                }
                Err(e) => tracing::warn!(error = %e, "checking key expiry failed; retrying later"),
            }
            tokio::time::sleep(EVERY).await;
        }
    })
}
