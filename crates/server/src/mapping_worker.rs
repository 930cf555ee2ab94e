//! Brings every user's stored mapped view up to its connection's mapping generation: after a
//! mapping change, a membership change or a group rename. Every instance runs one; users are
//! leased in batches (with `FOR UPDATE SKIP LOCKED` on PostgreSQL), so no user is mapped twice
//! at once, and the work resumes after a restart because it is driven by the stored generations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use scimgate_store::{MappedRecord, MappedSave, StaleUser, StoreResult};
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::management::directory::{mapping_of, Viewer};

const BATCH: u32 = 100;
/// Far longer than a batch of 100 takes, so a lease only lapses when its worker died; short
/// enough that a restarted instance picks a dead worker's users up again within seconds.
const LEASE: Duration = Duration::from_secs(15);
const IDLE: Duration = Duration::from_millis(500);

pub fn start(state: Arc<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match run_batch(&state).await {
                Ok(0) => tokio::time::sleep(IDLE).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "mapping recompute batch failed; retrying");
                    tokio::time::sleep(IDLE * 4).await;
                }
            }
        }
    })
}

/// Maps one batch of stale users; returns how many it took. Users are taken connection by
/// connection, so each connection's mapping and group lookups serve all of its users.
pub async fn run_batch(state: &AppState) -> StoreResult<usize> {
    let stale = state.store.claim_stale_users(BATCH, LEASE).await?;
    let mut by_connection: BTreeMap<&str, Vec<&StaleUser>> = BTreeMap::new();
    for user in &stale {
        by_connection
            .entry(&user.connection_id)
            .or_default()
            .push(user);
    }
    let mut saves = Vec::with_capacity(stale.len());
    for (connection_id, users) in by_connection {
        let Some(connection) = state.store.connection(connection_id).await? else {
            continue;
        };
        let mut viewer = Viewer::new(state, &connection, mapping_of(state, &connection), true);
        for user in users {
            // One user failing (its lease then lapses and it is retried) must not hold back
            // the rest of the batch, which may belong to other tenants.
            match viewer.mapped(&user.resource).await {
                Ok(mapped) => saves.push(MappedSave {
                    connection_id: connection.id.clone(),
                    user_id: user.resource.id.clone(),
                    epoch: user.epoch,
                    record: MappedRecord {
                        generation: connection.mapping_generation,
                        value: serde_json::to_value(&mapped).unwrap_or_default(),
                    },
                }),
                Err(e) => {
                    tracing::warn!(error = %e, %connection_id, user_id = %user.resource.id, "mapping a user failed")
                }
            }
        }
    }
    // One commit for the whole batch: a membership PATCH of 100 users must not cost 100 fsyncs.
    state.store.save_mapped(&saves).await?;
    Ok(stale.len())
}
