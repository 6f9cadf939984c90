//! `PgStorage`: a history-preserving ZODB storage on PostgreSQL, in the
//! tables of RelStorage 4.3's history-preserving schema, so Python
//! RelStorage clients and bbru share one database.
//!
//! - `schema.rs`: the DDL (RelStorage's layout, our own SQL), its check, and
//!   the session's staging table.
//! - `storage.rs`: [`PgStorage`], its runtime and the thin `impl Storage`.
//! - `txn.rs`: buffered transactions, vote (locks, serial checks, staging),
//!   finish (the commit lock, the move, `COMMIT`, in one round trip), abort.
//! - `undo.rs`: what an undo checks and copies forward.
//! - `reads.rs`: loads, history, the undo log, the iterator.
//! - `poll.rs`: commits of every client reported to the listeners, in tid
//!   order, from the newest tid polled; oids from `zoid_seq`.
//! - `listen.rs`: `LISTEN/NOTIFY`, so commits of other bbru processes are
//!   reported at once.
//! - `pack.rs`: pack with garbage collection.
//! - `pool.rs`: the connection pool; `error.rs`: [`PgError`];
//!   `limits.rs`: every limit.

mod error;
pub mod limits;
mod listen;
mod pack;
mod poll;
mod pool;
mod reads;
mod schema;
mod storage;
mod txn;
mod undo;

pub use error::PgError;
pub use storage::PgStorage;

/// Whether `s` names a PostgreSQL database (`postgresql://` or
/// `postgres://`), as the command line tells it from a file path.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgresql://") || s.starts_with("postgres://")
}
