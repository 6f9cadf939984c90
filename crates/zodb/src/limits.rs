//! Every limit and default size of the persistence layer, in one place.  Names end in
//! their qualifier (`_max`, `_default`).

/// Objects a connection's cache keeps by default (ZODB's `cache_size` is 400; our objects
/// are small and a web page touches tens of them).
pub const CACHE_OBJECTS_DEFAULT: usize = 10_000;

/// Record bytes a connection's cache keeps by default (ZODB's `cache_size_bytes`).
pub const CACHE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// Idle connections (with their caches) a [`crate::DB`] pool keeps (ZODB's `pool_size`).
pub const POOL_SIZE_DEFAULT: usize = 7;

/// Attempts a [`crate::TransactionManager`] makes by default (Python's
/// `transaction.manager.attempts()` default is 3).
pub const ATTEMPTS_DEFAULT: u32 = 3;

/// Oids changed by recent transactions that a database remembers for connections that have
/// not started a transaction since; a connection further behind drops its whole cache.
pub const INVALIDATION_LOG_OIDS_MAX: usize = 200_000;

/// Oids a connection asks the storage for at once when it adds objects.
pub const OID_BATCH_SIZE: usize = 64;

/// Items of a BTree bucket before it splits (BTrees' `OOBucket` maximum).
pub const BUCKET_ITEMS_MAX: usize = 30;

/// Children of a BTree node before it splits (BTrees' `OOBTree` maximum).
pub const NODE_CHILDREN_MAX: usize = 250;

/// Revisions of the database root [`crate::DB::undo`] reads to explain why a transaction
/// that wrote the root cannot be undone (the root changes rarely: at the creation of the
/// database and of the application's objects).
pub const ROOT_HISTORY_CHECKED: usize = 100;
