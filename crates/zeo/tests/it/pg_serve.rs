//! `bbru-zeo` serving a PostgreSQL database that other writers share: Python
//! ZEO clients of the server hear of commits made directly to the database
//! by Python RelStorage (at the server's next poll, or before the server's
//! own next commit) and by another `bbru-zeo` (at once, by `NOTIFY`), and are
//! never sent data newer than the invalidations they received
//! (`tests/python/zeo_pg_invalidation.py` drives the clients).

use std::ffi::OsStr;

use serde_json::Value as Json;
use test_support::pg::{FreshDatabase, fresh_database};
use test_support::python::run_ok;

use crate::server::{ServerProcess, free_port};

/// A database holding root['py'] = {n: 1}, written by RelStorage itself.
fn relstorage_database() -> FreshDatabase {
    let db = fresh_database();
    run_ok(
        "relstorage_interop.py",
        &[OsStr::new("write"), OsStr::new(&db.url)],
    );
    db
}

fn serve(db: &FreshDatabase, dir: &std::path::Path, extra: &[&str]) -> ServerProcess {
    let port = free_port();
    let mut args = vec!["--postgres", db.url.as_str()];
    args.extend_from_slice(extra);
    ServerProcess::start_with(port, dir.join(format!("zeo-{port}.log")), &args)
}

fn clients(args: &[&str]) -> Json {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let out = run_ok("zeo_pg_invalidation.py", &args);
    serde_json::from_str(out.lines().last().expect("a JSON line")).unwrap()
}

/// The server polls only once an hour here, so RelStorage's commit is in the
/// database long before the server announces it: a client that connects
/// meanwhile is told the older last tid and loads the older state (loads are
/// answered as of what a client was told); the server's next own commit
/// announces RelStorage's first, to both clients, in tid order.
#[test]
fn relstorage_commits_reach_zeo_clients_in_order_and_never_early() {
    let db = relstorage_database();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&db, dir.path(), &["--poll-interval", "3600"]);
    let out = clients(&["stale", &server.address(), &db.url]);
    let rel = out["relstorage_tid"].as_u64().unwrap();
    let own = out["own_tid"].as_u64().unwrap();
    let py = out["py_oid"].as_u64().unwrap();
    assert_eq!(out["first_n"], 1, "{out}");
    assert!(out["fresh_last"].as_u64().unwrap() < rel, "{out}");
    assert_eq!(
        out["fresh_n"], 1,
        "not announced yet: the older state: {out}"
    );
    assert!(rel < own, "{out}");
    // The committer heard RelStorage's commit (before its own reply); the
    // other client heard both, in tid order.
    assert_eq!(
        out["first_heard"],
        serde_json::json!([[rel, [py]]]),
        "{out}"
    );
    let fresh: Vec<u64> = out["fresh_heard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[0].as_u64().unwrap())
        .collect();
    assert_eq!(fresh, vec![rel, own], "{out}");
    assert_eq!(out["first_after"], 2, "{out}");
    assert_eq!(out["fresh_after"], 2, "{out}");
}

/// At the default poll interval a RelStorage commit reaches a ZEO client
/// with no other activity on the server.
#[test]
fn relstorage_commit_is_polled_and_invalidated() {
    let db = relstorage_database();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&db, dir.path(), &[]);
    let out = clients(&["watch", &server.address(), &db.url, "7"]);
    let rel = out["relstorage_tid"].as_u64().unwrap();
    let py = out["py_oid"].as_u64().unwrap();
    assert_eq!(out["before"], 1, "{out}");
    assert_eq!(out["heard"], serde_json::json!([[rel, [py]]]), "{out}");
    assert_eq!(out["after"], 7, "{out}");
}

/// Two servers on one database, each polling only once an hour: a commit
/// through either reaches the other's clients by `NOTIFY`, at once.
#[test]
fn two_servers_on_one_database_invalidate_each_others_clients() {
    let db = relstorage_database();
    let dir = tempfile::tempdir().unwrap();
    let a = serve(&db, dir.path(), &["--poll-interval", "3600"]);
    let b = serve(&db, dir.path(), &["--poll-interval", "3600"]);
    for (n, (from, to)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
        let n = (n + 10).to_string();
        let out = clients(&["across", &from.address(), &to.address(), &n]);
        let tid = out["tid"].as_u64().unwrap();
        let py = out["py_oid"].as_u64().unwrap();
        assert_eq!(out["heard"], serde_json::json!([[tid, [py]]]), "{out}");
        assert_eq!(out["after"].to_string(), n, "{out}");
        assert!(out["seconds"].as_f64().unwrap() < 5.0, "{out}");
    }
}
