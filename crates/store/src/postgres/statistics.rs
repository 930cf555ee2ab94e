//! Planner statistics that keep up with a directory growing from nothing. sqlx prepares every
//! statement, and PostgreSQL caches a generic plan for a prepared statement after five runs and
//! keeps it until the table's statistics change. A plan cached while a connection's first sync
//! had written 50 users is a sequential scan, and without a fresh ANALYZE it stays one at 100,000:
//! every lookup then reads the whole table. Autovacuum analyzes at most once a minute, and not
//! at all where it is turned off. This task analyzes a table each time it has doubled since its
//! last statistics, which also invalidates the cached plans: about 10 ANALYZEs from 0 to 100,000.
//!
//! Where autovacuum is off it also vacuums, with autovacuum's default threshold (a fifth of the
//! rows dead), each table no sooner after its last VACUUM than a second per 10,000 live rows,
//! between 1 and 10 s (a sync of 10,000 users is over within 10 s, and a flat 10 s left the walk
//! that follows it with every update's dead rows). Without VACUUM every update leaves a dead row
//! version and its index entries behind, and no page is marked all-visible, so counting 100,000
//! users reads every one of them from the heap (0.5 s a page of a `startIndex` walk). The
//! threshold bounds what vacuuming costs, since each run finds a fifth of the table dead; the
//! pace is shorter than autovacuum's minute because the membership PATCHes of an IdP's first
//! sync dirty every user within seconds, and the IdP's next step is often a walk of the users,
//! counted on every page. It leaves the file's length alone: shortening it needs an exclusive
//! lock that a busy table keeps VACUUM waiting 5 s for. It analyzes only a table that has
//! grown: updates change no statistics a plan depends on, and analyzing the users with every
//! VACUUM took a tenth of PostgreSQL's CPU during a sync's membership PATCHes. (VACUUM's own
//! row count also updates `reltuples`, which makes the cached plans be made again.)

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::oneshot;

const EVERY: Duration = Duration::from_secs(1);
/// Below this many rows any plan is cheap.
const FIRST_AT: i64 = 100;
/// Dead rows a table may hold, beyond a fifth of its live ones, before it is vacuumed (only
/// where autovacuum is off).
const VACUUM_AT: i64 = 1000;

/// Stops the task when dropped (with the store that owns it).
pub struct Statistics {
    _stop: oneshot::Sender<()>,
}

impl Statistics {
    /// Runs on a connection of its own, without the pool's statement timeout: a VACUUM of a
    /// large table takes longer than any request should.
    pub fn start(options: PgConnectOptions) -> Statistics {
        let (stop, mut stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            let mut conn: Option<PgConnection> = None;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        if let Err(e) = maintain(&options, &mut conn).await {
                            conn = None;
                            tracing::warn!(error = %e, "could not analyze or vacuum; retrying");
                        }
                    }
                }
            }
            if let Some(conn) = conn {
                let _ = conn.close().await;
            }
        });
        Statistics { _stop: stop }
    }
}

async fn maintain(
    options: &PgConnectOptions,
    conn: &mut Option<PgConnection>,
) -> Result<(), sqlx::Error> {
    let conn = match conn {
        Some(conn) => conn,
        None => {
            let mut fresh = options.connect().await?;
            sqlx::query("SET statement_timeout = 0")
                .execute(&mut fresh)
                .await?;
            conn.insert(fresh)
        }
    };
    vacuum_and_analyze_due_tables(conn).await
}

async fn vacuum_and_analyze_due_tables(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    // `reltuples` is what the last ANALYZE (or VACUUM) saw, -1 before the first one.
    let due: Vec<String> = sqlx::query_scalar(
        "WITH t AS (SELECT s.schemaname, s.relname, \
                    s.n_live_tup >= greatest(2 * c.reltuples, $1) AS grown, \
                    current_setting('autovacuum') = 'off' AND s.n_dead_tup > $2 + 0.2 * s.n_live_tup \
                      AND coalesce(s.last_vacuum, '-infinity') < now() - least(interval '10 seconds', interval '1 second' * greatest(1, s.n_live_tup / 10000.0)) AS dirty \
                  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
                  WHERE s.schemaname = current_schema()) \
         SELECT format(CASE WHEN dirty AND grown THEN 'VACUUM (ANALYZE, TRUNCATE false) %I.%I' \
                            WHEN dirty THEN 'VACUUM (TRUNCATE false) %I.%I' \
                            ELSE 'ANALYZE %I.%I' END, schemaname, relname) \
         FROM t WHERE grown OR dirty",
    )
    .bind(FIRST_AT)
    .bind(VACUUM_AT)
    .fetch_all(&mut *conn)
    .await?;
    for statement in due {
        // Not kept prepared: each text runs once in a while. VACUUM refuses to run inside a
        // transaction, and none is open here.
        sqlx::query(&statement)
            .persistent(false)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
