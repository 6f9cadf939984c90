//! The persistence layer of bbru: what lets the application work with plain Rust types
//! while every change is stored, versioned and shared through a ZODB storage.
//!
//! - [`DB`] wraps any [`Storage`](zodb_storage::Storage) (FileStorage, MemoryStorage, a ZEO
//!   `ClientStorage`): it learns of every commit through the storage's listener, keeps a
//!   pool of [`Connection`]s, and creates the root on an empty storage.
//! - A [`Connection`] caches objects; each [`Transaction`] reads one snapshot
//!   (`load_before`), tracks changes explicitly ([`Transaction::edit`]) and commits with
//!   two-phase commit, with user, description and extension (the audit trail).
//! - Conflicting changes to one object merge when its class says how ([`resolve`],
//!   ZODB's `_p_resolveConflict`); [`TransactionManager`] retries a unit of work on the
//!   conflicts that remain.
//! - Objects are Rust types implementing [`Persistent`] (usually through serde and the
//!   [`persistent!`] macro); their records are real ZODB records (class pickle + state
//!   pickle, record-format §2–§6) that Python ZODB reads, and [`PRef`] is a typed
//!   persistent reference.
//! - [`PersistentMapping`] and [`PersistentList`] are Python's, item for item;
//!   [`BTree`] is `BTrees.OOBTree.OOBTree` (buckets and nodes as separate records), so a
//!   container with a million entries changes one small record per insert, and Python reads
//!   it as the real thing.
//! - [`btree::Length`] is `BTrees.Length.Length`; buckets, one-bucket trees and lengths
//!   resolve conflicts with `BTrees`' own rules ([`btree::merge`]).
//!
//! This crate knows nothing of HTTP nor of ZEO: it talks to `dyn Storage`.

mod blob;
pub mod btree;
mod cache;
mod connection;
mod db;
mod error;
pub mod limits;
mod mapping;
mod mvcc;
mod persistent;
pub mod resolve;
pub mod state;
mod undo;

pub use blob::Blob;
pub use btree::BTree;
pub use connection::{Connection, Edit, Generic, Savepoint, Transaction};
pub use db::{DB, DbOptions, DbStats, TransactionManager, Turns, UndoError};
pub use error::{Error, Result, Retryable};
pub use mapping::{PersistentList, PersistentMapping};
pub use persistent::{AnyRef, PRef, Persistent};
pub use undo::ResolverOf;
pub use zodb_pickle::Value;
pub use zodb_storage::{Oid, Tid};
