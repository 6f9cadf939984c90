//! `bbru-zeo copy` between a Data.fs and PostgreSQL both ways, and
//! `bbru-zeo init-db`, on databases of the test server (`BBRU_PG_URL`).

use test_support::fixtures;
use test_support::pg::fresh_database;
use zodb_storage::{FileStorage, Storage, TransactionRecord};

use crate::{bbru_zeo, path_str};

/// Every transaction with what a copy must keep: tid, status, metadata, and
/// each record's oid, tid and data (backpointers resolved to their data; in
/// oid order, which is how PostgreSQL lists a transaction's records).
fn history(s: &dyn Storage) -> Vec<TransactionRecord> {
    s.iterator(None, None)
        .unwrap()
        .map(|t| {
            let mut t = t.unwrap();
            for r in &mut t.records {
                r.data_txn = None;
            }
            t.records.sort_by_key(|r| r.oid);
            t
        })
        .collect()
}

fn ok(args: &[&str]) -> String {
    let out = bbru_zeo(args);
    assert!(
        out.status.success(),
        "bbru-zeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn copy_moves_a_python_history_to_postgresql_and_back() {
    for fixture in ["unpacked.fs", "Data.fs"] {
        let dir = tempfile::tempdir().unwrap();
        let src = fixtures::copy_to(fixture, dir.path());
        let db = fresh_database();
        let out = ok(&["copy", path_str(&src), &db.url]);
        assert!(out.contains("transactions"), "{out}");
        // Run again: nothing left to copy.
        let again = ok(&["copy", path_str(&src), &db.url]);
        assert!(again.contains(": 0 transactions"), "{again}");

        let back = dir.path().join("back.fs");
        ok(&["copy", &db.url, path_str(&back)]);

        let original = history(&FileStorage::open_read_only(&src).unwrap());
        let pg = history(&zodb_pg::PgStorage::open(&db.url).unwrap());
        let returned = history(&FileStorage::open_read_only(&back).unwrap());
        assert!(!original.is_empty());
        assert!(pg == original, "{fixture} differs in PostgreSQL");
        assert!(returned == original, "{fixture} differs copied back");
    }
}

#[test]
fn init_db_creates_the_schema_once() {
    let db = fresh_database();
    let missing = bbru_zeo(&["copy", &db.url, "/nonexistent/never.fs"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("bbru-zeo init-db"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    assert!(ok(&["init-db", &db.url]).contains("schema ready"));
    assert!(ok(&["init-db", &db.url]).contains("schema ready"));
    let s = zodb_pg::PgStorage::open(&db.url).unwrap();
    assert!(s.is_empty());
}
