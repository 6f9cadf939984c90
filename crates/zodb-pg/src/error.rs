//! Errors of the PostgreSQL storage: [`PgError`] for opening, creating and
//! checking the schema; everything the `Storage` trait returns is a
//! `StorageError`, into which a `PgError` converts (the database out of reach
//! is `Disconnected`, a lock wait that timed out `LockTimeout`).

use std::time::Duration;

use zodb_storage::StorageError;

/// SQLSTATE `lock_not_available`: `lock_timeout` expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// SQLSTATE `deadlock_detected`: PostgreSQL broke a cycle of lock waits by
/// failing this transaction (possible with RelStorage clients, which take
/// their shared locks before their exclusive ones).
const DEADLOCK_DETECTED: &str = "40P01";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The URL or connection string does not parse.
    #[error("bad PostgreSQL URL: {0}")]
    Url(#[source] tokio_postgres::Error),

    /// No connection could be made (server down, refused, authentication).
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] tokio_postgres::Error),

    #[error("timed out connecting to PostgreSQL after {0:?}")]
    ConnectTimeout(Duration),

    /// A statement failed; `context` says what we were doing.
    #[error("{context}: {source}")]
    Query {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    /// The database has none of RelStorage's tables.
    #[error(
        "the database has no ZODB schema (no table `transaction`, `object_state`, `current_object`); create it with `bbru-zeo init-db URL`"
    )]
    SchemaMissing,

    /// The tables are there but are not RelStorage 4.3's history-preserving
    /// layout (history-free, an older RelStorage, something else).
    #[error("the database's schema is not RelStorage 4.3's history-preserving one: {0}")]
    SchemaMismatch(String),

    /// The storage's own runtime could not be started.
    #[error("cannot start the storage's runtime: {0}")]
    Runtime(#[source] std::io::Error),

    /// A blob's file could not be read (to upload it) or written (to keep a
    /// downloaded revision in the blob cache).
    #[error("{context}: {source}")]
    BlobFile {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The storage's runtime went away (the storage is being dropped).
    #[error("the storage's runtime is gone")]
    RuntimeGone,
}

impl PgError {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PgError {
        move |source| PgError::Query { context, source }
    }

    pub(crate) fn blob_file(context: &'static str) -> impl FnOnce(std::io::Error) -> PgError {
        move |source| PgError::BlobFile { context, source }
    }

    fn sqlstate(&self) -> Option<&str> {
        match self {
            PgError::Query { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// Whether the connection this came from is unusable (closed, broken).
    pub(crate) fn is_closed_connection(&self) -> bool {
        match self {
            PgError::Query { source, .. } => source.is_closed(),
            PgError::Connect(_) | PgError::ConnectTimeout(_) => true,
            _ => false,
        }
    }
}

/// Converts with the time a lock wait lasted (for `LockTimeout`).
pub(crate) fn storage_error(e: PgError, waited: Duration) -> StorageError {
    match e.sqlstate() {
        Some(LOCK_NOT_AVAILABLE) | Some(DEADLOCK_DETECTED) => {
            return StorageError::LockTimeout { waited };
        }
        _ => {}
    }
    e.into()
}

impl From<PgError> for StorageError {
    fn from(e: PgError) -> StorageError {
        if e.sqlstate() == Some(LOCK_NOT_AVAILABLE) || e.sqlstate() == Some(DEADLOCK_DETECTED) {
            return StorageError::LockTimeout {
                waited: Duration::ZERO,
            };
        }
        if e.is_closed_connection() {
            return StorageError::Disconnected(e.to_string());
        }
        match e {
            PgError::RuntimeGone => StorageError::Closed,
            other => StorageError::io("PostgreSQL", std::io::Error::other(other)),
        }
    }
}

pub(crate) type PgResult<T> = Result<T, PgError>;
