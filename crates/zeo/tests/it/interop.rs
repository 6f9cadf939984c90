//! Interop with real Python ZODB 6.4 (from the pinned venv): files Python
//! wrote read the same in Rust, and files Rust wrote, undid and packed pass
//! Python's `fstest` and `fsrefs`, open in `ZODB.DB`, and iterate the same.

use std::ffi::OsStr;
use std::path::Path;

use test_support::python;
use zodb_pickle::Value;
use zodb_storage::{FileStorage, Oid, Storage, Tid, TransactionMeta};

use crate::{bbru_zeo, json_lines, path_str};

fn py_dump(path: &Path, mode: Option<&str>) -> Vec<serde_json::Value> {
    let mut args: Vec<&OsStr> = Vec::new();
    if let Some(m) = mode {
        args.push(OsStr::new(m));
    }
    args.push(path.as_os_str());
    json_lines(&python::run_ok("dump_datafs.py", &args))
}

fn rust_dump(path: &Path) -> Vec<serde_json::Value> {
    let out = bbru_zeo(&["dump", path_str(path)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&String::from_utf8(out.stdout).unwrap())
}

/// The same history and `loadBefore` answers as Python, oid by oid.
fn assert_reads_like_python(path: &Path) {
    let fs = FileStorage::open_read_only(path).unwrap();
    for line in py_dump(path, Some("--history")) {
        let oid = Oid(u64::from_str_radix(line["oid"].as_str().unwrap(), 16).unwrap());
        let ours = fs.history(oid, 1000).unwrap();
        let theirs = line["history"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "history of {oid}");
        for (o, t) in ours.iter().zip(theirs) {
            assert_eq!(o.tid.to_string(), t["tid"].as_str().unwrap());
            assert_eq!(
                String::from_utf8_lossy(&o.user),
                t["user"].as_str().unwrap()
            );
            assert_eq!(
                String::from_utf8_lossy(&o.description),
                t["description"].as_str().unwrap()
            );
            assert_eq!(o.size, t["size"].as_u64().unwrap());
        }
    }
    for line in py_dump(path, Some("--load-before")) {
        let oid = Oid(u64::from_str_radix(line["oid"].as_str().unwrap(), 16).unwrap());
        let before = Tid(u64::from_str_radix(line["before"].as_str().unwrap(), 16).unwrap());
        let ours = fs.load_before(oid, before);
        let ctx = format!("loadBefore({oid}, {before})");
        match &line["result"] {
            serde_json::Value::Null => assert!(matches!(ours, Ok(None)), "{ctx}: {ours:?}"),
            serde_json::Value::String(s) if s == "poskey" => {
                assert!(
                    ours.as_ref().is_err_and(|e| e.is_pos_key()),
                    "{ctx}: {ours:?}"
                )
            }
            want => {
                let rev = ours.unwrap().unwrap_or_else(|| panic!("{ctx}: None"));
                use sha1::Digest;
                assert_eq!(
                    hex::encode(sha1::Sha1::digest(&rev.data)),
                    want["sha1"].as_str().unwrap(),
                    "{ctx}"
                );
                assert_eq!(
                    rev.start.to_string(),
                    want["start"].as_str().unwrap(),
                    "{ctx}"
                );
                assert_eq!(
                    rev.end.map(|t| t.to_string()).as_deref(),
                    want["end"].as_str(),
                    "{ctx}"
                );
            }
        }
    }
}

fn verify_with_python(path: &Path) {
    let out = python::run_ok("verify_datafs.py", &[path.as_os_str()]);
    assert_eq!(out.trim(), "ok", "{out}");
}

#[test]
fn a_file_python_wrote_reads_the_same_in_rust() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("python.fs");
    python::run_ok("make_datafs.py", &[path.as_os_str()]);
    let check = bbru_zeo(&["check", path_str(&path)]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let ours = rust_dump(&path);
    assert_eq!(ours, py_dump(&path, None));
    assert!(
        ours.iter()
            .any(|t| t["user"] == "Jürgen 日本" && t["description"] == "änderung ✓")
    );
    assert!(
        ours.iter().any(|t| t["status"] == "p"),
        "the file was packed"
    );
    assert_reads_like_python(&path);

    // Rust commits on top, then Python still accepts the file.
    let fs = FileStorage::open(&path).unwrap();
    let (root, serial) = fs.load(Oid::ROOT).unwrap();
    let t = fs
        .tpc_begin(TransactionMeta::new(" rust", "rewrite the root as is"))
        .unwrap();
    fs.store(&t, Oid::ROOT, serial, root).unwrap();
    fs.finish(&t).unwrap();
    fs.close().unwrap();
    verify_with_python(&path);
    assert_eq!(rust_dump(&path), py_dump(&path, None));
}

fn oid_bytes(oid: Oid) -> Value {
    Value::Bytes(oid.to_bytes().to_vec())
}

fn reference(oid: Oid, module: &str, name: &str) -> Value {
    Value::PersistentRef(Box::new(Value::Tuple(vec![
        oid_bytes(oid),
        Value::Global {
            module: module.into(),
            name: name.into(),
        },
    ])))
}

fn mapping(entries: Vec<(&str, Value)>) -> Vec<u8> {
    let data = Value::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Str(k.into()), v))
            .collect(),
    );
    zodb_pickle::encode_record(
        ("persistent.mapping", "PersistentMapping"),
        &Value::Dict(vec![(Value::Str("data".into()), data)]),
    )
    .unwrap()
}

