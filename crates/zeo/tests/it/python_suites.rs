//! The verdict of the reference implementation: Python ZODB 6.4's own
//! storage test suites (BasicStorage, HistoryStorage, IteratorStorage,
//! PackableStorage, Synchronization, ConflictResolution, RevisionStorage,
//! MTStorage, ReadOnlyStorage, TransactionalUndoStorage, RecoveryStorage)
//! and ZEO 6.2's, plus application-level tests through `ZODB.DB`, all run
//! through an unmodified Python `ClientStorage` against `bbru-zeo`
//! (`tests/python/zeo/run_suites.py`); the storage tests a second time over TLS
//! with ZEO's own test certificates, as ZEO's `FileStorageSSLTests`, and twice more
//! with blobs, as ZEO's `BlobAdaptedFileStorageTests` (a client blob cache: files
//! travel over the connection) and `BlobWritableCacheTests` (the server's blob
//! directory shared); and ZODB's reusable blob suite (the `blob_connection`,
//! `blob_importexport`, `blob_transaction` and `blob_packing` doctests, testblob's own
//! doctests and `BlobUndoTests`) in both blob modes, as ZEO's own tests run it.
//! The storage suites run again against `bbru-zeo` serving PostgreSQL.

use std::process::Command;

fn run_suites(modules: &[&str]) {
    run_suites_on("bbru", modules);
}

/// The suites with servers of `kind` (`bbru`: on Data.fs files; `bbru-pg`:
/// each on a fresh PostgreSQL database of `BBRU_PG_URL`).
fn run_suites_on(kind: &str, modules: &[&str]) {
    let python = test_support::python::python();
    let runner = test_support::python::repo_root().join("tests/python/zeo/run_suites.py");
    let mut command = Command::new(python);
    if kind == "bbru-pg" {
        command.env("BBRU_PG_URL", test_support::pg::server_url());
    }
    let out = command
        .arg(runner)
        .args(modules)
        .env("ZEO_SERVER_KIND", kind)
        .env("BBRU_ZEO", env!("CARGO_BIN_EXE_bbru-zeo"))
        .env("PYTHONUTF8", "1")
        .output()
        .expect("run the Python suites");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or_default();
    assert!(
        out.status.success() && summary.contains(" 0 failed"),
        "Python suites against bbru-zeo: {summary}\n--- stdout ---\n{stdout}\n--- stderr (tail) ---\n{}",
        stderr
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let passed: usize = summary
        .split(' ')
        .next()
        .and_then(|n| n.trim_end_matches(',').parse().ok())
        .unwrap_or(0);
    assert!(passed > 10, "{summary}");
}

#[test]
fn zodb_and_zeo_storage_suites_pass_against_bbru_zeo() {
    run_suites(&["test_zodb_storage_suites"]);
}

/// ZODB's generic suites (BasicStorage with MVCC, Synchronization, History,
/// Iterator, Packable, TransactionalUndo, ConflictResolution, Revision, MT,
/// ReadOnly, Recovery) and ZEO's client-side ones, through `ClientStorage`
/// against `bbru-zeo` serving PostgreSQL (`test_zodb_pg_suites.py` lists what
/// is skipped and why).
#[test]
fn zodb_storage_suites_pass_against_bbru_zeo_on_postgresql() {
    run_suites_on("bbru-pg", &["test_zodb_pg_suites"]);
}

#[test]
fn zodb_applications_work_against_bbru_zeo() {
    run_suites(&["test_zodb_app"]);
}

#[test]
fn zodb_blob_doctests_pass_against_bbru_zeo() {
    run_suites(&["test_blob_doctests"]);
}

/// The same blob doctests against `bbru-zeo` serving PostgreSQL: blobs kept
/// in the database (`blob_chunk` large objects), the server's blob directory
/// its cache, with a client cache and with the directory shared.
#[test]
fn zodb_blob_doctests_pass_against_bbru_zeo_on_postgresql() {
    run_suites_on("bbru-pg", &["test_blob_doctests"]);
}
