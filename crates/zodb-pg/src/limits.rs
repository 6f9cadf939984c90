//! Every limit of the PostgreSQL storage, each with its reason.

use std::time::Duration;

/// Connections one `PgStorage` opens at most by default (loads, votes, polls
/// and pack together; `PgStorage::with_connections` sets another number). A
/// voted transaction holds one until it finishes, so this also bounds the
/// transactions voted at once; a PostgreSQL backend costs several megabytes on
/// the server, and its default `max_connections` is 100, which six processes
/// at this default nearly use up (bbru sizes each instance's pool by its
/// `[storage] connections`).
pub const CONNECTIONS_DEFAULT: usize = 16;

/// How long a vote waits for the objects another transaction (ours or a
/// RelStorage client's) has locked before failing with `LockTimeout`; the
/// same default as the ZEO server's lock timeout.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `finish` waits for the commit lock (advisory lock -1, shared with
/// RelStorage). Another committer holds it only while the server runs its
/// last statements, but RelStorage's own function waits up to 500 s, and a
/// finish must not fail for a merely slow peer.
pub const COMMIT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// How long opening a connection may take before the storage is reported out
/// of reach.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows one poll reads (an object changed by a transaction is one row). A
/// storage further behind than this (after a long pause, or a huge import by
/// another process) resets its listeners instead of reporting each oid, as a
/// ZEO client does after a long disconnection.
pub const POLL_ROWS_MAX: i64 = 100_000;

/// Transactions the iterator reads in one query; their records come in the
/// next, so memory holds at most this many transactions at once.
pub const ITERATOR_BATCH_TRANSACTIONS: i64 = 64;

/// Oids one `nextval('zoid_seq')` stands for: RelStorage allocates oids in
/// ranges of 16 per sequence value (its `AbstractRangedOIDAllocator`), and
/// both must agree so that neither hands out the other's oids.
pub const OIDS_PER_SEQUENCE_VALUE: u64 = 16;

/// Objects whose states pack's garbage collection reads in one query.
pub const PACK_BATCH_OBJECTS: i64 = 1_000;

/// How long the connection listening for commits (`LISTEN`) waits before it
/// is made again after breaking: commits meanwhile still arrive at each poll,
/// so a short pause costs only latency, and a server that is down is not
/// asked more than once a second.
pub const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Bytes of a blob sent or fetched in one statement (`lo_put`, `lo_get`):
/// a blob of any size crosses in pieces, so neither side holds more of it
/// in memory than this, and each statement stays short.
pub const BLOB_PIECE_BYTES: usize = 1 << 20;

/// Bytes of object states the storage keeps in memory by default, shared by
/// every connection of the process (`cache.rs`; `PgStorage::with_cache_bytes`
/// sets another): enough for the working set of a site of a few hundred
/// thousand small objects, a small part of an instance's memory.
pub const CACHE_BYTES_DEFAULT: usize = 64 << 20;

/// What an entry of that cache costs beside its data (key, tid, the LRU
/// list's links, the allocation), counted against its bound.
pub const CACHE_ENTRY_OVERHEAD_BYTES: usize = 64;

/// How often a read replica that lags is asked again how far it has come,
/// at most (loads it cannot serve go to the primary meanwhile): a standby
/// replays within milliseconds when healthy, and asking on every load would
/// double the queries while it catches up.
pub const REPLICA_RECHECK: Duration = Duration::from_millis(100);

/// How long a read replica that failed (down, refused, broken connection) is
/// left alone, its loads going to the primary (RelStorage's `replica-timeout`
/// plays this part there).
pub const REPLICA_RETRY: Duration = Duration::from_secs(10);

/// Bytes of blob files the storage's blob cache directory keeps by default
/// (`PgStorage::with_blob_cache_bytes` sets another; the files written longest
/// ago go first): the database holds every blob, so the directory is only a
/// cache, and a ZEO client's blob cache has the same default.
pub const BLOB_CACHE_BYTES_DEFAULT: u64 = 1 << 30;
