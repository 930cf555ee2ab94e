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
    #[error("the cursor is not one this server issued")]
    InvalidCursor,
    #[error("the stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;
