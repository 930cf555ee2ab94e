//! Planner statistics that keep up with a directory growing from nothing. sqlx prepares every
//! statement, and PostgreSQL caches a generic plan for a prepared statement after five runs and
//! keeps it until the table's statistics change. A plan cached while a connection's first sync
//! had written 50 users is a sequential scan, and without a fresh ANALYZE it stays one at 100,000:
//! every lookup then reads the whole table. Autovacuum analyzes at most once a minute, and not
//! at all where it is turned off. This task analyzes a table each time it has doubled since its
//! last statistics, which also invalidates the cached plans: about 10 ANALYZEs from 0 to 100,000.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::oneshot;

const EVERY: Duration = Duration::from_secs(1);
/// Below this many rows any plan is cheap.
const FIRST_AT: i64 = 100;

/// Stops the task when dropped (with the store that owns it).
pub struct Statistics {
    _stop: oneshot::Sender<()>,
}

impl Statistics {
    pub fn start(pool: PgPool) -> Statistics {
        let (stop, mut stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        if let Err(e) = analyze_grown_tables(&pool).await {
                            tracing::warn!(error = %e, "could not refresh planner statistics; retrying");
                        }
                    }
                }
            }
        });
        Statistics { _stop: stop }
    }
}

async fn analyze_grown_tables(pool: &PgPool) -> Result<(), sqlx::Error> {
    // `reltuples` is what the last ANALYZE (or VACUUM) saw, -1 before the first one.
    let grown: Vec<String> = sqlx::query_scalar(
        "SELECT format('ANALYZE %I.%I', s.schemaname, s.relname) FROM pg_stat_user_tables s \
         JOIN pg_class c ON c.oid = s.relid \
         WHERE s.schemaname = current_schema() AND s.n_live_tup >= greatest(2 * c.reltuples, $1)",
    )
    .bind(FIRST_AT)
    .fetch_all(pool)
    .await?;
    for statement in grown {
        sqlx::query(&statement).execute(pool).await?;
    }
    Ok(())
}