fn page(title: &str) -> Vec<u8> {
    zodb_pickle::encode_record(
        ("bbru.content", "Page"),
        &Value::Dict(vec![(Value::Str("title".into()), Value::Str(title.into()))]),
    )
    .unwrap()
}

#[test]
fn a_file_rust_wrote_undid_and_packed_passes_python() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rust.fs");
    let fs = FileStorage::open(&path).unwrap();
    let commit = |meta: TransactionMeta, writes: Vec<(Oid, Tid, Vec<u8>)>| -> Tid {
        let t = fs.tpc_begin(meta).unwrap();
        for (oid, serial, data) in writes {
            fs.store(&t, oid, serial, data).unwrap();
        }
        fs.finish(&t).unwrap()
    };
    let [folder, a, b, garbage] = <[Oid; 4]>::try_from(fs.new_oids(4).unwrap()).unwrap();
    let t1 = commit(
        TransactionMeta::new("", "initial database creation"),
        vec![(Oid::ROOT, Tid::ZERO, mapping(vec![]))],
    );
    let t2 = commit(
        TransactionMeta::new(" jürgen", "änderung ✓ add pages"),
        vec![
            (
                Oid::ROOT,
                t1,
                mapping(vec![(
                    "docs",
                    reference(folder, "persistent.mapping", "PersistentMapping"),
                )]),
            ),
            (
                folder,
                Tid::ZERO,
                mapping(vec![
                    ("a", reference(a, "bbru.content", "Page")),
                    ("b", reference(b, "bbru.content", "Page")),
                ]),
            ),
            (a, Tid::ZERO, page("A")),
            (b, Tid::ZERO, page("B")),
        ],
    );
    let t3 = commit(
        TransactionMeta::new(" alice", "edit a"),
        vec![(a, t2, page("A, edited"))],
    );
    let t4 = commit(
        TransactionMeta::new(" alice", "add garbage"),
        vec![
            (garbage, Tid::ZERO, page("garbage")),
            (
                folder,
                t2,
                mapping(vec![
                    ("a", reference(a, "bbru.content", "Page")),
                    ("g", reference(garbage, "bbru.content", "Page")),
                ]),
            ),
        ],
    );
    // Undo t4: the folder goes back to t2's data, the garbage's creation is undone.
    let t = fs
        .tpc_begin(TransactionMeta::new(" admin", "undo add garbage"))
        .unwrap();
    let mut oids = fs.undo(&t, t4).unwrap();
    oids.sort();
    assert_eq!(oids, vec![folder, garbage]);
    let t5 = fs.finish(&t).unwrap();
    assert_eq!(
        fs.load(folder).unwrap().0,
        fs.load_serial(folder, t2).unwrap()
    );
    assert!(fs.load(garbage).unwrap_err().is_pos_key());
    let _t6 = commit(
        TransactionMeta::new(" alice", "edit b"),
        vec![(b, t2, page("B, edited"))],
    );
    // Some objects: t3 is the edit of a.
    let _ = t3;
    fs.close().unwrap();
    verify_with_python(&path);
    assert_eq!(rust_dump(&path), py_dump(&path, None));
    assert_reads_like_python(&path);

    // Pack just after the undo: old revisions go, the undone garbage goes.
    let fs = FileStorage::open(&path).unwrap();
    fs.pack(t5, true).unwrap();
    assert!(
        fs.load_serial(a, t2).unwrap_err().is_pos_key(),
        "old revision packed away"
    );
    assert_eq!(fs.load(a).unwrap().0, page("A, edited"));
    fs.close().unwrap();
    assert!(path.with_extension("fs.old").exists());
    verify_with_python(&path);
    assert_eq!(rust_dump(&path), py_dump(&path, None));
    assert_reads_like_python(&path);

    // Python packs it further; Rust reads Python's result.
    python::run_ok(
        "pack_datafs.py",
        &[
            path.as_os_str(),
            OsStr::new(&format!("{}", Tid::now().unix_seconds())),
        ],
    );
    assert!(bbru_zeo(&["check", path_str(&path)]).status.success());
    assert_eq!(rust_dump(&path), py_dump(&path, None));
}
