//! Forgets users deleted through SCIM once their retention period has passed. Running it on
//! several instances at once is harmless: the delete is idempotent.

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
            tokio::time::sleep(EVERY).await;
        }
    })
}
