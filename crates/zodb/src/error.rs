//! The errors of the persistence layer: one umbrella [`Error`], with the storage's and the
//! codec's errors kept whole inside it so callers can tell a conflict from a broken record.

use zodb_pickle::PickleError;
use zodb_storage::{Oid, StorageError, Tid};

/// Any failure of the persistence layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage refused or failed (conflicts are in here: see [`Error::is_conflict`]).
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// A record's bytes are not a pickle we can read, or a state cannot be pickled.
    #[error("object {oid:?}: {source}")]
    Pickle {
        oid: Option<Oid>,
        #[source]
        source: PickleError,
    },

    /// A state does not have the shape the Rust type expects (a missing field, a wrong
    /// type), or a value cannot be stored in a state.
    #[error("object {}: {message}", oid.map(|o| format!("{o:?}")).unwrap_or_else(|| "(new)".into()))]
    State { oid: Option<Oid>, message: String },

    /// The record's class is not the one the reference was typed with.
    #[error("object {oid:?} is a {found}, not a {expected}")]
    WrongClass {
        oid: Oid,
        expected: String,
        found: String,
    },

    /// The object does not exist in this transaction's snapshot (never created, created
    /// after the snapshot, or deleted).
    #[error("object {0:?} does not exist in this snapshot")]
    NotFound(Oid),

    /// The object is being edited through another guard of this transaction.
    #[error("object {0:?} is already being edited in this transaction")]
    Busy(Oid),

    /// A change was attempted inside the function of `Transaction::read`, which has
    /// the transaction's cache lent out.
    #[error("objects cannot be changed or added while one is lent out by Transaction::read")]
    Lent,

    /// A change was attempted on a read-only database.
    #[error("the database is read-only")]
    ReadOnly,
}

impl Error {
    /// Whether retrying the whole transaction on a fresh snapshot may succeed: a write
    /// conflict or a read conflict (`check_current_serial`).
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Storage(e) => e.as_conflict().is_some(),
            _ => false,
        }
    }

    /// The newest transaction a conflict was with (see [`Retryable::conflict_tid`]).
    pub fn conflict_tid(&self) -> Option<Tid> {
        match self {
            Error::Storage(e) => e.conflicts().iter().map(|c| c.committed).max(),
            _ => None,
        }
    }

    pub(crate) fn state(oid: Option<Oid>, message: impl Into<String>) -> Error {
        Error::State {
            oid,
            message: message.into(),
        }
    }

    pub(crate) fn pickle(oid: Option<Oid>, source: PickleError) -> Error {
        Error::Pickle { oid, source }
    }
}

/// What [`crate::TransactionManager`] needs of the error type of the function it retries.
pub trait Retryable {
    /// True when the failure is a conflict worth retrying on a fresh snapshot.
    fn is_conflict(&self) -> bool;

    /// The newest transaction the conflict was with, when known: the retry waits until
    /// the database's snapshot includes it, since a snapshot before it would meet the
    /// same conflict again.
    fn conflict_tid(&self) -> Option<Tid> {
        None
    }
}

impl Retryable for Error {
    fn is_conflict(&self) -> bool {
        Error::is_conflict(self)
    }

    fn conflict_tid(&self) -> Option<Tid> {
        Error::conflict_tid(self)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
