//! Connections handed out again without sqlx's test on release.
//!
//! sqlx tests every connection given back to its pool before anyone else may have it: a ping,
//! which is a round trip to PostgreSQL, or a hop to the SQLite connection's own thread. For a
//! read that is one statement, that doubles the round trips. [`ReusingPool`] keeps a connection
//! whose statement completed and gives it straight to the next reader. A connection whose
//! statement failed, or whose caller went away mid-statement, goes back to sqlx, which tests it
//! as before and closes it if it is broken.

use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use sqlx::pool::PoolConnection;
use sqlx::{Database, Describe, Either, Error, Execute, Executor, Pool};
use tokio::sync::{Semaphore, SemaphorePermit};

pub struct ReusingPool<DB: Database> {
    pool: Pool<DB>,
    idle: Mutex<Vec<PoolConnection<DB>>>,
    /// How many connections this may hold at once. The rest of `pool` stays free for those
    /// who use it directly (transactions).
    permits: Semaphore,
}

impl<DB: Database> ReusingPool<DB> {
    pub fn new(pool: Pool<DB>, size: usize) -> Self {
        ReusingPool {
            pool,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
        }
    }

    async fn lease(&self) -> Result<Lease<'_, DB>, Error> {
        // Waiting for a place is bounded like waiting for sqlx's own, so a database that stopped
        // answering still fails requests fast instead of queueing them.
        let permit = tokio::time::timeout(
            self.pool.options().get_acquire_timeout(),
            self.permits.acquire(),
        )
        .await
        .map_err(|_| Error::PoolTimedOut)?
        .map_err(|_| Error::PoolClosed)?;
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let connection = match reused {
            Some(connection) => connection,
            None => self.pool.acquire().await?,
        };
        Ok(Lease {
            connection,
            owner: self,
            _permit: permit,
        })
    }
}

impl<DB: Database> std::fmt::Debug for ReusingPool<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReusingPool")
            .field("pool", &self.pool)
            .field("free", &self.permits.available_permits())
            .finish()
    }
}

/// A connection out of a [`ReusingPool`]. Dropped, it goes back to sqlx and its test.
struct Lease<'p, DB: Database> {
    connection: PoolConnection<DB>,
    owner: &'p ReusingPool<DB>,
    _permit: SemaphorePermit<'p>,
}

impl<DB: Database> Lease<'_, DB> {
    /// Keeps the connection for the next reader; only for one whose statement completed.
    fn reuse(self) {
        if let Ok(mut idle) = self.owner.idle.lock() {
            idle.push(self.connection);
        }
    }

    /// Gives the connection back after `result`: kept when it succeeded, tested by sqlx when
    /// it failed.
    fn settle<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        if result.is_ok() {
            self.reuse();
        }
        result
    }
}

impl<'p, DB: Database> Executor<'p> for &'p ReusingPool<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    /// Reads every row before the first is yielded, so the connection is settled before the
    /// caller sees anything. The store reads whole results anyway (pages of at most 1000).
    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        stream::once(async move {
            let mut lease = self.lease().await?;
            let results: Result<Vec<_>, Error> = (&mut *lease.connection)
                .fetch_many(query)
                .try_collect()
                .await;
            lease
                .settle(results)
                .map(|rows| stream::iter(rows.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<DB::Row>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        Box::pin(async move {
            let mut lease = self.lease().await?;
            let row = (&mut *lease.connection).fetch_optional(query).await;
            lease.settle(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [DB::TypeInfo],
    ) -> BoxFuture<'e, Result<DB::Statement<'q>, Error>>
    where
        'p: 'e,
    {
        Box::pin(async move {
            let mut lease = self.lease().await?;
            let statement = (&mut *lease.connection).prepare_with(sql, parameters).await;
            lease.settle(statement)
        })
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<DB>, Error>>
    where
        'p: 'e,
    {
        Box::pin(async move {
            let mut lease = self.lease().await?;
            let description = (&mut *lease.connection).describe(sql).await;
            lease.settle(description)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sqlx::Sqlite;

    use super::*;

    async fn pool(dir: &tempfile::TempDir, size: u32) -> ReusingPool<Sqlite> {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("reuse.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(size)
            .connect_with(options)
            .await
            .expect("pool");
        ReusingPool::new(pool, size as usize)
    }

    fn kept(pool: &ReusingPool<Sqlite>) -> usize {
        pool.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_completed_statement_keeps_its_connection_and_a_failed_one_returns_it_to_sqlx() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = pool(&dir, 2).await;
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .expect("select");
        assert_eq!(one, 1);
        assert_eq!(kept(&pool), 1, "kept for the next statement");
        assert_eq!(pool.pool.num_idle(), 0, "not given back to sqlx");

        let failed = sqlx::query("SELECT * FROM no_such_table")
            .fetch_all(&pool)
            .await;
        assert!(failed.is_err());
        assert_eq!(
            kept(&pool),
            0,
            "a failed statement's connection is not kept"
        );
        // sqlx tests it in a task of its own, then takes it back.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.pool.num_idle() == 0 {
            assert!(
                Instant::now() < deadline,
                "sqlx never took the connection back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rows = sqlx::query("SELECT 1 UNION ALL SELECT 2")
            .fetch_all(&pool)
            .await
            .expect("the pool still works");
        assert_eq!(rows.len(), 2);
    }

    #[tokio::test]
    async fn no_more_connections_than_its_size_are_out_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = pool(&dir, 2).await;
        let statements = (0..20).map(|i| {
            sqlx::query_scalar::<_, i64>("SELECT ?")
                .bind(i)
                .fetch_one(&pool)
        });
        let got = futures::future::try_join_all(statements)
            .await
            .expect("every statement ran");
        assert_eq!(got, (0..20).collect::<Vec<i64>>());
        assert!(kept(&pool) <= 2);
        assert_eq!(
            pool.permits.available_permits(),
            2,
            "every place was given back"
        );
    }
}
