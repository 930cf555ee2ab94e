use thiserror::Error;

/// What can go wrong in the store. Constraint violations become domain errors here, so callers
/// never inspect database error codes.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("customer '{0}' already has a SCIM connection")]
    CustomerHasConnection(String),
    #[error("userName '{0}' is already taken in this connection")]
    UserNameTaken(String),
    #[error("the resource was modified since version {expected}; it is now at version {actual}")]
    VersionMismatch { expected: i64, actual: i64 },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("unsupported database URL '{0}': use postgres://… or sqlite://<path>")]
    UnsupportedUrl(String),
    #[error("the cursor is not one this server issued")]
    InvalidCursor,
    #[error("the stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database cannot be reached right now (restarting, network cut, pool exhausted).
    /// Retrying later may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_transient(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Database(e)
        }
    }
}

/// Faults that say "not now" rather than "never": lost connections, an exhausted or closed
/// pool, PostgreSQL's connection (08…) and operator-intervention (57P…) classes, which include
/// a server shutting down or restarting, and a transaction PostgreSQL gave up on under
/// contention (a deadlock victim, a serialization failure, the statement timeout).
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("57P")
                || matches!(code.as_ref(), "53300" | "40P01" | "40001" | "57014")
        }),
        _ => false,
    }
}
