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

/// How long an attempt waits for its turn among writers that kept conflicting
/// ([`crate::TransactionManager::with_turns`]) before it runs without: a turn is one
/// attempt (a request's work and its commit), well below this; a writer stuck holding
/// it (a commit waiting on a storage lock) must not stop the others for longer.
pub const TURN_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a retry after a conflict waits for the database to hear of the transaction
/// it conflicted with (a storage reports a commit just after it becomes visible, and a
/// committer descheduled in between would otherwise see every retry meet the same
/// conflict): it is usually there at once; past this the retry goes ahead anyway.
pub const CONFLICT_SNAPSHOT_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

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

/// Rounds a commit makes when its conflicts were resolved and new ones appear meanwhile
/// (each round merges with the newest committed state and stores again).  Bounded so a
/// hot object under a stream of commits fails over to the application's retry instead of
/// looping; Python's ZEO client stops after a like number of votes.
///
/// Each round gives up the objects' locks (the merge is committed as a new two-phase
/// commit), so a writer can lose rounds to others committing the same object meanwhile;
/// with 16 clients creating items in one folder through two instances on one ZEO server,
/// commits were seen needing up to 20 rounds.  50 keeps such a writer going (a round costs
/// a few ms) and still ends a commit that never wins.
pub const CONFLICT_RESOLUTION_ROUNDS_MAX: u32 = 50;

/// The longest random wait between two conflict-resolution rounds (the wait doubles from
/// 1 ms each round up to this): long enough to break the lockstep of writers that keep
/// colliding on one object, and short, because a writer that waits longer than another
/// writer's whole commit loses the next round too.
pub const CONFLICT_RESOLUTION_BACKOFF_MAX: std::time::Duration =
    std::time::Duration::from_millis(4);
