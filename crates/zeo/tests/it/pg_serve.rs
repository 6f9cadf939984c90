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

use crate::server::ServerProcess;

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
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut args = vec!["--postgres", db.url.as_str()];
    args.extend_from_slice(extra);
    ServerProcess::start_with(0, dir.join(format!("zeo-{n}.log")), &args)
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

/// A transaction voted and waiting for its `tpc_finish`, while more votes than
/// the server has PostgreSQL connections to spare wait for the objects it
/// locked, and a load waits for a connection: the load waits on a blocking
/// thread, not on the server's one I/O thread, so the `tpc_finish` that ends
/// every wait is read at once. (Answered in line, the load held that thread
/// until a vote gave up after the 10 s lock timeout.)
#[test]
fn a_load_waiting_for_a_database_connection_does_not_stop_a_finish() {
    use std::time::{Duration, Instant};
    use zeo::client::{ClientOptions, ClientStorage};
    use zodb_storage::{Oid, Storage, StorageError, Tid, TransactionMeta};

    let db = fresh_database();
    zodb_pg::PgStorage::create(&db.url).expect("the schema");
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&db, dir.path(), &[]);
    let connect = || {
        let mut o = ClientOptions::new(server.address());
        o.wait_timeout = Duration::from_secs(30);
        ClientStorage::connect(o).expect("a client")
    };
    let commit = |c: &ClientStorage, serial: Tid, data: &[u8]| {
        let t = c.tpc_begin(TransactionMeta::new("", "")).unwrap();
        c.store(&t, Oid(0), serial, data.to_vec())?;
        c.vote(&t)?;
        c.finish(&t)
    };
    let first = commit(&connect(), Tid::ZERO, b"first").expect("the first commit");

    let holder = connect();
    let held = holder.tpc_begin(TransactionMeta::new("", "")).unwrap();
    holder
        .store(&held, Oid(0), first, b"holder".to_vec())
        .unwrap();
    holder.vote(&held).expect("the holder's vote");

    // More votes on the same object than the pool has connections: each
    // waits for the holder's lock on a connection of its own, the last for a
    // connection.
    // (Connected first: a client's `get_info` at connect is a query too.)
    let clients: Vec<_> = (0..zodb_pg::limits::CONNECTIONS_DEFAULT)
        .map(|_| connect())
        .collect();
    let reader = connect();
    let voters: Vec<_> = clients
        .into_iter()
        .map(|c| std::thread::spawn(move || commit(&c, first, b"voter").map(|_| ())))
        .collect();
    let waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'advisory'";
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.query_i64(waiting) < zodb_pg::limits::CONNECTIONS_DEFAULT as i64 - 1 {
        assert!(
            Instant::now() < deadline,
            "the votes never waited on the lock: {}",
            db.query_i64("SELECT count(*) FROM pg_locks WHERE NOT granted")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let load = std::thread::spawn(move || reader.load_before(Oid(0), Tid::MAX));
    // The load has reached the server and waits for a connection.
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let tid = holder.finish(&held).expect("the holder's finish");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the finish waited {took:?} (a lock timeout is 10 s)"
    );
    for v in voters {
        match v.join().unwrap() {
            Err(StorageError::Conflict(_) | StorageError::Conflicts(_)) => {}
            other => panic!("a voter should see the holder's commit as a conflict: {other:?}"),
        }
    }
    let rev = load.join().unwrap().expect("the load").expect("a revision");
    assert!(rev.start == tid || rev.start == first, "{rev:?}");
}

/// `ro-replica-conf` in zeo.conf names a hot standby: the server's loads for
/// its clients go there once it has replayed what they need.
#[test]
fn a_read_replica_named_in_zeo_conf_answers_the_servers_loads() {
    use std::time::{Duration, Instant};
    use zeo::client::{ClientOptions, ClientStorage};
    use zodb_storage::{Oid, Storage, Tid, TransactionMeta};

    let db = fresh_database();
    zodb_pg::PgStorage::create(&db.url).expect("the schema");
    let replica = test_support::pg::standby();
    let dir = tempfile::tempdir().unwrap();
    let replicas = dir.path().join("replicas.conf");
    std::fs::write(
        &replicas,
        format!("# the standby\n{}\n", replica.database(&db.name)),
    )
    .unwrap();
    let conf = dir.path().join("zeo.conf");
    std::fs::write(
        &conf,
        format!(
            "<zeo>\n address 127.0.0.1:{port}\n</zeo>\n<relstorage 1>\n ro-replica-conf {r}\n \
             <postgresql>\n  dsn {url}\n </postgresql>\n</relstorage>\n",
            port = 0,
            r = replicas.display(),
            url = db.url
        ),
    )
    .unwrap();
    let server = ServerProcess::start_with(
        0,
        dir.path().join("zeo.log"),
        &["-C", conf.to_str().unwrap()],
    );
    let mut o = ClientOptions::new(server.address());
    o.wait_timeout = Duration::from_secs(30);
    let client = ClientStorage::connect(o).unwrap();
    let t = client.tpc_begin(TransactionMeta::new("", "")).unwrap();
    client
        .store(&t, Oid(0), Tid::ZERO, b"root".to_vec())
        .unwrap();
    client.vote(&t).unwrap();
    let tid = client.finish(&t).unwrap();
    let newest = r#"SELECT COALESCE(MAX(tid), 0) FROM "transaction""#;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (replica.query_i64(&db.name, newest) as u64) < tid.0 {
        assert!(
            Instant::now() < deadline,
            "the standby never replayed {tid}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second client: its load is not answered from the first's cache.
    let mut o = ClientOptions::new(server.address());
    o.wait_timeout = Duration::from_secs(30);
    let reader = ClientStorage::connect(o).unwrap();
    let rev = reader.load_before(Oid(0), Tid(tid.0 + 1)).unwrap().unwrap();
    assert_eq!(rev.data, b"root");
    let on_standby = replica.query_i64(
        &db.name,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bbru-replica'",
    );
    assert!(
        on_standby >= 1,
        "the server's load did not go to the standby"
    );
}
