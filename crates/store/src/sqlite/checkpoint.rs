//! WAL checkpoints off the write path. By default the connection whose commit pushes the WAL
//! past 1000 pages copies it into the database file and fsyncs it, inside that commit: a write
//! that happens to cross the line waits several times longer than the others. Here the writer
//! never checkpoints; this task does, on its own connection, without blocking readers or the
//! writer (`PASSIVE`). Durability is unchanged: a commit is durable once it is in the WAL.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::oneshot;

use crate::StoreResult;

const EVERY: Duration = Duration::from_millis(200);

/// Stops the checkpointer when dropped (with the store that owns it).
pub struct Checkpointer {
    _stop: oneshot::Sender<()>,
}

impl Checkpointer {
    pub async fn start(options: &SqliteConnectOptions) -> StoreResult<Checkpointer> {
        let mut conn = options.connect().await?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_all(&mut conn).await {
                            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                        }
                    }
                }
            }
            let _ = conn.close().await;
        });
        Ok(Checkpointer { _stop: stop })
    }
}
