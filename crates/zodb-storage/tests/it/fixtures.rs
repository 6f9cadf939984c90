//! FileStorage reads the files Python ZODB 6.4 wrote exactly as Python does:
//! the same index, last tid, end, and `loadBefore` answer for every oid at
//! every tid (`expected.json`).

use std::collections::BTreeMap;

use serde_json::Value;
use test_support::fixtures::{self, hex_u64};
use zodb_storage::filestorage::Options;
use zodb_storage::{FileStorage, Oid, Storage, StorageError, Tid};

fn open_copy(name: &str, dir: &std::path::Path) -> FileStorage {
    FileStorage::open(fixtures::copy_to(name, dir)).expect("open fixture copy")
}

#[test]
fn reads_every_python_fixture_like_python() {
    for name in fixtures::storage_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let expected = &fixtures::expected()[name]["storage"];
        for read_only in [false, true] {
            let path = fixtures::copy_to(name, dir.path());
            let fs = FileStorage::open_with(
                &path,
                Options {
                    read_only,
                    ..Options::default()
                },
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                fs.last_transaction(),
                Tid(hex_u64(expected["last_tid"].as_str().unwrap())),
                "{name}"
            );
            assert_eq!(fs.end(), expected["end_pos"].as_u64().unwrap(), "{name}");
            assert_eq!(
                fs.len(),
                expected["index"].as_object().unwrap().len(),
                "{name}"
            );
            for (oid, by_tid) in expected["loadBefore"].as_object().unwrap() {
                let oid = Oid(oid.parse().unwrap());
                for (tid, want) in by_tid.as_object().unwrap() {
                    let got = fs.load_before(oid, Tid(hex_u64(tid)));
                    check_load_before(name, oid, tid, &got, want);
                }
            }
            fs.close().unwrap();
        }
    }
}

fn check_load_before(
    name: &str,
    oid: Oid,
    tid: &str,
    got: &Result<Option<zodb_storage::Revision>, StorageError>,
    want: &Value,
) {
    let ctx = format!("{name} oid {oid} before {tid}");
    match (want, got) {
        (Value::Null, Ok(None)) => {}
        (Value::String(s), Err(e)) if s == "POSKeyError" => assert!(e.is_pos_key(), "{ctx}: {e}"),
        (Value::Array(a), Ok(Some(rev))) => {
            assert_eq!(rev.data.len() as u64, a[0].as_u64().unwrap(), "{ctx}: size");
            assert_eq!(
                rev.start,
                Tid(hex_u64(a[1].as_str().unwrap())),
                "{ctx}: start"
            );
            assert_eq!(
                rev.end.map(|t| t.0),
                a[2].as_str().map(hex_u64),
                "{ctx}: end"
            );
        }
        _ => panic!("{ctx}: expected {want}, got {got:?}"),
    }
}

#[test]
fn rebuilds_the_same_index_without_the_saved_one() {
    for name in fixtures::storage_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let path = fixtures::copy_to(name, dir.path());
        let _ = std::fs::remove_file(dir.path().join(format!("{name}.index")));
        let fs = FileStorage::open(&path).unwrap();
        assert!(!fs.open_report().used_saved_index);
        let expected = &fixtures::expected()[name]["storage"];
        assert_eq!(fs.len(), expected["index"].as_object().unwrap().len());
        fs.close().unwrap();
        // The index it saved is Python's, byte for byte where Python saved one.
        let python_index = fixtures::path(&format!("{name}.index"));
        if python_index.exists() {
            assert_eq!(
                std::fs::read(dir.path().join(format!("{name}.index"))).unwrap(),
                std::fs::read(python_index).unwrap(),
                "{name}: saved index"
            );
        }
        let again = FileStorage::open(&path).unwrap();
        assert!(
            again.open_report().used_saved_index,
            "{name}: second open uses the index"
        );
    }
}

#[test]
fn iterates_transactions_and_records_like_python() {
    for name in fixtures::storage_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let fs = open_copy(name, dir.path());
        let txns = fixtures::expected()[name]["file"]["txns"]
            .as_array()
            .unwrap();
        let ours: Vec<_> = fs
            .iterator(None, None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ours.len(), txns.len(), "{name}");
        for (t, want) in ours.iter().zip(txns) {
            assert_eq!(t.tid, Tid(hex_u64(want["tid"].as_str().unwrap())));
            assert_eq!(
                t.status.as_char().to_string(),
                want["status"].as_str().unwrap()
            );
            assert_eq!(
                String::from_utf8_lossy(&t.user),
                want["user"].as_str().unwrap()
            );
            assert_eq!(
                String::from_utf8_lossy(&t.description),
                want["description"].as_str().unwrap()
            );
            assert_eq!(
                hex::encode(&t.extension),
                want["extension_hex"].as_str().unwrap()
            );
            let oids: Vec<u64> = t.records.iter().map(|r| r.oid.0).collect();
            let want_oids: Vec<u64> = want["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["oid"].as_u64().unwrap())
                .collect();
            assert_eq!(oids, want_oids, "{name} {}", t.tid);
        }
    }
}

