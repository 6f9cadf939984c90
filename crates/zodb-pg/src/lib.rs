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

mod blobs;
mod cache;
mod error;
pub mod limits;
mod listen;
mod pack;
mod poll;
mod pool;
mod reads;
mod replicas;
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

/// `url` with its password, if any, replaced by `***`: what may be logged or shown of a
/// connection string (`postgresql://user:secret@host/db`, or a libpq `key=value`
/// string with `password=secret`).
pub fn redacted(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{path}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redacted("postgresql://bbru:s3cret@db.example:5432/site?sslmode=require"),
            "postgresql://bbru:***@db.example:5432/site?sslmode=require"
        );
        assert_eq!(
            redacted("postgresql://bbru@db/site"),
            "postgresql://bbru@db/site"
        );
        assert_eq!(
            redacted("host=db dbname=site password=s3cret user=bbru"),
            "host=db dbname=site password=*** user=bbru"
        );
    }
}
