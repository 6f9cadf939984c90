//! The storage layer of bbru: object and transaction ids, the [`Storage`]
//! trait with ZODB's semantics, and the engines behind it.
//!
//! - [`FileStorage`]: a ZODB FileStorage (`Data.fs`) that Python ZODB opens,
//!   and that opens what Python wrote.
//! - [`MemoryStorage`]: the same semantics in memory, for tests.
//! - [`DemoStorage`]: a writable in-memory overlay over a read-only base.
//!
//! This crate knows nothing of networking, HTTP or Rust object types; it
//! moves records (opaque byte strings) and reads them only to find
//! references when packing.

pub mod blob;
mod commit_lock;
mod copy;
mod demo;
mod error;
pub mod filestorage;
pub mod gc;
mod ids;
pub mod inline;
pub mod limits;
pub mod listeners;
mod memory;
mod object_locks;
mod storage;
mod txn_op;

pub use copy::{CopyStats, copy_transactions, is_blob_record};
pub use demo::DemoStorage;
pub use error::{ConflictError, LOCK_TIMEOUT_TEXT, Result, StorageError};
pub use filestorage::FileStorage;
pub use ids::{Oid, Tid, TidClock};
pub use listeners::{InvalidationListener, Listeners};
pub use memory::MemoryStorage;
pub use storage::{
    DataRecord, HistoryEntry, RecordIterItem, Revision, RevisionRef, Storage, StorageLocation,
    SyncDone, TransactionIter, TransactionMeta, TransactionRecord, TxnHandle, TxnStatus,
    UndoLogEntry, parse_undo_id, undo_id,
};
pub use txn_op::TxnOp;
