//! Python RelStorage 4.3 and `PgStorage` on one database: RelStorage opens
//! the schema bbru made, each side loads what the other committed, each
//! hears of the other's commits (RelStorage by its poll, bbru at `sync`),
//! and a write based on a state the other side replaced conflicts, both ways.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::Heard;
use serde_json::Value as Json;
use test_support::conformance::{meta, try_commit};
use test_support::pg::fresh_database;
use test_support::python::{python, run_ok, script};
use zodb_pg::PgStorage;
use zodb_pickle::Value;
use zodb_storage::{InvalidationListener, Oid, Storage, Tid, TransactionMeta};

const MAPPING: (&str, &str) = ("persistent.mapping", "PersistentMapping");

/// A `PersistentMapping` record as Python writes it: state `{'data': {...}}`.
fn mapping(items: Vec<(&str, Value)>) -> Vec<u8> {
    let data = items
        .into_iter()
        .map(|(k, v)| (Value::Str(k.into()), v))
        .collect();
    let state = Value::Dict(vec![(Value::Str("data".into()), Value::Dict(data))]);
    zodb_pickle::encode_record(MAPPING, &state).unwrap()
}

/// A reference to a `PersistentMapping`, as ZODB pickles one: `(oid, class)`.
fn reference(oid: Oid) -> Value {
    Value::PersistentRef(Box::new(Value::Tuple(vec![
        Value::Bytes(oid.to_bytes().to_vec()),
        Value::Global {
            module: MAPPING.0.into(),
            name: MAPPING.1.into(),
        },
    ])))
}

/// The `data` dict of a `PersistentMapping` record.
fn items(record: &[u8]) -> Vec<(String, Value)> {
    let (_, state) = zodb_pickle::decode_record(record).unwrap();
    let Value::Dict(state) = state else {
        panic!("state {state:?}")
    };
    let Some((_, Value::Dict(data))) = state.into_iter().next() else {
        panic!("no data")
    };
    data.into_iter()
        .map(|(k, v)| match k {
            Value::Str(k) => (k, v),
            other => panic!("key {other:?}"),
        })
        .collect()
}

fn item(record: &[u8], key: &str) -> Value {
    items(record)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .1
}

fn py(cmd: &str, url: &str, extra: &[&str]) -> Json {
    let mut args: Vec<&OsStr> = vec![OsStr::new(cmd), OsStr::new(url)];
    args.extend(extra.iter().map(OsStr::new));
    let out = run_ok("relstorage_interop.py", &args);
    serde_json::from_str(out.lines().last().expect("a JSON line")).unwrap()
}

