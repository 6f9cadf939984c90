//! Errors of the storage API.
//!
//! One umbrella, [`StorageError`], whose variants are the conditions a
//! caller acts on differently: a missing object, a write conflict, a
//! read-only storage, misuse of two-phase commit, an undo that cannot be
//! done, damage found in a file, an I/O failure, a storage that refuses
//! writes after such a failure. The ZEO server maps each variant to the
//! Python exception a `ClientStorage` re-raises (`POSKeyError`,
//! `ConflictError`, `ReadOnlyError`, `StorageTransactionError`, ...).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::ids::{Oid, Tid};

/// A write whose expected serial is not the object's committed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictError {
    pub oid: Oid,
    /// The serial of the committed (current) revision.
    pub committed: Tid,
    /// The serial the writer based its change on.
    pub expected: Tid,
    /// True for a `check_current_serial` failure (Python's `ReadConflictError`).
    pub read_conflict: bool,
}

impl std::fmt::Display for ConflictError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.read_conflict {
            "read conflict"
        } else {
            "conflict"
        };
        write!(
            f,
            "database {kind} error (oid 0x{:016x}, serial this txn started with {}, serial currently committed {})",
            self.oid.0, self.expected, self.committed
        )
    }
}

/// Everything the storage API can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object does not exist (or not in the revision asked for).
    #[error("object 0x{:016x} not found{}", .oid.0, .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    PosKey { oid: Oid, detail: Option<String> },

    #[error("{0}")]
    Conflict(ConflictError),

    /// Several stores of one transaction conflict (reported by `vote`, so
    /// that a client resolving conflicts sees all of them at once).
    #[error("{} conflicts, the first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Conflicts(Vec<ConflictError>),

    #[error("the storage is read-only")]
    ReadOnly,

    /// Two-phase commit used out of order, or with an unknown handle.
    #[error("storage transaction error: {0}")]
    Transaction(String),

    /// An undo that cannot be done; one message per object that blocks it.
    #[error("undo error: {}", .0.join("; "))]
    Undo(Vec<String>),

    /// The file is damaged at the named offset.
    #[error("{}: corrupted at offset {offset}: {reason}", .path.display())]
    Corrupted {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// Not a FileStorage, or a format version we do not handle.
    #[error("{}: {reason}", .path.display())]
    Format { path: PathBuf, reason: String },

    /// Another process holds the storage open for writing.
    #[error("{}: locked by another process", .path.display())]
    Locked { path: PathBuf },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// A write or fsync failed earlier; the storage refuses commits until it
    /// is reopened, since what is on disk is no longer known.
    #[error("the storage refuses writes after an earlier I/O failure ({0}); reopen it")]
    Poisoned(String),

    /// A value outside what the format or a limit allows (e.g. a user name
    /// over 65535 bytes).
    #[error("{0}")]
    Limit(String),

    #[error("pack failed: {0}")]
    Pack(String),

    /// The storage cannot do this (blobs without a blob directory, ...).
    #[error("not supported: {0}")]
    Unsupported(String),

    /// The storage was closed.
    #[error("the storage is closed")]
    Closed,

    /// A vote waited longer than the storage's lock timeout for objects another
    /// transaction is committing (voted and not finished). Nothing was written; the
    /// same transaction may go through once that one finishes or is aborted.
    #[error("{LOCK_TIMEOUT_TEXT} (waited {:.1} s)", .waited.as_secs_f64())]
    LockTimeout { waited: Duration },

    /// The storage is out of reach: a ZEO client without a connection to its server
    /// (lost, or not back within the client's wait). The call was not done; the
    /// client reconnects by itself, so a later call may succeed.
    #[error("the database server is out of reach: {0}")]
    Disconnected(String),
}

/// How a [`StorageError::LockTimeout`] begins when written out. A ZEO server sends it
/// as the text of a `StorageTransactionError` (the class Python clients know), and our
/// ZEO client recognises it by this text.
pub const LOCK_TIMEOUT_TEXT: &str =
    "timed out waiting for the objects another transaction is committing";

impl StorageError {
    pub fn pos_key(oid: Oid) -> StorageError {
        StorageError::PosKey { oid, detail: None }
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> StorageError {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn is_pos_key(&self) -> bool {
        matches!(self, StorageError::PosKey { .. })
    }

    /// The first (or only) conflict this error reports.
    pub fn as_conflict(&self) -> Option<&ConflictError> {
        self.conflicts().first().copied()
    }

    /// Every conflict this error reports (none for other errors).
    pub fn conflicts(&self) -> Vec<&ConflictError> {
        match self {
            StorageError::Conflict(c) => vec![c],
            StorageError::Conflicts(cs) => cs.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the same work may succeed if simply done again a little later: a
    /// conflict (on a fresh snapshot) or a lock timeout. A lost server is not: it is
    /// reported at once rather than retried while the server is away.
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::LockTimeout { .. }) || self.as_conflict().is_some()
    }

    /// Whether the storage could not be reached (see [`StorageError::Disconnected`]).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, StorageError::Disconnected(_))
    }

    /// One error for a list of write conflicts found at vote.
    pub fn from_conflicts(mut conflicts: Vec<ConflictError>) -> StorageError {
        if conflicts.len() == 1 {
            StorageError::Conflict(conflicts.remove(0))
        } else {
            StorageError::Conflicts(conflicts)
        }
    }
}

impl From<ConflictError> for StorageError {
    fn from(c: ConflictError) -> Self {
        StorageError::Conflict(c)
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
