//! Group commit. SQLite has one writer and `synchronous=FULL` makes each commit wait for the
//! disk, so a write that commits alone costs a whole fsync. Writes that queue up behind the
//! writer instead share one transaction and one fsync: each runs in a savepoint of its own (so
//! one that fails rolls back only itself), and none is answered before the commit that makes it
//! durable. Durability is unchanged; only the fsyncs are shared.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{self, RestartRequest};
use crate::{StoreError, StoreResult};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Hands a write its outcome once its batch's commit is known (`Err` carries why it failed).
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn for<'b> FnOnce(&'b mut SqliteConnection) -> BoxFuture<'b, Deliver> + Send>;

/// The most writes one commit carries: enough to amortise the fsync, few enough that the first
/// write of a batch is not kept waiting long.
const MAX_BATCH: usize = 128;

pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the committer on `writer`, the pool of the single write connection. Other writes
    /// may use that pool directly; they take turns with the batches. Between two batches it
    /// answers the checkpointer's `restart` requests.
    pub fn start(writer: SqlitePool, restart: RestartRequest) -> GroupCommit {
        let (jobs, mut queue) = mpsc::channel::<Job>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
                commit_batch(&writer, &mut batch, &mut queue).await;
                if restart.take() {
                    checkpoint::finish(&writer).await;
                }
            }
        });
        GroupCommit { jobs }
    }

    /// Runs `work` in a savepoint of the next batch and returns its result once the batch is
    /// committed. `work` commits or rolls back its savepoint like a transaction of its own;
    /// dropping it rolls it back.
    pub async fn write<T, W>(&self, work: W) -> StoreResult<T>
    where
        T: Send + 'static,
        W: for<'s> FnOnce(Transaction<'s, Sqlite>) -> BoxFuture<'s, StoreResult<T>>
            + Send
            + 'static,
    {
        self.write_atomic(move |batch| {
            Box::pin(async move {
                let savepoint = batch.begin().await?;
                work(savepoint).await
            })
        })
        .await
    }

    /// Runs `work` straight on the batch's transaction and returns its result once the batch
    /// is committed. Each statement is a round trip to SQLite's thread, so a hot write that
    /// sends its statements together saves the two of a savepoint; in exchange it must leave
    /// the transaction as it found it when it fails: one statement, or statements inside a
    /// savepoint of its own that it rolls back.
    pub async fn write_atomic<T, W>(&self, work: W) -> StoreResult<T>
    where
        T: Send + 'static,
        W: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        let (answer, outcome) = oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |batch| {
            Box::pin(async move {
                let result = work(batch).await;
                Box::new(move |committed: Result<(), String>| {
                    let outcome = match committed {
                        Ok(()) => result,
                        Err(why) => Err(StoreError::Unavailable(format!(
                            "the write was not committed: {why}"
                        ))),
                    };
                    // The caller may be gone (its client hung up); the write stands anyway.
                    let _ = answer.send(outcome);
                }) as Deliver
            })
        });
        let stopped = || StoreError::Unavailable("the SQLite writer has stopped".into());
        self.jobs.send(job).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// Runs the queued jobs, and those that arrive meanwhile, in one transaction, then commits and
/// answers them all. A job dropped without running (the transaction could not start) answers
/// its caller with an error through its closed channel.
async fn commit_batch(writer: &SqlitePool, batch: &mut Vec<Job>, queue: &mut mpsc::Receiver<Job>) {
    let mut tx = match writer.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, writes = batch.len(), "could not start a write batch");
            batch.clear();
            return;
        }
    };
    let mut pending: VecDeque<Job> = batch.drain(..).collect();
    let mut delivers = Vec::with_capacity(pending.len());
    while let Some(job) = pending.pop_front() {
        delivers.push(job(&mut tx).await);
        // Writes that queued while this one ran join the batch.
        while delivers.len() + pending.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => pending.push_back(job),
                Err(_) => break,
            }
        }
    }
    let committed = tx.commit().await.map_err(|e| e.to_string());
    if let Err(e) = &committed {
        tracing::error!(error = %e, writes = delivers.len(), "a write batch failed to commit");
    }
    for deliver in delivers {
        deliver(committed.clone());
    }
}
