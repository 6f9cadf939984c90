//! A fresh PostgreSQL database for one test, on the server `BBRU_PG_URL`
//! names (`tools/test.sh` starts a private cluster and sets it). Each test
//! gets a database of its own, so tests run in parallel without seeing each
//! other's objects or locks (advisory locks are per database). Without
//! `BBRU_PG_URL` the test fails, saying how to get one: it never skips.

use std::sync::atomic::{AtomicU64, Ordering};

/// A database created for one test and dropped (connections and all) when
/// this is dropped.
#[derive(Debug)]
pub struct FreshDatabase {
    /// Where the database is, for `PgStorage::open`, `psql` or RelStorage.
    pub url: String,
    /// Its name.
    pub name: String,
    admin_url: String,
}

/// The server the tests use.
///
/// # Panics
/// When `BBRU_PG_URL` is not set.
pub fn server_url() -> String {
    std::env::var("BBRU_PG_URL").unwrap_or_else(|_| {
        panic!(
            "BBRU_PG_URL is not set: run the tests through tools/test.sh, which starts a \
             private PostgreSQL cluster, or point BBRU_PG_URL at a server where this user \
             may create databases (tools/pg-cluster.sh start DIR prints a URL)"
        )
    })
}

/// `url` with its database name replaced by `name` (URLs of the form
/// `postgresql://user@host:port/db?options`).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Creates an empty database on the test server.
///
/// # Panics
/// When the server is unset or refuses.
pub fn fresh_database() -> FreshDatabase {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let admin_url = server_url();
    let name = format!(
        "bbru_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to BBRU_PG_URL ({admin_url}): {e}"));
    // Two statements: CREATE DATABASE refuses to run in a transaction block,
    // which one multi-statement query is.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&statement)
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    }
    FreshDatabase {
        url: with_database(&admin_url, &name),
        name,
        admin_url,
    }
}

impl FreshDatabase {
    /// The one integer `sql` answers on this database (a count, for tests
    /// that wait for a state of the server, such as sessions waiting on locks).
    ///
    /// # Panics
    /// When the query fails or answers no integer.
    pub fn query_i64(&self, sql: &str) -> i64 {
        query_i64(&self.url, sql)
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let dropped =
            postgres::Client::connect(&self.admin_url, postgres::NoTls).and_then(|mut c| {
                c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
            });
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// The one integer `sql` answers on the database at `url`.
fn query_i64(url: &str, sql: &str) -> i64 {
    let mut c = postgres::Client::connect(url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// A hot standby of the test server (`tools/pg-cluster.sh standby`): a copy
/// of every database on it, kept up by streaming replication, answering
/// read-only queries. Stopped and removed when dropped.
#[derive(Debug)]
pub struct Standby {
    /// The standby's `postgres` database.
    pub url: String,
    dir: tempfile::TempDir,
}

/// Starts a standby of the server `BBRU_PG_URL` names.
///
/// # Panics
/// When the server is unset or the standby cannot be made.
pub fn standby() -> Standby {
    let dir = tempfile::tempdir().expect("a directory for the standby");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/pg-cluster.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("standby")
        .arg(server_url())
        .arg(dir.path().join("cluster"))
        .output()
        .expect("running tools/pg-cluster.sh");
    assert!(
        out.status.success(),
        "tools/pg-cluster.sh standby failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("the standby's URL")
        .to_owned();
    Standby { url, dir }
}

impl Standby {
    /// The URL of database `name` on the standby.
    pub fn database(&self, name: &str) -> String {
        with_database(&self.url, name)
    }

    /// Runs `sql` on the standby's `postgres` database (`pg_wal_replay_pause()`, say).
    ///
    /// # Panics
    /// When it fails.
    pub fn execute(&self, sql: &str) {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to the standby: {e}"));
        c.batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The one integer `sql` answers on database `name` of the standby.
    ///
    /// # Panics
    /// When the query fails.
    pub fn query_i64(&self, name: &str, sql: &str) -> i64 {
        query_i64(&self.database(name), sql)
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/pg-cluster.sh");
        let _ = std::process::Command::new("bash")
            .arg(&script)
            .arg("stop")
            .arg(self.dir.path().join("cluster"))
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_replaced() {
        let check = |url: &str, expected: &str| assert_eq!(with_database(url, "t"), expected);
        check("postgresql://u@h:5/postgres", "postgresql://u@h:5/t");
        check("postgresql://u@h:5", "postgresql://u@h:5/t");
        check(
            "postgresql://u@h:5/db?sslmode=disable",
            "postgresql://u@h:5/t?sslmode=disable",
        );
        check("postgres://h/", "postgres://h/t");
    }
}