#[test]
fn history_and_undo_log_of_the_unpacked_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_copy("unpacked.fs", dir.path());
    // Oid 1: T2 created it, T3 and T4 changed it, T5 undid T4.
    let h = fs.history(Oid(1), 10).unwrap();
    let tids: Vec<String> = h.iter().map(|e| e.tid.to_string()).collect();
    assert_eq!(
        tids,
        [
            "0405ed5c1bbbbbbb",
            "0405ed5b1aaaaaaa",
            "0405ed5a19999999",
            "0405ed5918888888"
        ]
    );
    assert_eq!(h[0].size, 0, "an undo revision is a backpointer");
    assert_eq!(h[0].user, b"dave");
    assert_eq!(fs.history(Oid(1), 2).unwrap().len(), 2);
    let log = fs.undo_log(0, 100).unwrap();
    assert_eq!(log.len(), 8);
    assert_eq!(log[0].tid, Tid(0x0405_ed5f_4999_9999));
    assert_eq!(zodb_storage::undo_id(log[0].tid), "BAXtX0mZmZk=");
    let sliced = fs.undo_log(2, 4).unwrap();
    assert_eq!(
        sliced.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![log[2].tid, log[3].tid]
    );
    // A packed file's undo log stops at the first packed transaction.
    let packed = open_copy("Data.fs", dir.path());
    assert_eq!(packed.undo_log(0, 100).unwrap().len(), 1);
}

#[test]
fn load_serial_follows_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_copy("unpacked.fs", dir.path());
    let t3 = Tid(0x0405_ed5a_1999_9999);
    let t5 = Tid(0x0405_ed5c_1bbb_bbbb);
    // T5's revision of oid 1 reuses T3's data through a backpointer.
    assert_eq!(
        fs.load_serial(Oid(1), t5).unwrap(),
        fs.load_serial(Oid(1), t3).unwrap()
    );
    assert!(
        fs.load_serial(Oid(1), Tid(0x0405_ed5a_0000_0000))
            .unwrap_err()
            .is_pos_key()
    );
    assert!(fs.load(Oid(7)).unwrap_err().is_pos_key(), "creation undone");
    assert!(fs.load(Oid(42)).unwrap_err().is_pos_key());
}

#[test]
fn new_oids_continue_after_the_largest() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_copy("unpacked.fs", dir.path());
    assert_eq!(fs.new_oids(2).unwrap(), vec![Oid(10), Oid(11)]);
}

#[test]
fn reads_records_fixture_by_fixture_with_the_right_classes() {
    // Every current record's class, as Python's get_pickle_metadata sees it.
    let dir = tempfile::tempdir().unwrap();
    let fs = open_copy("handmade.fs", dir.path());
    let mut classes = BTreeMap::new();
    for oid in 0..4 {
        if let Ok((data, _)) = fs.load(Oid(oid)) {
            classes.insert(oid, zodb_pickle::class_of(&data));
        }
    }
    assert_eq!(
        classes.get(&1).cloned().flatten(),
        Some(("bbru.content".to_string(), "Folder".to_string()))
    );
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> BTreeMap<std::path::PathBuf, Vec<u8>> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut BTreeMap<std::path::PathBuf, Vec<u8>>,
    ) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(root).unwrap().to_owned(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The fixtures in the repository are exactly what `tools/make-fixtures.sh` makes with
/// the pinned Python ZODB: nobody edited them by hand, and they can be made again.
#[test]
fn fixtures_are_what_the_script_makes() {
    let out = tempfile::tempdir().unwrap();
    let script = test_support::python::repo_root().join("tools/make-fixtures.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(out.path())
        .env("BBRU_PYTHON", test_support::python::python())
        .status()
        .expect("run tools/make-fixtures.sh");
    assert!(status.success(), "tools/make-fixtures.sh failed: {status}");
    let made = files_under(out.path());
    let mut kept = files_under(&fixtures::dir());
    // The scripts and their README are the sources, not products.
    for source in [
        "README.md",
        "gen_fixtures.py",
        "gen_expected.py",
        "handmade.py",
    ] {
        assert!(
            kept.remove(std::path::Path::new(source)).is_some(),
            "{source} is kept"
        );
    }
    assert_eq!(
        made.keys().collect::<Vec<_>>(),
        kept.keys().collect::<Vec<_>>(),
        "the script makes exactly the files kept"
    );
    for (name, bytes) in &made {
        assert!(
            kept[name] == *bytes,
            "{} differs from what the script makes",
            name.display()
        );
    }
}
