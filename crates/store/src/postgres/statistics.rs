//! Planner statistics that keep up with a directory growing from nothing. sqlx prepares every
//! statement, and PostgreSQL caches a generic plan for a prepared statement after five runs and
//! keeps it until the table's statistics change. A plan cached while a connection's first sync
//! had written 50 users is a sequential scan, and without a fresh ANALYZE it stays one at 100,000:
//! every lookup then reads the whole table. Autovacuum analyzes at most once a minute, and not
//! at all where it is turned off. This task analyzes a table each time it has doubled since its
//! last statistics, which also invalidates the cached plans: about 10 ANALYZEs from 0 to 100,000.
//!
//! Where autovacuum is off it also vacuums, with autovacuum's default threshold (a fifth of the
//! rows), each table no sooner after its last VACUUM than a second per 10,000 live rows,
//! between 1 and 10 s (a sync of 10,000 users is over within 10 s, and a flat 10 s left the walk
//! that follows it with every update's dead rows). Without VACUUM every update leaves a dead row
//! version and its index entries behind, and no page is marked all-visible, so counting 100,000
//! users reads every one of them from the heap (0.5 s a page of a `startIndex` walk). The
//! threshold bounds what vacuuming costs; the pace is shorter than autovacuum's minute because
//! the membership PATCHes of an IdP's first sync dirty every user within seconds, and the IdP's
//! next step is often a walk of the users, counted on every page. It leaves the file's length
//! alone: shortening it needs an exclusive lock that a busy table keeps VACUUM waiting 5 s for.
//!
//! The threshold counts the rows inserted, updated or deleted since this task's last VACUUM of
//! the table, not only PostgreSQL's count of dead rows: pruning a page as it is read removes dead
//! versions and lowers that count, but leaves their index entries and the page not all-visible,
//! which only VACUUM fixes. After the membership PATCHes of a 100,000-user sync the count said
//! none were dead, and page 500 of the walk read 50,000 users from the heap (220 ms). Inserts
//! count as autovacuum counts them (its insert threshold is the same fifth): a page that only
//! gained rows is not all-visible either until a VACUUM, and a user's groups are read by an
//! index-only scan of the memberships that visits every such page.
//!
//! It analyzes only a table that has grown: updates change no statistics a plan depends on, and
//! analyzing the users with every VACUUM took a tenth of PostgreSQL's CPU during a sync's
//! membership PATCHes. (VACUUM's own row count also updates `reltuples`, which makes the cached
//! plans be made again.)

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::oneshot;

const EVERY: Duration = Duration::from_secs(1);
/// Below this many rows any plan is cheap.
const FIRST_AT: i64 = 100;
/// Rows a table may have inserted, updated or deleted, beyond a fifth of its live ones, before it
/// is vacuumed (only where autovacuum is off).
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
            let mut modified_at_vacuum = ModifiedAtVacuum::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        if let Err(e) = maintain(&options, &mut conn, &mut modified_at_vacuum).await {
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

/// Per table, its rows inserted, updated or deleted (PostgreSQL's cumulative counters) when this
/// task last vacuumed it, or first looked at it.
type ModifiedAtVacuum = HashMap<String, i64>;

async fn maintain(
    options: &PgConnectOptions,
    conn: &mut Option<PgConnection>,
    modified_at_vacuum: &mut ModifiedAtVacuum,
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
    vacuum_and_analyze_due_tables(conn, modified_at_vacuum).await
}

async fn vacuum_and_analyze_due_tables(
    conn: &mut PgConnection,
    modified_at_vacuum: &mut ModifiedAtVacuum,
) -> Result<(), sqlx::Error> {
    // `reltuples` is what the last ANALYZE (or VACUUM) saw, -1 before the first one.
    let tables: Vec<(String, bool, bool, i64, i64, i64)> = sqlx::query_as(
        "SELECT format('%I.%I', s.schemaname, s.relname), \
                s.n_live_tup >= greatest(2 * c.reltuples, $1), \
                current_setting('autovacuum') = 'off' \
                  AND coalesce(s.last_vacuum, '-infinity') < now() - least(interval '10 seconds', interval '1 second' * greatest(1, s.n_live_tup / 10000.0)), \
                s.n_live_tup, s.n_dead_tup, s.n_tup_ins + s.n_tup_upd + s.n_tup_del \
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.schemaname = current_schema()",
    )
    .bind(FIRST_AT)
    .fetch_all(&mut *conn)
    .await?;
    for (table, grown, may_vacuum, live, dead, modified) in tables {
        let baseline = modified_at_vacuum.entry(table.clone()).or_insert(modified);
        if modified < *baseline {
            // The statistics were reset.
            *baseline = modified;
        }
        let threshold = VACUUM_AT + live / 5;
        let dirty = may_vacuum && (dead > threshold || modified - *baseline > threshold);
        let statement = match (dirty, grown) {
            (true, true) => format!("VACUUM (ANALYZE, TRUNCATE false) {table}"),
            (true, false) => format!("VACUUM (TRUNCATE false) {table}"),
            (false, true) => format!("ANALYZE {table}"),
            (false, false) => continue,
        };
        // Not kept prepared: each text runs once in a while. VACUUM refuses to run inside a
        // transaction, and none is open here.
        sqlx::query(&statement)
            .persistent(false)
            .execute(&mut *conn)
            .await?;
        if dirty {
            *baseline = modified;
        }
    }
    Ok(())
}