#[test]
fn relstorage_and_bbru_share_a_database() {
    let db = fresh_database();
    drop(PgStorage::create(&db.url).unwrap());

    // Python writes into the schema bbru made (RelStorage adds its procedures).
    let wrote = py("write", &db.url, &[]);
    let py_oid = Oid(wrote["py_oid"].as_u64().unwrap());
    let t_py = Tid(wrote["tid"].as_u64().unwrap());

    // bbru reads it.
    let s = PgStorage::open(&db.url).unwrap();
    let heard = Arc::new(Heard::default());
    let weak: std::sync::Weak<dyn InvalidationListener> = Arc::downgrade(&heard) as _;
    s.add_listener(weak);
    assert_eq!(s.last_transaction(), t_py);
    let (root, root_serial) = s.load(Oid::ROOT).unwrap();
    assert_eq!(root_serial, t_py);
    assert_eq!(item(&root, "py"), reference(py_oid));
    let (pyrec, py_serial) = s.load(py_oid).unwrap();
    assert_eq!((item(&pyrec, "n"), py_serial), (Value::Int(1), t_py));
    let h = s.history(py_oid, 10).unwrap();
    assert_eq!(
        (h[0].user.as_slice(), h[0].description.as_slice()),
        (&b"/ py-user"[..], &b"from python"[..])
    );

    // bbru writes: a new mapping under root['rust'], and py['n'] = 2.
    let [rust] = s.new_oids(1).unwrap().try_into().unwrap();
    assert!(
        rust > py_oid,
        "bbru's oid {rust} from RelStorage's sequence"
    );
    let m = TransactionMeta::new("rust-user", "from bbru");
    let t_rust = try_commit(&s, m, |txn| {
        s.store(
            txn,
            rust,
            Tid::ZERO,
            mapping(vec![("made_by", Value::Str("bbru".into()))]),
        )?;
        s.store(
            txn,
            Oid::ROOT,
            root_serial,
            mapping(vec![("py", reference(py_oid)), ("rust", reference(rust))]),
        )?;
        s.store(txn, py_oid, py_serial, mapping(vec![("n", Value::Int(2))]))
    })
    .unwrap();
    assert!(t_rust > t_py);

    // Python reads it.
    let read = py("read", &db.url, &[]);
    assert_eq!(read["keys"], serde_json::json!(["py", "rust"]));
    assert_eq!(read["n"], 2);
    assert_eq!(read["rust"], serde_json::json!({"made_by": "bbru"}));
    assert_eq!(read["rust_oid"].as_u64(), Some(rust.0));
    assert_eq!(
        (read["user"].as_str(), read["description"].as_str()),
        (Some("rust-user"), Some("from bbru"))
    );
    // The root's creation by ZODB.DB, Python's change, ours.
    assert_eq!(read["root_history"], 3);

    // Python commits; bbru hears of it at sync and loads it; a bbru write
    // based on the state Python replaced conflicts.
    heard.0.lock().unwrap().clear();
    let t_bump = Tid(py("bump", &db.url, &["3"])["tid"].as_u64().unwrap());
    s.sync().unwrap();
    assert_eq!(*heard.0.lock().unwrap(), vec![(t_bump, vec![py_oid])]);
    assert_eq!(s.last_transaction(), t_bump);
    assert_eq!(item(&s.load(py_oid).unwrap().0, "n"), Value::Int(3));
    let err = try_commit(&s, meta("stale"), |txn| {
        s.store(txn, py_oid, t_rust, mapping(vec![("n", Value::Int(99))]))
    })
    .unwrap_err();
    let c = err.as_conflict().expect("a conflict");
    assert_eq!((c.oid, c.committed, c.expected), (py_oid, t_bump, t_rust));

    // A Python transaction that read py before bbru changed it: its write
    // conflicts, and its next transaction sees bbru's state (invalidated).
    let mut watch = Command::new(python())
        .arg(script("relstorage_interop.py"))
        .args(["watch", &db.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut next = || -> Json { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    let first = next();
    assert_eq!(
        (first["n"].as_i64(), first["serial"].as_u64()),
        (Some(3), Some(t_bump.0))
    );
    let t_four = try_commit(&s, meta("n = 4"), |txn| {
        s.store(txn, py_oid, t_bump, mapping(vec![("n", Value::Int(4))]))
    })
    .unwrap();
    writeln!(watch.stdin.as_mut().unwrap(), "committed").unwrap();
    let conflict = next();
    assert_eq!(conflict["conflict"], true, "{conflict}");
    assert_eq!(conflict["oid"].as_u64(), Some(py_oid.0));
    let after = next();
    assert_eq!(
        (after["n"].as_i64(), after["serial"].as_u64()),
        (Some(4), Some(t_four.0))
    );
    assert!(watch.wait().unwrap().success());

    // RelStorage packs what both wrote; bbru still loads every current
    // object, and its history is the current revision only.
    py("pack", &db.url, &[]);
    assert_eq!(item(&s.load(py_oid).unwrap().0, "n"), Value::Int(4));
    assert_eq!(s.history(py_oid, 10).unwrap().len(), 1);
    assert_eq!(
        item(&s.load(rust).unwrap().0, "made_by"),
        Value::Str("bbru".into())
    );
    // bbru packs with GC after more commits from both; Python still reads all.
    py("bump", &db.url, &["5"]);
    s.sync().unwrap();
    s.pack(s.last_transaction(), true).unwrap();
    let read = py("read", &db.url, &[]);
    assert_eq!(
        (read["n"].as_i64(), read["rust"]["made_by"].as_str()),
        (Some(5), Some("bbru"))
    );
    // RelStorage's history lists unpacked transactions only (ours, like
    // FileStorage's, still shows the revision current at the pack time).
    assert_eq!(read["root_history"], 0);
    assert_eq!(s.history(Oid::ROOT, 10).unwrap().len(), 1);
}

/// A database RelStorage made itself (schema, procedures, trigger) opens in
/// bbru as it is, with what Python committed.
#[test]
fn database_made_by_relstorage_opens() {
    let db = fresh_database();
    let wrote = py("write", &db.url, &[]);
    let s = PgStorage::open(&db.url).unwrap();
    let py_oid = Oid(wrote["py_oid"].as_u64().unwrap());
    let (record, serial) = s.load(py_oid).unwrap();
    assert_eq!(
        (item(&record, "n"), serial.0),
        (Value::Int(1), wrote["tid"].as_u64().unwrap())
    );
    let t = try_commit(&s, meta("bbru"), |txn| {
        s.store(txn, py_oid, serial, mapping(vec![("n", Value::Int(2))]))
    })
    .unwrap();
    assert!(t > serial);
    assert_eq!(py("read", &db.url, &[])["n"], 2);
}

/// libpq's `key=value` form of a `postgresql://user@host:port/db` URL, as
/// RelStorage's ZConfig `dsn` wants it.
fn libpq_dsn(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (user, rest) = rest.split_once('@').unwrap_or(("", rest));
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let db = db.split('?').next().unwrap_or(db);
    format!("host={host} port={port} user={user} dbname={db}")
}

/// A console script of the Python environment (zodbconvert, zodbpack).
fn venv_script(name: &str) -> std::path::PathBuf {
    python()
        .parent()
        .expect("the interpreter's directory")
        .join(name)
}

/// RelStorage's own tools on a database bbru made: `zodbconvert` copies a
/// Python-written `Data.fs` into it (bbru then reads every transaction and
/// object), and `zodbpack` packs it with bbru's commits in (bbru then reads
/// the current state); `zodbconvert` copies it back out into a FileStorage
/// that holds every transaction bbru reads there.
#[test]
fn relstorage_zodbconvert_and_zodbpack_work_on_a_database_bbru_made() {
    let db = fresh_database();
    let storage = PgStorage::create(&db.url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fixture = test_support::python::repo_root().join("tests/fixtures/zodb/Data.fs");
    let source = dir.path().join("source.fs");
    std::fs::copy(&fixture, &source).unwrap();
    let dsn = libpq_dsn(&db.url);
    let relstorage = |name: &str| {
        format!(
            "<relstorage {name}>\n  <postgresql>\n    dsn {dsn}\n  </postgresql>\n</relstorage>\n"
        )
    };
    let run = |script: &str, args: &[&OsStr]| {
        let out = Command::new(venv_script(script))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{script}: {e}"));
        assert!(
            out.status.success(),
            "{script} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // In: the fixture's transactions, with their tids.
    let convert_in = dir.path().join("in.conf");
    std::fs::write(
        &convert_in,
        format!(
            "%import relstorage\n<filestorage source>\n  path {}\n  read-only true\n</filestorage>\n{}",
            source.display(),
            relstorage("destination")
        ),
    )
    .unwrap();
    run("zodbconvert", &[convert_in.as_os_str()]);
    storage.sync().unwrap();
    let python_fs = zodb_storage::FileStorage::open_read_only(&source).expect("the fixture opens");
    let tids = |s: &dyn Storage| -> Vec<Tid> {
        s.iterator(None, None)
            .unwrap()
            .map(|t| t.unwrap().tid)
            .collect()
    };
    assert_eq!(tids(&storage), tids(&python_fs));
    assert_eq!(storage.last_transaction(), python_fs.last_transaction());
    assert_eq!(
        storage.load(Oid(0)).unwrap(),
        python_fs.load(Oid(0)).unwrap()
    );

    // bbru commits on top; zodbpack packs (with GC) to now.
    let root = storage.load(Oid(0)).unwrap();
    let mine = try_commit(&storage, meta("bbru"), |txn| {
        storage.store(txn, Oid(0), root.1, root.0.clone())
    })
    .unwrap();
    let pack_conf = dir.path().join("pack.conf");
    std::fs::write(
        &pack_conf,
        format!("%import relstorage\n{}", relstorage("main")),
    )
    .unwrap();
    run(
        "zodbpack",
        &[OsStr::new("-d"), OsStr::new("0"), pack_conf.as_os_str()],
    );
    storage.sync().unwrap();
    assert_eq!(storage.load(Oid(0)).unwrap(), (root.0.clone(), mine));
    assert_eq!(
        storage.history(Oid(0), 10).unwrap().len(),
        1,
        "packed to one revision"
    );

    // Out: back into a FileStorage.
    let back = dir.path().join("back.fs");
    let convert_out = dir.path().join("out.conf");
    std::fs::write(
        &convert_out,
        format!(
            "%import relstorage\n{}<filestorage destination>\n  path {}\n</filestorage>\n",
            relstorage("source"),
            back.display()
        ),
    )
    .unwrap();
    run("zodbconvert", &[convert_out.as_os_str()]);
    let copy = zodb_storage::FileStorage::open_read_only(&back).unwrap();
    assert_eq!(tids(&copy), tids(&storage));
    assert_eq!(copy.load(Oid(0)).unwrap(), (root.0, mine));
}
