//! WAL checkpoints off the write path. By default the connection whose commit pushes the WAL
//! past 1000 pages copies it into the database file and fsyncs it, inside that commit: a write
//! that happens to cross the line waits several times longer than the others. Here the writer
//! never checkpoints on its own; this task does, on its own connection, without blocking readers
//! or the writer (`PASSIVE`). Durability is unchanged: a commit is durable once it is in the WAL.
//!
//! Copying is not enough to keep the WAL small. SQLite starts the WAL over from its beginning
//! only when a write begins while the WAL is wholly copied; under a steady stream of writes that
//! moment never comes, because commits keep landing while the checkpointer copies the earlier
//! ones (the WAL reached 5.6 GB during a sync of 100,000 users). A WAL that only grows also makes
//! every commit dearer: each flush of a file that grew is a file-system journal commit as well,
//! tied up with the checkpointer's flushes of the database file, where a WAL that starts over
//! rewrites blocks it already has and flushes only those. So once the WAL passes its limit, the
//! checkpointer catches up until a pass finds little new, then asks the writer to copy the rest
//! itself between two batches (`finish`): nothing can commit in between, and the next commit
//! starts the WAL over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};
use tokio::sync::oneshot;

use super::BUSY_TIMEOUT;
use crate::StoreResult;

const EVERY: Duration = Duration::from_millis(200);
/// A catch-up pass that found no more new frames than this leaves the writer a short copy.
const CAUGHT_UP_FRAMES: i64 = 512;
/// Under writes faster than the copying, catching up never ends; the writer copies the rest.
const CATCH_UP_PASSES: usize = 8;
/// How long the writer waits for reads inside the WAL to end before it gives up a start-over.
const READS_ENDING: Duration = Duration::from_millis(100);

/// The checkpointer's request that the writer finish a checkpoint so the WAL starts over.
#[derive(Clone, Default)]
pub struct RestartRequest(Arc<AtomicBool>);

impl RestartRequest {
    fn ask(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a restart was asked for since the last call.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// One `PASSIVE` pass: the WAL's length and how much of it is now in the database, in frames.
struct Pass {
    log: i64,
    copied: i64,
}

async fn pass(conn: &mut SqliteConnection) -> Option<Pass> {
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await
    {
        // Busy: a checkpoint was already running (the writer's own); the next pass copies.
        Ok((0, log, copied)) => Some(Pass { log, copied }),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            None
        }
    }
}

/// Stops the checkpointer when dropped (with the store that owns it).
pub struct Checkpointer {
    _stop: oneshot::Sender<()>,
}

impl Checkpointer {
    /// Checkpoints in the background, and asks through `restart` for the WAL to start over
    /// once it is `restart_frames` long.
    pub async fn start(
        options: &SqliteConnectOptions,
        restart_frames: i64,
        restart: RestartRequest,
    ) -> StoreResult<Checkpointer> {
        let mut conn = options.connect().await?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        let Some(done) = pass(&mut conn).await else { continue };
                        if done.log >= restart_frames {
                            catch_up(&mut conn, done).await;
                            restart.ask();
                        }
                    }
                }
            }
            let _ = conn.close().await;
        });
        Ok(Checkpointer { _stop: stop })
    }
}

/// Copies again, right away, what landed during the previous pass, until a pass finds little.
async fn catch_up(conn: &mut SqliteConnection, mut last: Pass) {
    for _ in 0..CATCH_UP_PASSES {
        let Some(next) = pass(conn).await else { return };
        let arrived = next.log - last.copied;
        last = next;
        if arrived <= CAUGHT_UP_FRAMES {
            return;
        }
    }
}

/// Copies the rest of the WAL on the writer, the one connection that commits, and waits, a
/// moment at most, for the reads still inside the WAL to end (`RESTART`), so that the next commit
/// starts the WAL over. A read that takes longer leaves the WAL growing for now, and the
/// checkpointer asks again. The writer's usual wait for a lock is restored after.
pub async fn finish(writer: &SqlitePool) {
    let finished = async {
        let mut conn = writer.acquire().await?;
        let wait = |limit: Duration| format!("PRAGMA busy_timeout = {}", limit.as_millis());
        sqlx::query(&wait(READS_ENDING)).execute(&mut *conn).await?;
        let restarted = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
            .execute(&mut *conn)
            .await;
        sqlx::query(&wait(BUSY_TIMEOUT)).execute(&mut *conn).await?;
        restarted
    }
    .await;
    if let Err(e) = finished {
        tracing::warn!(error = %e, "could not finish a WAL checkpoint on the writer");
    }
}
